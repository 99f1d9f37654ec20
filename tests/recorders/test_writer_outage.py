"""The lake writer when appends fail: a table whose Delta log is damaged (a real
truncated commit file, so ``Lake.append`` raises) keeps its rows in memory and is
retried while the other tables go on; the journal is written before anything
else of its batch; past the memory bound the oldest batches become counted
losses written to ``feed_events``; no table is ever given up."""

from __future__ import annotations

import re
import time
from pathlib import Path

from simrun import wait_for

from lab.lake import Lake
from recorders.venues.base import Rows
from recorders.writer import Writer

T0 = 1_700_000_000_000_000


def _batch(k: int, n: int = 50) -> Rows:
    """Batch ``k``: ``n`` trades, ``n`` quotes and ``n`` journal rows, ids unique per batch."""
    r = Rows()
    for i in range(n):
        t = T0 + k * 10_000 + i
        c = r.trades
        for col, v in zip(c, (t, t, "binance", "BTC-USDT", f"{k}-{i}", 100.0 + i, 1.0, "buy")):
            col.append(v)
        c = r.quotes
        for col, v in zip(c, (t, t, "binance", "BTC-USDT", 99.0, 1.0, 101.0, 1.0)):
            col.append(v)
        r.raw(t, "binance", "run/binance/1", k * n + i, f'{{"k":{k},"i":{i},"pad":"{"x" * 200}"}}')
    return r


def _damage(lake: Lake, table: str) -> tuple[Path, str]:
    """Truncate the table's newest Delta commit (what a crash or bad disk leaves)."""
    log = sorted((Path(lake.path(table)) / "_delta_log").glob("*.json"))[-1]
    text = log.read_text()
    log.write_text(text[: len(text) // 2])
    return log, text


def _damaged_writer(root: Path, table: str, **kw: float) -> tuple[Writer, Path, str]:
    """A started writer on a lake of one row per table whose ``table`` is then damaged; also the
    damaged commit file and its good text (to repair it)."""
    seed = _batch(0, 1)
    lk = Lake(root)
    for t in ("trades", "quotes", "raw_messages"):
        lk.append(t, seed.frame(t))
    log, good = _damage(Lake(root), table)
    w = Writer(Lake(root), retry_max=0.3, **kw)
    w.start()
    return w, log, good


def test_a_damaged_table_keeps_its_rows_and_gets_them_when_healed(tmp_path):
    w, log, good = _damaged_writer(tmp_path / "lake", "trades", log_every=0.5)
    try:
        for k in range(1, 6):
            assert w.submit(_batch(k))
        wait_for(lambda: w.rows_written.get("quotes", 0) == 250, 30, what="quotes written")
        assert w.rows_written.get("raw_messages") == 250  # the journal and other tables go on
        assert "trades" not in w.rows_written
        out = w.outage()
        assert out is not None and list(out["failing_tables"]) == ["trades"] and out["pending_rows"] == 250
        time.sleep(1.0)  # several retries while damaged: still kept, nothing lost
        assert w.lost_rows == 0 and w.pending_rows() == 250
        log.write_text(good)  # repaired
        wait_for(lambda: w.rows_written.get("trades", 0) == 250, 30, what="kept trades written")
        assert w.outage() is None and w.pending_rows() == 0
    finally:
        w.close()
    trades = Lake(tmp_path / "lake").read("trades")
    assert trades.height == 251 and trades["trade_id"].n_unique() == 251
    kinds = [k for _, k, _ in w.events]
    assert kinds == ["write_recovered"] and w.lost_rows == 0


def test_nothing_of_a_batch_is_written_before_its_journal(tmp_path):
    w, log, good = _damaged_writer(tmp_path / "lake", "raw_messages")
    try:
        for k in range(1, 4):
            assert w.submit(_batch(k))
        wait_for(lambda: w.errors >= 3, 30, what="journal appends failing")
        assert w.rows_written == {}  # trades and quotes wait for their journal
        log.write_text(good)
        wait_for(lambda: w.rows_written.get("trades", 0) == 150, 30, what="everything written")
    finally:
        w.close()
    lk = Lake(tmp_path / "lake")
    assert lk.read("raw_messages").height == 151 and lk.read("quotes").height == 151


def test_past_the_memory_bound_the_oldest_batches_are_counted_losses(tmp_path):
    w, log, good = _damaged_writer(tmp_path / "lake", "trades", max_pending_bytes=20_000)
    try:
        for k in range(1, 11):
            assert w.submit(_batch(k))
            time.sleep(0.05)
        wait_for(lambda: w.rows_written.get("quotes", 0) == 500, 30, what="quotes written")
        wait_for(lambda: w.lost_rows > 0, 30, what="losses counted")
        log.write_text(good)
        wait_for(lambda: w.outage() is None and w.pending_rows() == 0, 30, what="recovery")
    finally:
        w.close()
    trades = Lake(tmp_path / "lake").read("trades").height - 1
    lost = w.lost_by_table.get("trades", 0)
    # every trade row is either in the lake or counted lost, batch by batch
    assert trades + lost == 500 and lost % 50 == 0 and lost > 0 and trades > 0
    assert w.lost_by_table.keys() == {"trades"}  # the other tables lost nothing
    losses = [d for _, k, d in w.events if k == "loss"]
    # one event per dropped batch (batches queued together are written, and dropped, together)
    per_event = [int(re.search(r"rows lost \{'trades': (\d+)\}", d).group(1)) for d in losses]
    assert sum(per_event) == lost and all(n % 50 == 0 for n in per_event)


def _quotes_only(k: int, n: int = 5) -> Rows:
    r = Rows()
    for i in range(n):
        t = T0 + k * 10_000 + i
        for col, v in zip(r.quotes, (t, t, "binance", "BTC-USDT", 99.0, 1.0, 101.0, 1.0)):
            col.append(v)
    return r


def test_an_outage_whose_rows_were_all_lost_ends_when_the_table_heals(tmp_path):
    # A kept trades batch dropped past the bound (a newer batch without trades came after it)
    # leaves no trades row to retry with: the writer must still notice the healed table, or the
    # status reports an outage forever (seen: the status said "failing" 40 s after the repair).
    w, log, good = _damaged_writer(tmp_path / "lake", "trades", max_pending_bytes=1_000)
    try:
        assert w.submit(_batch(1))
        wait_for(lambda: "trades" in w.failing, 30, what="trades failing")
        assert w.submit(_quotes_only(2))
        wait_for(lambda: w.lost_by_table.get("trades", 0) == 50 and w.pending_rows() == 0, 30,
                 what="the kept trades counted lost")
        time.sleep(1.0)  # several retry periods: still damaged, so still an outage
        assert w.outage() is not None and "trades" in w.outage()["failing_tables"]
        log.write_text(good)
        wait_for(lambda: w.outage() is None, 30, what="the outage to end once the table is readable")
    finally:
        w.close()
    assert [k for _, k, _ in w.events if k == "write_recovered"]

"""The writer's commit cadence: the tables nobody waits for (book_snapshots,
feed_events) are committed once per ``slow_every`` seconds for several batches
(a fresh writer's first rows at once),
while trades, quotes and the journal are committed with every batch; nothing is
lost on close, and the journal still leads every table of its batch."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from simrun import wait_for

from lab.lake import Lake
from recorders.venues.base import Rows
from recorders.writer import Writer

T0 = 1_700_000_000_000_000


def _batch(k: int, n: int = 20) -> Rows:
    """Batch ``k``: ``n`` trades and journal rows, one feed event and one book-snapshot row."""
    r = Rows()
    for i in range(n):
        t = T0 + k * 10_000 + i
        for col, v in zip(r.trades, (t, t, "binance", "BTC-USDT", f"{k}-{i}", 100.0 + i, 1.0, "buy")):
            col.append(v)
        r.raw(t, "binance", "run/binance/1", k * n + i, f'{{"k":{k},"i":{i}}}')
    t = T0 + k * 10_000
    r.event(t, "binance", "BTC-USDT", "gap", f"batch {k}")
    for col, v in zip(r.book_snapshots, (t, t, "binance", "BTC-USDT", 0, "bid", 99.0, 1.0)):
        col.append(v)
    return r


def _versions(lake: Lake) -> dict[str, int]:
    return {t: lake.version(t) for t in ("raw_messages", "trades", "feed_events", "book_snapshots")}


@contextmanager
def _writing(lake: Lake, slow_every: float, batches: int,
             written: Callable[[Writer, int], bool]) -> Iterator[Writer]:
    """A started writer that has been given ``batches`` batches, each waited for until
    ``written(writer, k)``; closed on exit."""
    w = Writer(lake, slow_every=slow_every)
    w.start()
    try:
        for k in range(batches):
            w.submit(_batch(k))
            wait_for(lambda k=k: written(w, k), 30, what=f"batch {k}")
        yield w
    finally:
        w.close()


def test_slow_tables_commit_once_for_several_batches_and_flush_on_close(tmp_path):
    lake = Lake(tmp_path / "lake")
    with _writing(lake, 3600.0, 3, lambda w, k: w.rows_written.get("trades", 0) == 20 * (k + 1)) as w:
        v = _versions(lake)
        # a fresh writer's first slow rows go at once (create + one append); the next wait
        assert v["feed_events"] == 1 and v["book_snapshots"] == 1
        assert lake.read("feed_events")["detail"].to_list() == ["batch 0"]
        assert v["trades"] == 3 and v["raw_messages"] == 3  # create + one commit per later batch
        assert w.pending_rows() == 4  # 2 events + 2 snapshot rows kept for one later commit
    ev = lake.read("feed_events")
    snaps = lake.read("book_snapshots")
    assert sorted(ev["detail"].to_list()) == ["batch 0", "batch 1", "batch 2"]
    assert snaps.height == 3
    assert lake.version("feed_events") == 2 and lake.version("book_snapshots") == 2  # + one on close
    assert lake.read("trades").height == 60 and lake.read("raw_messages").height == 60


def test_without_slow_cadence_every_batch_commits_every_table(tmp_path):
    lake = Lake(tmp_path / "lake")
    with _writing(lake, 0.0, 2, lambda w, k: lake.exists("feed_events") and lake.read("feed_events").height == k + 1):
        pass
    assert lake.read("book_snapshots").height == 2

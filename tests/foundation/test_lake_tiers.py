"""Size-tiered compaction (issue 17): a table that receives many small appends between many
maintenance passes keeps every row exactly once, in time-sorted files, and rewrites each row
O(log rows) times, where the former policy (every small file re-merged at each pass) rewrote the
table's compacted history at every pass. Rewrites are counted from the Delta log's add and remove
actions, not from what maintain reports."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import lab.lake
from lab.lake import Lake

T0 = dt.datetime(2026, 11, 22, 9, tzinfo=dt.timezone.utc)
US = pl.Datetime("us", "UTC")


def flush(i: int, rng: np.random.Generator, source: str | None = None) -> pl.DataFrame:
    """One recorder-like flush: second ``i`` of arrivals from two venues, in arrival order; kraken's
    exchange times lag ~0.8 s, so the batch is not sorted by ts_exchange and batches overlap."""
    n = int(rng.integers(40, 400))
    local = np.sort(rng.integers(0, 1_000_000, n)) + i * 1_000_000
    kraken = rng.random(n) < 0.4
    lag = np.where(kraken, rng.integers(700_000, 900_000, n), rng.integers(1_000, 5_000, n))
    df = pl.DataFrame({
        "ts_exchange": pl.Series(local - lag).cast(pl.Duration("us")) + T0,
        "ts_local": pl.Series(local).cast(pl.Duration("us")) + T0,
        "venue": np.where(kraken, "kraken", "binance"),
        "symbol": rng.choice(["BTC-USD", "ETH-USD"], n),
        "trade_id": [f"{i}-{k}" for k in range(n)],
        "price": np.round(100 + rng.normal(0, 1, n), 2),
        "qty": np.round(rng.exponential(1, n), 4),
        "side": rng.choice(["buy", "sell"], n),
    }).with_columns(pl.col("ts_exchange", "ts_local").cast(US))
    if source is not None:
        df = df.with_columns(source=pl.lit(source))
    return df


def log_actions(table_dir: Path) -> list[tuple[list[dict], list[dict]]]:
    """(adds, removes) of every commit, oldest first, read from the JSON commits."""
    out = []
    for f in sorted((table_dir / "_delta_log").glob("*.json")):
        acts = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        out.append(([a["add"] for a in acts if "add" in a], [a["remove"] for a in acts if "remove" in a]))
    return out


def rewrites(table_dir: Path) -> dict:
    """From the log alone: the most times any row was rewritten (a merged file's depth is one more
    than its deepest input's), the rows and bytes all merges read, and each merge's input bytes."""
    rows: dict[str, int] = {}
    depth: dict[str, int] = {}
    out = {"max_depth": 0, "rows": 0, "bytes": 0, "merge_bytes": []}
    for adds, removes in log_actions(table_dir):
        d = 1 + max(depth[r["path"]] for r in removes) if removes else 0
        if removes:
            assert all(not a["dataChange"] for a in adds), "a compaction must not change data"
            out["rows"] += sum(rows[r["path"]] for r in removes)
            out["bytes"] += sum(r["size"] for r in removes)
            out["merge_bytes"].append(sum(r["size"] for r in removes))
            out["max_depth"] = max(out["max_depth"], d)
        for a in adds:
            rows[a["path"]] = json.loads(a["stats"])["numRecords"]
            depth[a["path"]] = d
    return out


def record_day(lake: Lake, passes: int, per_pass: int, seed: int = 0) -> pl.DataFrame:
    """``passes`` maintenance passes (``lab maintain``'s defaults), ``per_pass`` appends before each;
    returns every appended row (the independent record)."""
    rng = np.random.default_rng(seed)
    sent = []
    for p in range(passes):
        for k in range(per_pass):
            df = flush(p * per_pass + k, rng)
            lake.append("trades", df)
            sent.append(df)
        lake.maintain("trades")
    return pl.concat(sent)


def test_tiered_compaction_keeps_rows_once_sorted_and_rewrites_each_row_o_log_n_times(lake_dir):
    lake = Lake(lake_dir)
    sent = record_day(lake, passes=40, per_pass=6)

    # (a) every row exactly once, equal to what was appended
    got = lake.read("trades")
    assert got["trade_id"].n_unique() == got.height
    assert_frame_equal(got.sort("trade_id"), sent.sort("trade_id"))
    # (b) every file in time order
    for uri in lake.delta("trades").file_uris():
        assert pl.read_parquet(uri)["ts_exchange"].is_sorted(), uri
    # (c) each row rewritten at most ceil(log_8(rows / smallest file)) + 1 times (fan-in 8)
    n, smallest = sent.height, 40
    bound = math.ceil(math.log(n / smallest, 8)) + 1
    r = rewrites(lake.path("trades"))
    assert 1 <= r["max_depth"] <= bound, (r["max_depth"], bound)
    assert r["rows"] <= n * bound
    # and the table stays a few files (fewer than fan-in per tier), not one per append
    assert len(lake.delta("trades").file_uris()) < 7 * (bound + 1)


def test_the_former_policy_breaks_the_rewrite_bound(lake_dir, monkeypatch):
    # the same day under the former bin-packing: the compacted history is read and rewritten at
    # every pass, so the first rows are rewritten once per pass
    monkeypatch.setattr(lab.lake, "_POLICY", "binpack")
    lake = Lake(lake_dir)
    sent = record_day(lake, passes=20, per_pass=8)  # 1 + 8 files >= min_files: every pass compacts
    bound = math.ceil(math.log(sent.height / 40, 8)) + 1
    r = rewrites(lake.path("trades"))
    assert r["max_depth"] >= 19 > bound
    assert r["rows"] > sent.height * bound
    assert_frame_equal(lake.read("trades").sort("trade_id"), sent.sort("trade_id"))


def test_files_at_or_over_target_size_and_merges_over_the_input_cap_are_left_alone(lake_dir, monkeypatch):
    lake = Lake(lake_dir)
    rng = np.random.default_rng(3)
    big = pl.concat([flush(i, rng) for i in range(200)])
    lake.append("trades", big)  # one file of ~45k rows
    (big_file,) = lake.delta("trades").file_uris()
    big_size = Path(big_file).stat().st_size
    cap = big_size // 4
    monkeypatch.setattr(lab.lake, "MERGE_INPUT_MAX", cap)
    sent = [big]
    for p in range(12):
        for k in range(8):
            df = flush(200 + p * 8 + k, rng)
            lake.append("trades", df)
            sent.append(df)
        lake.maintain("trades", target_size=big_size)
    r = rewrites(lake.path("trades"))
    assert r["merge_bytes"] and max(r["merge_bytes"]) <= cap  # (d) no merge read more than the cap
    removed = {x["path"] for _, rm in log_actions(lake.path("trades")) for x in rm}
    assert Path(big_file).name not in removed  # the file of target_size was never rewritten
    assert_frame_equal(lake.read("trades").sort("trade_id"), pl.concat(sent).sort("trade_id"))


def test_compaction_merges_files_from_before_and_after_an_optional_column_appeared(lake_dir):
    lake = Lake(lake_dir)
    rng = np.random.default_rng(5)
    old = [flush(i, rng) for i in range(4)]  # no `source` column yet
    new = [flush(4 + i, rng, source="rest") for i in range(4)]
    for df in old + new:
        lake.append("trades", df)
    info = lake.maintain("trades", min_files=2)["trades"]
    assert info["compacted"]["numFilesRemoved"] == 8 and info["files"] == 1
    want = pl.concat([*(d.with_columns(source=pl.lit(None, pl.String)) for d in old), *new])
    assert_frame_equal(lake.read("trades").sort("trade_id"), want.sort("trade_id"))
    (uri,) = lake.delta("trades").file_uris()
    assert pl.read_parquet(uri)["ts_exchange"].is_sorted()


@pytest.mark.parametrize("fan_in", [2, 8, 16])
def test_plan_lifts_every_merged_row_at_least_one_tier(fan_in):
    # an independent check of the planner's invariant on random commit sequences: each merge
    # holds consecutive files, reads at most the cap, and writes >= fan_in ** (top tier + 1) rows
    rng = np.random.default_rng(fan_in)
    for _ in range(200):
        files = [(int(r), int(r) * 60) for r in rng.lognormal(6, 2, int(rng.integers(1, 60))) + 1]
        cap = int(rng.integers(10_000, 10_000_000))
        plan = lab.lake.plan_tiered(files, fan_in, cap)
        seen: set[int] = set()
        for run in plan:
            assert run == list(range(run[0], run[-1] + 1)) and len(run) >= 2 and not seen & set(run)
            seen |= set(run)
            rows = sum(files[i][0] for i in run)
            top = max(max(t for t in range(64) if fan_in ** t <= files[i][0]) for i in run)
            assert rows >= fan_in ** (top + 1)
            assert sum(files[i][1] for i in run) <= cap


def test_a_merged_files_delta_stats_equal_file_stats_of_its_rows(lake_dir):
    # the merge computes the stats with SQL aggregates; file_stats (the bulk writer's) is the reference:
    # NaN and inf left out of float min/max, times to the ms outward, nulls counted, long strings left out
    from deltalake import DeltaTable

    from lab.lake import file_stats

    lake = Lake(lake_dir)
    rng = np.random.default_rng(9)
    for i in range(6):
        df = flush(i, rng, source=None if i < 3 else "rest")
        if i == 2:
            df = df.with_columns(price=pl.when(pl.int_range(pl.len()) == 0).then(float("nan"))
                                 .otherwise(pl.col("price")),
                                 qty=pl.when(pl.int_range(pl.len()) == 1).then(float("inf")).otherwise(pl.col("qty")))
        lake.append("trades", df)
    t0 = dt.datetime(2026, 11, 22, tzinfo=dt.timezone.utc)
    for i in range(3):
        lake.append("raw_messages", pl.DataFrame({
            "ts_local": [t0 + dt.timedelta(seconds=i, microseconds=k) for k in range(3)],
            "venue": ["binance"] * 3, "conn_id": ["c1"] * 3, "recv_seq": [3 * i + k for k in range(3)],
            "payload": ['{"e":"trade","p":"100.5","q":"0.1","some":"long enough to be left out"}'] * 3,
        }).with_columns(pl.col("ts_local").cast(US)))
    lake.maintain(min_files=2)
    for table in ("trades", "raw_messages"):
        (add,) = pl.DataFrame(DeltaTable(lake.path(table)).get_add_actions(flatten=True)).select("path").rows()
        stats = next(json.loads(json.loads(line)["add"]["stats"])
                     for f in sorted((lake.path(table) / "_delta_log").glob("*.json"))
                     for line in f.read_text().splitlines() if add[0] in line and '"add"' in line)
        assert stats == json.loads(file_stats(pl.read_parquet(lake.path(table) / add[0]))), table


def raw_batch(i: int, rows: int, width: int) -> pl.DataFrame:
    """``rows`` raw messages of about ``width`` bytes each (distinct text: a book update's JSON),
    arriving in second ``i``."""
    k = pl.int_range(rows, eager=True)
    return pl.DataFrame({"k": k}).select(
        ts_local=(pl.lit(T0) + pl.duration(seconds=i) + pl.duration(microseconds=k * 7)).cast(US),
        venue=pl.lit("binance"), conn_id=pl.lit("c1"), recv_seq=k + i * rows,
        payload=pl.concat_str([pl.lit('{"u":'), (k + i * rows).cast(pl.String), pl.lit(',"b":['),
                               pl.concat_str([pl.lit("["), (k * 7919 + i).cast(pl.String), pl.lit(".5,0.1]")])
                               .repeat_by(width // 16).list.join(","), pl.lit("]}")]))


def test_a_merge_of_wide_rows_succeeds_with_bounded_row_groups(lake_dir):
    """raw_messages rows are ~300 bytes: with 128k-row groups a merge held 34 MiB per group and
    every merge failed within MERGE_MEMORY from 25 minutes into a recording. Here 8 files of
    ~1 KB rows (a 131k-row group would be ~128 MiB, the whole memory limit; DuckDB's sort of them
    needs more than the limit too): the merge succeeds, keeps every row once in time order, and
    no row group of the merged file holds more than MERGE_GROUP_BYTES (from the file's footer)."""
    import pyarrow.parquet as pq

    lake = Lake(lake_dir)
    sent = [raw_batch(i, 16_000, 1_000) for i in range(8)]
    for df in sent:
        lake.append("raw_messages", df)

    out = lake.maintain("raw_messages", grace=dt.timedelta(0))["raw_messages"]

    assert "failed" not in out["compacted"], out
    assert out["compacted"]["numFilesAdded"] == 1 and out["files"] == 1
    (merged,) = lake.delta("raw_messages").file_uris()
    meta = pq.read_metadata(merged)
    assert meta.num_row_groups > 1
    assert max(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)) <= 1.1 * lab.lake.MERGE_GROUP_BYTES
    got = lake.read("raw_messages")
    assert_frame_equal(got, pl.concat(sent).sort("ts_local", maintain_order=True))


def test_a_table_whose_compaction_fails_is_still_checkpointed_and_the_others_maintained(lake_dir, monkeypatch,
                                                                                        capsys):
    """A merge that cannot fit DuckDB's memory limit (here 1 MB, so up to 4 MB with the retries:
    too small for 32 MB of raw messages, enough for a few trades) fails for its table alone: the
    other table is compacted in the same pass, each is checkpointed at its latest version (writers
    replay only the commits after it), the failure is in the pass's result and printed once by
    ``lab maintain``, and the next pass with memory enough compacts the table."""
    from lab.apps.maintain import _report_damage
    from lab.lake import last_checkpoint

    lake = Lake(lake_dir)
    rng = np.random.default_rng(3)
    for i in range(8):
        lake.append("raw_messages", raw_batch(i, 4_000, 1_000))
        lake.append("trades", flush(i, rng))
    monkeypatch.setattr(lab.lake, "MERGE_MEMORY", "1MB")

    out = lake.maintain(grace=dt.timedelta(0))

    assert "OutOfMemory" in out["raw_messages"]["compacted"]["failed"], out["raw_messages"]
    assert out["trades"]["compacted"]["numFilesAdded"] == 1 and out["trades"]["files"] == 1, out["trades"]
    for table in ("raw_messages", "trades"):  # after the checkpoint: at most the vacuum's start and end
        assert 0 <= lake.version(table) - last_checkpoint(lake_dir / table) <= 2, table
    assert lake.read("raw_messages").height == 32_000 and out["raw_messages"]["files"] == 8
    said: set[str] = set()
    _report_damage(out, said)
    _report_damage(out, said)
    assert capsys.readouterr().out.count("compacting raw_messages failed") == 1

    monkeypatch.setattr(lab.lake, "MERGE_MEMORY", "128MB")
    again = lake.maintain(grace=dt.timedelta(0))
    assert again["raw_messages"]["compacted"]["numFilesAdded"] == 1 and again["raw_messages"]["files"] == 1
    assert lake.read("raw_messages").height == 32_000


def test_a_file_that_cannot_be_read_fails_its_tables_compaction_and_says_so(lake_dir):
    """A data file damaged inside (its size and Parquet magic intact, so the quick checks pass)
    cannot be merged. `lab maintain` (one pass) and the recorder's own upkeep pass each exit 1
    naming the table and the reason; the table is still checkpointed by the pass."""
    import subprocess
    import sys

    from lab.lake import last_checkpoint
    from recorders.runtime import MAINTAIN_PASS

    lake = Lake(lake_dir)
    for i in range(16):  # the recorder's upkeep merges 16 files of a tier
        lake.append("raw_messages", raw_batch(i, 200, 100))
    victim = Path(sorted(lake.delta("raw_messages").file_uris())[3])
    data = bytearray(victim.read_bytes())
    data[len(data) // 3: len(data) // 3 + 64] = b"\xff" * 64
    victim.write_bytes(bytes(data))

    cli = subprocess.run([sys.executable, "-m", "lab.cli", "maintain", "--lake", str(lake_dir)],
                         capture_output=True, text=True, timeout=300)
    upkeep = subprocess.run([sys.executable, "-c", MAINTAIN_PASS, str(lake_dir)],
                            capture_output=True, text=True, timeout=300)

    assert cli.returncode == 1, cli.stderr[-2000:]
    assert json.loads(cli.stdout)["raw_messages"]["compacted"]["failed"]  # DuckDB's words for the damage
    assert upkeep.returncode == 1
    assert upkeep.stderr.strip().splitlines()[-1].startswith("compaction failed: raw_messages: ")
    assert 0 <= lake.version("raw_messages") - last_checkpoint(lake_dir / "raw_messages") <= 2

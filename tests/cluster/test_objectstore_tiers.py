"""Size-tiered, time-sorted compaction of the lake on S3 (a local SeaweedFS server): the same
policy as the on-disk lake (tests/foundation/test_lake_tiers.py), where ObjectLake.maintain used
to run delta-rs' bin-packing ``optimize.compact`` (every small file re-read and rewritten at every
pass, rows not sorted). Rewrites are counted from the Delta log's JSON commits on the store, not
from what maintain reports."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import obstore
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from lab.lake import Lake
from lab.objectstore import ObjectLake
from tests.foundation.test_lake_tiers import flush

ROOT = Path(__file__).resolve().parents[2]
WORKER = str(Path(__file__).with_name("s3_tiers_worker.py"))


def log_actions(lake: ObjectLake, table: str) -> list[tuple[list[dict], list[dict]]]:
    """(adds, removes) of every commit, oldest first, read from the JSON commits on the store."""
    from obstore.store import S3Store

    bucket, _, prefix = str(lake.root).removeprefix("s3://").partition("/")
    opts = lake.storage_options
    store = S3Store(bucket, prefix=f"{prefix}/{table}/_delta_log", endpoint=opts["AWS_ENDPOINT_URL"],
                    access_key_id=opts["AWS_ACCESS_KEY_ID"], secret_access_key=opts["AWS_SECRET_ACCESS_KEY"],
                    region=opts["AWS_REGION"], client_options={"allow_http": True})
    names = sorted(m["path"] for batch in obstore.list(store) for m in batch if m["path"].endswith(".json"))
    out = []
    for n in names:
        acts = [json.loads(x) for x in bytes(obstore.get(store, n).bytes()).decode().splitlines() if x.strip()]
        out.append(([a["add"] for a in acts if "add" in a], [a["remove"] for a in acts if "remove" in a]))
    return out


def rewrites(actions: list[tuple[list[dict], list[dict]]]) -> dict:
    """The most times any row was rewritten (a merged file's depth is one more than its deepest
    input's), the rows and bytes all merges read, and the bytes the appends added."""
    rows: dict[str, int] = {}
    depth: dict[str, int] = {}
    out = {"max_depth": 0, "rows": 0, "bytes": 0, "appended_bytes": 0, "merges": 0}
    for adds, removes in actions:
        d = 1 + max(depth[r["path"]] for r in removes) if removes else 0
        if removes:
            assert all(not a["dataChange"] for a in adds), "a compaction must not change data"
            out["rows"] += sum(rows[r["path"]] for r in removes)
            out["bytes"] += sum(r["size"] for r in removes)
            out["max_depth"] = max(out["max_depth"], d)
            out["merges"] += 1
        else:
            out["appended_bytes"] += sum(a["size"] for a in adds)
        for a in adds:
            rows[a["path"]] = json.loads(a["stats"])["numRecords"]
            depth[a["path"]] = d
    return out


def test_s3_maintain_keeps_rows_once_sorted_rewrites_o_log_n_and_is_idle_without_appends(s3_env):
    lake = Lake("s3://lake/tiers")
    rng = np.random.default_rng(0)
    sent = []
    for p in range(12):  # 12 passes, 6 small appends before each; fan-in 4
        for k in range(6):
            df = flush(p * 6 + k, rng)
            lake.append("trades", df)
            sent.append(df)
        lake.maintain("trades", min_files=4)
    want = pl.concat(sent)

    # every row exactly once (as a multiset), equal to what was appended
    got = lake.read("trades")
    assert_frame_equal(got.sort("trade_id"), want.sort("trade_id"))
    # fewer files than appends, and every merged file sorted by time (the appends are not)
    uris = lake.delta("trades").file_uris()
    assert len(uris) < len(sent) // 4
    merged = {a["path"] for adds, removes in log_actions(lake, "trades") if removes for a in adds}
    live_merged = [u for u in uris if u.rsplit("/", 1)[-1] in merged]
    assert live_merged and not all(d["ts_exchange"].is_sorted() for d in sent)
    for uri in live_merged:
        assert pl.read_parquet(uri, storage_options=lake.storage_options)["ts_exchange"].is_sorted(), uri
    # each row rewritten at most ceil(log_4(rows / smallest append)) + 1 times (fan-in 4), and the
    # merges read at most that many times the rows, and the bytes, the appends wrote
    bound = math.ceil(math.log(want.height / 40, 4)) + 1
    r = rewrites(log_actions(lake, "trades"))
    assert r["merges"] >= 2
    assert 1 <= r["max_depth"] <= bound, (r["max_depth"], bound)
    assert r["rows"] <= want.height * bound, (r["rows"], want.height, bound)
    assert r["bytes"] <= r["appended_bytes"] * bound, r

    # a pass with no new appends rewrites nothing (it plans: the table has min_files or more)
    v = lake.version("trades")
    assert len(uris) >= 4
    info = lake.maintain("trades", min_files=4)["trades"]
    assert lake.version("trades") == v, info
    assert info["compacted"] == {"numFilesAdded": 0, "numFilesRemoved": 0}, info


def test_s3_maintain_leaves_files_of_target_size_alone(s3_env):
    lake = Lake("s3://lake/target")
    rng = np.random.default_rng(3)
    big = pl.concat([flush(i, rng) for i in range(40)])
    lake.append("trades", big)  # one file of ~9k rows
    (big_path,) = [a["path"] for adds, _ in log_actions(lake, "trades") for a in adds]
    big_size = next(a["size"] for adds, _ in log_actions(lake, "trades") for a in adds)
    sent = [big]
    for k in range(16):
        df = flush(40 + k, rng)
        lake.append("trades", df)
        sent.append(df)
    info = lake.maintain("trades", target_size=big_size)["trades"]

    removed = {x["path"] for _, rm in log_actions(lake, "trades") for x in rm}
    assert info["compacted"]["numFilesRemoved"] >= 8 and big_path not in removed
    assert_frame_equal(lake.read("trades").sort("trade_id"), pl.concat(sent).sort("trade_id"))


def test_s3_compaction_during_appends_and_a_second_maintainer_loses_and_doubles_nothing(s3_env, tmp_path):
    # a writer process appends while two maintainer processes compact the same table: the
    # appends committed during a merge are kept, and the lease on the store lets one maintainer
    # at a time merge (delta-rs would commit both merges of the same files: every row twice)
    env = {**os.environ, "LAB_LAKE": "s3://lake/concurrent", "PYTHONPATH": str(ROOT)}
    Lake("s3://lake/concurrent").append("trades", flush(0, np.random.default_rng(1)).head(0))  # nothing: no table
    until = tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, WORKER, "write", "w", "80", "200"], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    maints = [subprocess.Popen([sys.executable, WORKER, "maintain", str(until)], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    w_out, w_err = writer.communicate(timeout=240)
    until.touch()
    m_outs = [m.communicate(timeout=240) for m in maints]
    assert writer.returncode == 0, w_err[-2000:]
    assert [m.returncode for m in maints] == [0, 0], [e[-2000:] for _, e in m_outs]

    commits = [json.loads(x) for x in w_out.splitlines()]
    passes = [json.loads(x) for out, _ in m_outs for x in out.splitlines()]
    merged = [p for p in passes if (p["compacted"] or {}).get("numFilesAdded")]
    lake = Lake("s3://lake/concurrent")
    ids = lake.read("trades")["trade_id"]
    r = rewrites(log_actions(lake, "trades"))
    assert len(commits) == 80 and len(merged) >= 2 and r["merges"] >= 2
    assert ids.len() == 80 * 200 and ids.n_unique() == ids.len()
    assert set(ids.to_list()) == {f"w-{b}-{i}" for b in range(80) for i in range(200)}


def test_s3_maintain_removes_an_upload_no_commit_names(s3_env, monkeypatch):
    # a maintainer or writer killed between its upload and its commit leaves an object behind
    import datetime as dt

    import lab.lake

    lake = Lake("s3://lake/orphans")
    rng = np.random.default_rng(5)
    sent = [flush(k, rng) for k in range(3)]
    for df in sent:
        lake.append("trades", df)
    store = lake._obstore("trades")
    orphan = "part-00000-killed-before-commit-c000.zstd.parquet"
    obstore.put(store, orphan, b"PAR1 never committed")
    # Act: the maintainer's first pass, with no grace (no reader nor writer runs in this test, and
    # an object's age on the store cannot be set back)
    monkeypatch.setattr(lab.lake, "FULL_VACUUM_MIN_HOURS", 0)
    lake.maintain("trades", grace=dt.timedelta(0), min_files=100)
    # Assert: the object is gone, every committed row is still there
    with pytest.raises(FileNotFoundError):
        obstore.head(store, orphan)
    assert_frame_equal(lake.read("trades").sort("trade_id"), pl.concat(sent).sort("trade_id"))

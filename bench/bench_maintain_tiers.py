"""What `lab maintain` costs over a recording day: size-tiered compaction against the former policy.

    .venv/bin/python bench/bench_maintain_tiers.py [--hours 3] [--commit-every 30] [--maintain-every 60]
        [--table book_updates] [--venues binance,coinbase,kraken] [--assets BTC] [--query-every 4]
        [--min-files 8] [--baseline-root /work/main]
    .venv/bin/python bench/bench_maintain_tiers.py --object [--hours 1] ...   # the lake on S3

A recorder's day, compressed: the simulator's rows of ``--table`` (recorders.sim.bulk, the shapes a
recorder writes) for ``--hours`` of simulated time are appended with the lake API one commit per
``--commit-every`` simulated seconds (the recorder's tail commit interval; each commit in arrival
order, as a recorder writes it: not sorted by exchange time), and a maintenance pass runs every
``--maintain-every`` simulated seconds (``lab demo`` runs ``lab maintain --every 30``), as fast as
the machine goes. Contenders, each with a lake of its own and the same appends, interleaved (each
append, pass and query goes to every contender in turn, the order rotating):

- ``tiers``: this checkout (size tiers, DuckDB merge within ``MERGE_MEMORY``);
- ``binpack``: this checkout with the former plan (``lab.lake._POLICY = "binpack"``: every file under
  ``target_size`` re-merged at each pass), same merge engine: the plan's share of the cost;
- ``baseline`` with ``--baseline-root DIR``: that checkout's ``Lake.maintain`` as it is (e.g. main
  before this change: bin-packing + Polars/delta-rs merge).

Each contender's passes run in one long-lived child process, as ``lab maintain --every`` does. Per
contender it prints: maintain CPU-s (user+sys of the child during its passes, imports excluded),
the child's peak RSS over the first half and over the whole run (VmHWM), the bytes and rows the
passes' compactions read (from the Delta log: the remove actions of the commits each pass made), the
files in the table at the end, and p50/p99 of a fresh ``lab.connect()`` + "last 5 minutes" query
taken every ``--query-every`` appends, so at every point of the maintenance cycle; then the ratios
tiers/other. Medians and percentiles, never best-of; the load average is printed at start and end.

``--object``: the same appends and passes on the lake on S3 (a local SeaweedFS server,
``lab.objectstore.LocalS3``), two contenders in this process, interleaved with the order rotating:
``tiers`` (``ObjectLake.maintain``: size tiers, time-sorted, the local lake's merge) and
``optimize`` (the former ``ObjectLake.maintain``: delta-rs ``optimize.compact`` at every pass,
then the same checkpoint and vacuum). Per contender: the bytes its passes rewrote (the sizes of
the files in the snapshot before a pass and not after it), the wall time and CPU of the passes
(p50, max, total), the files at the end, p50/p99 of a fresh "last 5 minutes" Polars read of the table
every ``--query-every`` appends; then the ratios.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import lab  # noqa: E402
from lab.lake import Lake  # noqa: E402
from lab.schema import table_spec  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
T0 = dt.datetime(2026, 11, 22, 0, tzinfo=dt.timezone.utc)

# One maintainer per contender: a pass per line on stdin, one JSON line back per pass.
CHILD = r'''
import json, sys, time
from pathlib import Path
policy, root, table, min_files = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
import polars as pl
import lab.lake
from lab.lake import Lake
if policy == "binpack":
    lab.lake._POLICY = "binpack"
lake = Lake(root)
def hwm():  # this process image's peak RSS, MiB (ru_maxrss would keep the parent's RSS at fork)
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
print(json.dumps({"import_rss": hwm()}), flush=True)
for _ in sys.stdin:
    t = lake.delta(table)
    v0 = t.version()
    rows = dict(pl.DataFrame(t.get_add_actions(flatten=True)).select("path", "num_records").rows())
    c0 = time.process_time()
    lake.maintain(table, min_files=min_files)
    cpu = time.process_time() - c0
    read_bytes = read_rows = merges = 0
    for v in range(v0 + 1, lake.version(table) + 1):  # the commits of this pass (appends wait for it)
        f = Path(root) / table / "_delta_log" / f"{v:020d}.json"
        rm = [json.loads(l)["remove"] for l in f.read_text().splitlines() if '"remove"' in l]
        merges += bool(rm)
        read_bytes += sum(r["size"] for r in rm)
        read_rows += sum(rows.get(r["path"]) or 0 for r in rm)
    print(json.dumps({"cpu": cpu, "maxrss": hwm(),
                      "bytes": read_bytes, "rows": read_rows, "merges": merges}), flush=True)
'''


def simulated(table: str, hours: float, venues: list[str], assets: list[str], scratch: Path) -> pl.DataFrame:
    """``hours`` of the simulator's ``table`` rows, in arrival (ts_local) order."""
    from recorders.sim.bulk import write_to_lake

    lake = Lake(scratch)
    write_to_lake(lake, start=T0, duration=dt.timedelta(hours=hours), venues=venues, assets=assets, seed=1)
    return lake.read(table).sort("ts_local", maintain_order=True)


class Contender:
    def __init__(self, name: str, root: Path, table: str, code: Path, min_files: int) -> None:
        self.name, self.root, self.table = name, root, table
        self.lake = Lake(root)
        env = dict(os.environ, PYTHONPATH=str(code))
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, "binpack" if name == "binpack" else "as-is",
                                      str(root), table, str(min_files)], cwd=code, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        self.import_rss = json.loads(self.proc.stdout.readline())["import_rss"]
        self.passes: list[dict] = []
        self.queries: list[float] = []

    def maintain(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("pass\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name}: the maintainer exited ({self.proc.wait()})")
        self.passes.append(json.loads(line))

    def query(self, sql: str, start: dt.datetime) -> list[tuple]:
        t = time.perf_counter()
        con = lab.connect(str(self.root))
        rows = con.execute(sql, {"start": start}).fetchall()
        con.close()
        self.queries.append(time.perf_counter() - t)
        return sorted(rows)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _optimize_maintain(lake: Lake, table: str, min_files: int) -> None:
    """The former ``ObjectLake.maintain``: delta-rs' bin-packing ``optimize.compact`` every pass."""
    from lab.lake import _WRITE_HOOKS, retune_log

    t = lake.delta(table)
    if len(t.file_uris()) >= min_files:
        t.optimize.compact(target_size=128 * 1024 * 1024, post_commithook_properties=_WRITE_HOOKS)
        t = lake.delta(table)
    t = retune_log(t)
    t.create_checkpoint()
    t.cleanup_metadata()
    t.vacuum(retention_hours=int(dt.timedelta(hours=1).total_seconds() // 3600), dry_run=False,
             enforce_retention_duration=False)


def run_object(a: argparse.Namespace, batches: list[pl.DataFrame], per_pass: int, total_rows: int) -> None:
    """``--object``: tiers against delta-rs' optimize.compact on a local S3 server."""
    from lab.objectstore import LocalS3

    with LocalS3(bucket="lake") as s3:
        os.environ.update(s3.env())
        lakes = {"tiers": Lake("s3://lake/tiers"), "optimize": Lake("s3://lake/optimize")}
        stats: dict[str, dict[str, list]] = {n: {"bytes": [], "wall": [], "cpu": [], "query": []}
                                              for n in lakes}
        names = list(lakes)
        t_start = time.time()
        for i, b in enumerate(batches):
            turn = names[i % 2:] + names[:i % 2]  # rotate who goes first
            for n in turn:
                lakes[n].append(a.table, b)
            if (i + 1) % a.query_every == 0:  # a fresh "last 5 minutes" read of each, same answer
                since = T0 + dt.timedelta(seconds=(i + 1) * a.commit_every - 300)
                got = {}
                for n in turn:
                    q0 = time.perf_counter()
                    got[n] = Lake(lakes[n].root).scan(a.table, start=since).select(pl.len()).collect().item()
                    stats[n]["query"].append(time.perf_counter() - q0)
                assert len(set(got.values())) == 1, got
            if (i + 1) % per_pass:
                continue
            for n in turn:
                lake = lakes[n]
                before = dict(pl.DataFrame(lake.delta(a.table).get_add_actions(flatten=True))
                              .select("path", "size_bytes").rows())
                w0, c0 = time.perf_counter(), time.process_time()
                if n == "tiers":
                    lake.maintain(a.table, min_files=a.min_files)
                else:
                    _optimize_maintain(lake, a.table, a.min_files)
                stats[n]["wall"].append(time.perf_counter() - w0)
                stats[n]["cpu"].append(time.process_time() - c0)
                after = set(pl.DataFrame(lake.delta(a.table).get_add_actions(flatten=True))["path"].to_list())
                stats[n]["bytes"].append(sum(sz for p, sz in before.items() if p not in after))
            if i % 50 == 49:
                print(f"  ... {i + 1}/{len(batches)} appends, {time.time() - t_start:.0f} s", flush=True)
        print(f"run {time.time() - t_start:.0f} s; load average at end {os.getloadavg()[0]:.2f}")
        out = {}
        for n, lake in lakes.items():
            got = lake.read(a.table)
            assert got.height == total_rows, (n, got.height, total_rows)  # every row, once
            st = stats[n]
            out[n] = r = {"bytes": sum(st["bytes"]) / 2**20, "wall": sum(st["wall"]), "cpu": sum(st["cpu"]),
                          "files": len(lake.delta(a.table).file_uris())}
            print(f"{n:9s} {len(st['wall'])} passes: rewrote {r['bytes']:,.1f} MiB; wall {r['wall']:.1f} s "
                  f"(p50 {np.median(st['wall']) * 1000:.0f} ms, max {max(st['wall']):.2f} s); CPU {r['cpu']:.1f} s; "
                  f"{r['files']} files at the end; 5-minute read p50 {np.median(st['query']) * 1000:.0f} ms, "
                  f"p99 {np.percentile(st['query'], 99) * 1000:.0f} ms ({len(st['query'])} points)")
            r["q50"] = float(np.median(st["query"]))
        new, old = out["tiers"], out["optimize"]
        print(f"tiers / optimize: bytes rewritten {new['bytes'] / max(old['bytes'], 1e-9):.3f}x, "
              f"wall {new['wall'] / old['wall']:.2f}x, CPU {new['cpu'] / old['cpu']:.2f}x, "
              f"files at the end {new['files'] / old['files']:.1f}x, read p50 {new['q50'] / old['q50']:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=3.0, help="simulated hours of recording")
    ap.add_argument("--commit-every", type=float, default=30.0, help="simulated seconds per append (commit)")
    ap.add_argument("--maintain-every", type=float, default=60.0, help="simulated seconds between passes")
    ap.add_argument("--table", default="book_updates")
    ap.add_argument("--venues", default="binance,coinbase,kraken")
    ap.add_argument("--assets", default="BTC")
    ap.add_argument("--query-every", type=int, default=4, help="appends between two timed queries")
    ap.add_argument("--min-files", type=int, default=8,
                    help="maintain(min_files=): the fan-in of the tiers; lab maintain uses 8, the recorder 16")
    ap.add_argument("--object", action="store_true",
                    help="on a local S3 server: ObjectLake.maintain (tiers) against delta-rs optimize.compact")
    ap.add_argument("--baseline-root", type=Path, default=None,
                    help="another checkout whose Lake.maintain runs as a third contender (e.g. /work/main)")
    a = ap.parse_args()
    tcol = table_spec(a.table).time_column
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = simulated(a.table, a.hours, a.venues.split(","), a.assets.split(","), tmp / "scratch")
        step = int(a.commit_every * 1e6)
        rows = rows.with_columns(_b=((pl.col("ts_local") - pl.lit(T0)).dt.total_microseconds() // step))
        batches = [b.drop("_b") for b in rows.partition_by("_b", maintain_order=True)]
        per_pass = max(1, round(a.maintain_every / a.commit_every))
        mib = rows.drop("_b").estimated_size() / 2**20
        print(f"{a.table}: {rows.height:,} rows ({mib:.0f} MiB in memory) over {a.hours:g} simulated hours, "
              f"{len(batches)} appends (one per {a.commit_every:g} s), a pass every {per_pass} appends "
              f"({len(batches) // per_pass} passes); load average at start {load0[0]:.2f}", flush=True)
        if a.object:
            run_object(a, batches, per_pass, rows.height)
            return
        cs = [Contender("tiers", tmp / "tiers", a.table, ROOT, a.min_files),
              Contender("binpack", tmp / "binpack", a.table, ROOT, a.min_files)]
        if a.baseline_root:
            cs.append(Contender("baseline", tmp / "baseline", a.table, a.baseline_root.resolve(), a.min_files))
        sql = (f"SELECT venue, symbol, count(*) FROM {a.table} WHERE {tcol} >= $start GROUP BY ALL")
        t_start = time.time()
        try:
            for i, b in enumerate(batches):
                turn = cs[i % len(cs):] + cs[:i % len(cs)]  # rotate who goes first
                for c in turn:
                    c.lake.append(a.table, b)
                if (i + 1) % per_pass == 0:
                    for c in turn:
                        c.maintain()
                if (i + 1) % a.query_every == 0:
                    end = T0 + dt.timedelta(seconds=(i + 1) * a.commit_every)
                    got = {c.name: c.query(sql, end - dt.timedelta(minutes=5)) for c in turn}
                    assert len({json.dumps(v, default=str) for v in got.values()}) == 1, got  # same answer
                if i % 50 == 49:
                    print(f"  ... {i + 1}/{len(batches)} appends, {time.time() - t_start:.0f} s", flush=True)
        finally:
            for c in cs:
                c.close()
        print(f"run {time.time() - t_start:.0f} s; load average at end {os.getloadavg()[0]:.2f}")
        out = {}
        for c in cs:
            p = c.passes
            half = p[: len(p) // 2]
            got = c.lake.read(a.table)
            assert got.height == rows.height, (c.name, got.height, rows.height)  # every row, once
            out[c.name] = r = {
                "cpu": sum(x["cpu"] for x in p),
                "cpu_p50": float(np.median([x["cpu"] for x in p])),
                "cpu_max": max(x["cpu"] for x in p),
                "rss_half": max(x["maxrss"] for x in half) if half else 0.0,
                "rss": max(x["maxrss"] for x in p),
                "bytes": sum(x["bytes"] for x in p) / 2**20,
                "rows": sum(x["rows"] for x in p),
                "merges": sum(x["merges"] for x in p),
                "files": len(c.lake.delta(a.table).file_uris()),
                "q50": float(np.percentile(c.queries, 50)) * 1000,
                "q99": float(np.percentile(c.queries, 99)) * 1000,
            }
            print(f"{c.name:9s} maintain CPU {r['cpu']:6.1f} s over {len(p)} passes (p50 {r['cpu_p50'] * 1000:.0f} ms, "
                  f"max {r['cpu_max']:.2f} s); peak RSS {r['rss_half']:.0f} MiB first half, {r['rss']:.0f} MiB run "
                  f"({c.import_rss:.0f} after imports); "
                  f"compaction read {r['bytes']:,.0f} MiB, {r['rows']:,} rows ({r['rows'] / rows.height:.1f}x the "
                  f"table) in {r['merges']} merges; {r['files']} files at the end; 5-minute query p50 "
                  f"{r['q50']:.0f} ms, p99 {r['q99']:.0f} ms ({len(c.queries)} points)")
        new = out["tiers"]
        for name, o in out.items():
            if name == "tiers":
                continue
            print(f"tiers / {name}: maintain CPU {new['cpu'] / o['cpu']:.2f}x, peak RSS {new['rss'] / o['rss']:.2f}x, "
                  f"bytes rewritten {new['bytes'] / max(o['bytes'], 1e-9):.3f}x, files at the end "
                  f"{new['files'] / o['files']:.1f}x, query p50 {new['q50'] / o['q50']:.2f}x, "
                  f"p99 {new['q99'] / o['q99']:.2f}x")


if __name__ == "__main__":
    main()

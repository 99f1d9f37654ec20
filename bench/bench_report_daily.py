"""Bench: the daily market report over one simulated day (3 venues x 3 assets).

    .venv/bin/python bench/bench_report_daily.py            # one full day (target <= 60 s)
    .venv/bin/python bench/bench_report_daily.py --quick    # one hour

The simulated day is written once into a cache folder (``--lake`` to choose
it; reused by later runs, several minutes the first time) and the report is
then run as ``lab report`` does (papermill + HTML). Printed: rows per table,
the report's wall time split into execution and rendering, and as an in-run
baseline the time to just read the columns the report needs
(trades + quotes) with Polars, with the ratio report / baseline.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
from pathlib import Path

START = dt.datetime(2026, 11, 22, tzinfo=dt.timezone.utc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one simulated hour instead of a day")
    ap.add_argument("--lake", help="lake folder to use/create (default: a cache folder in the temp dir)")
    ap.add_argument("--seed", type=int, default=1, help="simulator seed")
    ap.add_argument("--budget", type=float, default=60.0, help="target seconds for the full day")
    a = ap.parse_args()

    import polars as pl

    from lab.apps.report import render_html, run_report
    from lab.lake import Lake

    hours = 1 if a.quick else 24
    root = Path(a.lake) if a.lake else Path(tempfile.gettempdir()) / f"hfthot-bench-report-{hours}h-seed{a.seed}" / "lake"
    lake = Lake(root)
    if not (lake.exists("trades") and (root.parent / "complete").exists()):
        from recorders.sim.bulk import write_to_lake

        if root.exists():
            import shutil

            shutil.rmtree(root)
        print(f"simulating {hours} h (3 venues x 3 assets) into {root} (once; reused later) ...")
        t = time.perf_counter()
        rows = write_to_lake(lake, start=START, duration=dt.timedelta(hours=hours), seed=a.seed, progress=True)
        lake.maintain(grace=dt.timedelta(0))
        (root.parent / "complete").write_text("ok")
        print(f"  simulated in {time.perf_counter() - t:.1f} s: {rows}")
    counts = {t: lake.scan(t).select(pl.len()).collect().item() for t in ("trades", "quotes", "book_updates")}
    print(f"lake {root}: " + ", ".join(f"{t} {n:,}" for t, n in counts.items()))

    t = time.perf_counter()
    pl.concat([lake.scan("trades").select("ts_exchange", "venue", "symbol", "price", "qty", "side").collect()
               .select(pl.len()), lake.scan("quotes").select("venue", "symbol", "bid_px", "ask_px", "bid_qty",
                                                             "ask_qty").collect().select(pl.len())])
    base = time.perf_counter() - t

    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        res = run_report("daily_market_report", START.date(), lake=root, out=out, html=False, progress=False)
        t_exec = time.perf_counter() - t
        import nbformat

        nb = nbformat.read(res.notebook, as_version=4)
        cells = [(c.metadata.get("papermill", {}).get("duration") or 0.0, c.source.splitlines()[0][:60])
                 for c in nb.cells if c.cell_type == "code"]
        slowest = sorted(cells, reverse=True)[:4]
        t = time.perf_counter()
        render_html(res.notebook, Path(out) / "page.html", title="bench")
        t_html = time.perf_counter() - t
        size = (Path(out) / "page.html").stat().st_size
    total = t_exec + t_html
    label = "1 h (quick)" if a.quick else "1 day"
    print(f"daily report over {label}: {total:.1f} s (execute {t_exec:.1f} s, HTML {t_html:.1f} s, "
          f"page {size / 1e6:.1f} MB)")
    print("slowest cells: " + "; ".join(f"{d:.1f} s {src!r}" for d, src in slowest))
    print(f"baseline (read the report's trades+quotes columns): {base:.2f} s; report/baseline = {total / base:.1f}x")
    if not a.quick:
        print(f"target <= {a.budget:.0f} s: {'PASS' if total <= a.budget else 'FAIL'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

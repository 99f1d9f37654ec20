"""``lab backtest STRATEGY``: run a shipped strategy on lake data and print its stats.

Examples::

    lab backtest mm --start 2026-11-22T12:00 --end 2026-11-22T13:00 -p venue=binance -p symbol=BTC-USDT
    lab backtest mm --last 1h -p venue=binance -p symbol=BTC-USDT          # the newest hour of data
    lab backtest arb -p legs=binance:BTC-USDT,coinbase:BTC-USD,kraken:BTC-USD --taker-fee 0.0005
    lab backtest imbalance -p threshold=0.4 --out reports/bt_imbalance     # + parquet, stats.json, HTML
    lab backtest list                                                       # strategies and parameters

A range that spans more than one UTC day runs one day at a time
(:func:`lab.distributed.backtest_days`): one engine carries its books, orders and
positions across midnight, only one day of events is in memory, the order log is
streamed to disk, and the result equals one run over the whole range.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import sys
from pathlib import Path

from lab.errors import ConfigError

HELP = "backtest a strategy on lake data"

__all__ = ["add_arguments", "run", "add_model_arguments", "config_from_args", "parse_params", "make_strategy",
           "parse_time", "parse_duration", "time_range"]


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Options shared by ``lab backtest`` and ``lab paper``: strategy params and exchange models."""
    p.add_argument("strategy", help="strategy name: mm (market maker with inventory skew), arb (cross-venue "
                   "taker), imbalance (microprice/imbalance signal); 'list' shows them with their parameters")
    p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                   help="strategy parameter (repeatable), e.g. -p venue=binance -p qty=0.02")
    p.add_argument("--latency-us", type=float, nargs=2, default=(1000.0, 1000.0), metavar=("ENTRY", "RESPONSE"),
                   help="order entry and response latency in microseconds (feed latency is the recorded one)")
    p.add_argument("--latency-dist", choices=["constant", "lognormal"], default="constant",
                   help="constant latencies, or log-normal with those medians")
    p.add_argument("--latency-sigma", type=float, default=0.5, help="shape of the log-normal latency")
    p.add_argument("--seed", type=int, default=0, help="seed of random latencies (runs are deterministic)")
    p.add_argument("--queue", choices=["risk_averse", "prob_power", "prob_log"], default="risk_averse",
                   help="queue-position model of resting orders")
    p.add_argument("--queue-param", type=float, default=2.0, help="exponent of the prob_power queue model")
    p.add_argument("--fee", action="append", default=[], metavar="VENUE=MAKER,TAKER",
                   help="fee rates of a venue as fractions (negative = rebate), e.g. binance=-0.0001,0.0005; "
                   "venues not given use lab.backtest.DEFAULT_FEES (base tiers)")
    p.add_argument("--equity-interval", type=float, default=1.0,
                   help="equity sampling interval in seconds (Sharpe/Sortino use it, annualised with 365 days)")
    p.add_argument("--lake", type=Path, default=None, help="lake directory (default $LAB_DATA/lake)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--start", default=None, help="first exchange time (ISO, UTC, e.g. 2026-11-22T12:00); "
                   "default: start of the data")
    p.add_argument("--end", default=None, help="end exchange time, exclusive (ISO, UTC); default: end of data")
    p.add_argument("--last", default=None, metavar="DURATION",
                   help="the newest DURATION of data of the strategy's instruments, e.g. 30m, 1h, 2d "
                   "(instead of --start; ends at --end or at the newest row)")
    p.add_argument("--quotes", action="store_true",
                   help="replay quotes as a one-level book instead of book_updates (faster, coarser)")
    p.add_argument("--capital", type=float, default=10_000.0, help="capital base for returns (quote units)")
    p.add_argument("--out", type=Path, default=None,
                   help="directory for fills/orders/equity parquet, stats.json and report.html")
    p.add_argument("--json", action="store_true", help="print the stats as JSON")
    from lab.apps._sweep import add_sweep_arguments

    add_sweep_arguments(p)  # --sweep/--cluster (lab.distributed)


def parse_params(items: list[str]) -> dict[str, str]:
    out = {}
    for it in items:
        if "=" not in it:
            raise ConfigError(f"-p expects KEY=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def make_strategy(name: str, params: dict[str, str]):
    from lab.backtest.strategies import STRATEGIES

    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; choose from {sorted(STRATEGIES)} (or 'list')")
    try:
        strat = STRATEGIES[name](**params)
        strat.instruments()  # checks params such as arb's legs
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return strat


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)\s*$")


def parse_duration(flag: str, text: str) -> dt.timedelta:
    """``30m``, ``1h``, ``2d``, ``90s`` as a positive timedelta (the error names ``flag``).

    >>> parse_duration("--last", "90m")
    datetime.timedelta(seconds=5400)
    """
    m = _DURATION.match(text or "")
    if not m or float(m.group(1)) <= 0:
        raise ConfigError(f"{flag} {text!r}: expected a positive duration such as 30m, 1h or 2d")
    unit = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}[m.group(2)]
    return dt.timedelta(seconds=float(m.group(1)) * unit)


def parse_time(flag: str, text: str | None) -> dt.datetime | None:
    """An ISO date or date-time (naive = UTC) as an aware datetime; the error names ``flag``.

    >>> parse_time("--start", "2026-11-22T12:00").isoformat()
    '2026-11-22T12:00:00+00:00'
    """
    if text is None:
        return None
    try:
        t = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"{flag} {text!r}: not an ISO date or time (UTC), e.g. 2026-11-22 or "
                          "2026-11-22T12:00") from None
    return (t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)).astimezone(dt.timezone.utc)


def time_range(a: argparse.Namespace, keys: list[tuple[str, str]], lake) -> tuple[dt.datetime | None,
                                                                                   dt.datetime | None]:
    """``--start/--end/--last`` checked and resolved (``--last`` against the newest row of ``keys``)."""
    start, end = parse_time("--start", a.start), parse_time("--end", a.end)
    last = getattr(a, "last", None)
    if last is not None:
        if start is not None:
            raise ConfigError("give --start or --last, not both")
        span = parse_duration("--last", last)
        if end is None:
            from lab.backtest.data import coverage, no_data_message

            table = "quotes" if a.quotes else "book_updates"
            cov = coverage(table, venues=sorted({v for v, _ in keys}), symbols=sorted({s for _, s in keys}),
                           lake=lake)
            if cov.height == 0:
                from lab.errors import DataError

                raise DataError(no_data_message(table, keys, None, None, lake))
            end = cov["last"].max() + dt.timedelta(microseconds=1)
        start = end - span
    if start is not None and end is not None and end <= start:
        raise ConfigError(f"--end {a.end} is not after --start {a.start}")
    return start, end


def config_from_args(a: argparse.Namespace):
    from lab.backtest import BacktestConfig, Fees, Latency

    fees = {}
    for f in a.fee:
        try:
            v, rates = f.split("=", 1)
            m, t = (float(x) for x in rates.split(","))
        except ValueError:
            raise ConfigError(f"--fee expects VENUE=MAKER,TAKER (fractions), got {f!r}") from None
        fees[v] = Fees(m, t)
    lat = Latency(entry_us=a.latency_us[0], response_us=a.latency_us[1], dist=a.latency_dist,
                  sigma=a.latency_sigma, seed=a.seed)
    return BacktestConfig(fees=fees, latency=lat, queue=a.queue, queue_param=a.queue_param,
                          equity_interval_s=a.equity_interval)


def print_strategies() -> int:
    from lab.backtest.strategies import STRATEGIES

    for name, cls in STRATEGIES.items():
        if name != cls.name:
            print(f"{name:10s} alias of {cls.name}")
            continue
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        print(f"{name:10s} {doc}")
        for k, v in cls.defaults.items():
            print(f"    -p {k}={v}")
    return 0


def run(a: argparse.Namespace) -> int:
    if a.strategy == "list":
        return print_strategies()
    if getattr(a, "sweep", None):
        from lab.apps._sweep import run_sweep

        return run_sweep(a)
    from lab.backtest import load_events, run_backtest
    from lab.lake import Lake

    strat = make_strategy(a.strategy, parse_params(a.param))
    cfg = config_from_args(a)
    keys = strat.instruments()
    lake = Lake(a.lake) if a.lake else None
    start, end = time_range(a, keys, lake)
    span = data_span(a, keys, lake, start, end)
    from lab.distributed import spans_days

    if spans_days(*span):
        res, n, parts = _run_days(a, strat, cfg, lake, span)
        try:
            return _report(a, strat, res, *span, n)
        finally:
            shutil.rmtree(parts, ignore_errors=True)  # the streamed order log, written to --out by now
    print(f"loading {', '.join(f'{v}:{s}' for v, s in keys)} from {lake or 'the lake'} ...", file=sys.stderr)
    ev = load_events(venues=sorted({v for v, _ in keys}), symbols=sorted({s for _, s in keys}),
                     start=start, end=end, lake=lake, use_quotes=a.quotes, require=keys)
    res = run_backtest(strat, ev, cfg)
    t0 = dt.datetime.fromtimestamp(ev.start / 1e6, dt.timezone.utc)
    t1 = dt.datetime.fromtimestamp(ev.end / 1e6, dt.timezone.utc)
    return _report(a, strat, res, t0, t1, len(ev))


def data_span(a: argparse.Namespace, keys: list[tuple[str, str]], lake, start: dt.datetime | None,
              end: dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    """``[start, end)`` with an open end filled in from what the lake holds for ``keys`` (the
    first row; the last row + 1 µs); the lake lacking them is a :class:`DataError` naming what it has."""
    if start is not None and end is not None:
        return start, end
    from lab.backtest.data import coverage, no_data_message
    from lab.errors import DataError

    table = "quotes" if a.quotes else "book_updates"
    cov = coverage(table, venues=sorted({v for v, _ in keys}), symbols=sorted({s for _, s in keys}), lake=lake)
    cov = cov.filter(_in_keys(cov, keys))
    if cov.height == 0:
        raise DataError(no_data_message(table, keys, start, end, lake))
    lo = start if start is not None else cov["first"].min()
    hi = end if end is not None else cov["last"].max() + dt.timedelta(microseconds=1)
    if hi <= lo:
        raise DataError(no_data_message(table, keys, start, end, lake))
    return lo, hi


def _in_keys(cov, keys: list[tuple[str, str]]):
    """The rows of a coverage frame that are one of the strategy's (venue, symbol) instruments."""
    import polars as pl

    return pl.concat_str("venue", "symbol", separator="\x00").is_in([f"{v}\x00{s}" for v, s in keys])


def _run_days(a: argparse.Namespace, strat, cfg, lake, span: tuple[dt.datetime, dt.datetime]):
    """The range one UTC day at a time (see the module doc), a progress bar per day on stderr:
    ``(result, events, folder)``, the order log streamed to that temporary folder (the caller removes it)."""
    import tempfile

    from tqdm import tqdm

    from lab.distributed import backtest_days, day_splits

    days = [d for d, _, _ in day_splits(*span)]
    print(f"backtesting {', '.join(f'{v}:{s}' for v, s in strat.instruments())} from {lake or 'the lake'}, "
          f"{len(days)} days, one at a time ...", file=sys.stderr)
    n = 0
    with tqdm(total=len(days), unit="day", file=sys.stderr, disable=None) as bar:
        def progress(day: dt.date, rows: int) -> None:
            nonlocal n
            n += rows
            bar.update(days.index(day) + 1 - bar.n)
            bar.set_postfix_str(f"{day} {n:,} events")

        tmp = Path(tempfile.mkdtemp(prefix="lab-backtest-"))
        try:
            res = backtest_days(strat, span[0], span[1], config=cfg, lake=lake, use_quotes=a.quotes,
                                progress=progress, out=tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        bar.update(len(days) - bar.n)
    return res, n, tmp


def _report(a: argparse.Namespace, strat, res, t0: dt.datetime, t1: dt.datetime, n_events: int) -> int:
    """Print the stats (text or ``--json``) and write ``--out``."""
    st = res.stats() if a.capital == 10_000.0 else __import__("lab.backtest.stats", fromlist=["summary"]).summary(
        res, a.capital)
    st["events"] = res.events
    st["events_per_s"] = res.events_per_s
    st["data"] = {"start": t0.isoformat(), "end": t1.isoformat(), "instruments": [list(k) for k in strat.instruments()]}
    if a.json:
        print(json.dumps(st, indent=2, default=str))
    else:
        end = f"{t1:%H:%M:%S}" if t1.date() == t0.date() else f"{t1:%Y-%m-%d %H:%M:%S}"
        print(f"{strat.name} on {n_events:,} events {t0:%Y-%m-%d %H:%M:%S} → {end} UTC "
              f"({res.elapsed_s:.2f} s, {res.events_per_s:,.0f} events/s)")
        for k, v in st.items():
            if k in ("data", "events", "events_per_s"):
                continue
            print(f"  {k:24s} {v:,.6g}" if isinstance(v, float) else f"  {k:24s} {v}")
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        res.fills.write_parquet(a.out / "fills.parquet")
        res.scan_orders().sink_parquet(a.out / "orders.parquet")  # streamed from disk after a day-by-day run
        res.equity.write_parquet(a.out / "equity.parquet")
        (a.out / "stats.json").write_text(json.dumps(st, indent=2, default=str))
        from lab.backtest.plots import equity_figure, fills_figure, venue_pnl_figure
        from lab.plots import html_page

        # plotly.js embedded: the page must draw offline (no CDN)
        page = html_page(f"{strat.name} backtest {t0:%Y-%m-%d %H:%M} → {t1:%H:%M} UTC",
                         [equity_figure(res, a.capital), venue_pnl_figure(res), fills_figure(res)])
        (a.out / "report.html").write_text(page, encoding="utf-8")
        print(f"wrote {a.out}/", file=sys.stderr)
    return 0

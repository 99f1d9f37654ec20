"""The README is executable documentation: every line of its "What you can do" block runs here.

Each command is run as written, by the installed ``lab`` script, from a copy of the
project (notebooks/, streamlit_apps/, config/, recorders/demo.toml) with ``LAB_DATA``
unset, so it means ``./data`` exactly as for a new user. The lake there is seeded
the way ``lab demo`` seeds it (``recorders.sim.bulk.write_to_lake``), 10 minutes
ending now, so the README's relative dates (``--last 1h``, ``--date today``) find data.

The only changes made to a README line are port numbers and endpoints (tests never
use the default ports, see ``localise``):

* ``ws://127.0.0.1:50052`` (the bus) becomes a free port;
* ``lab simulate`` gets ``--port-base`` on free ports;
* ``lab record --config recorders/demo.toml`` gets ``--sim --sim-port-base`` of the
  test's simulator (the file names the default port);
* ``lab record --venue binance ...`` (the real venue, default URLs) cannot reach the
  internet here: it gets ``--base-url``/``--rest-url`` of the test's simulator, the
  way the command lets a user point it elsewhere, and must record from it;
* ``lab arbitrage`` subscribes to a bus the test serves, on which the test publishes
  a crossed book (binance asks below kraken bids), so its first useful act, a
  signal in the lake, does not depend on luck.

Long-running commands are started, checked to come up and do their first useful
thing, then stopped with SIGTERM. One-shot commands must exit 0 and produce what the
README says. A README line without a check here fails ``test_every_readme_line_has_a_check``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from recorders.sim.harness import free_port_base

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
LAB = str(Path(sys.executable).parent / "lab")
UTC = dt.timezone.utc
SEED_MINUTES = 10


# --------------------------------------------------------------------------- README parsing
def readme_block(heading: str, lang: str) -> str:
    """The first ```lang fenced block after the ``## heading`` line."""
    text = README.read_text(encoding="utf-8")
    m = re.search(rf"^## {re.escape(heading)}\s*$.*?^```{lang}\n(.*?)^```", text, re.M | re.S)
    assert m, f"README has no ```{lang} block under '## {heading}'"
    return m.group(1)


def readme_commands() -> list[str]:
    """Each command line of the "What you can do" block, comments removed, spaces normalised."""
    out = []
    for line in readme_block("What you can do", "bash").splitlines():
        argv = shlex.split(line, comments=True)
        if argv:
            out.append(" ".join(argv))
    return out


# --------------------------------------------------------------------------- processes and ports
class Proc:
    """A ``lab`` command in its own process group; output in files under ``logs``."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], logs: Path, name: str) -> None:
        self.argv, self.name = argv, name
        self.out_path, self.err_path = logs / f"{name}.out", logs / f"{name}.err"
        self.p = subprocess.Popen(argv, cwd=cwd, env=env, stdout=self.out_path.open("wb"),
                                  stderr=self.err_path.open("wb"), start_new_session=True)

    @property
    def out(self) -> str:
        return self.out_path.read_text(errors="replace")

    @property
    def err(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_for(self, what: str, ok: Callable[[], object], timeout: float = 60.0) -> object:
        """Poll ``ok()`` until it is truthy; fail if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                v = ok()
            except Exception as e:  # noqa: BLE001 - a table not there yet, a file half-written
                v, last = None, e
            else:
                last = None
            if v:
                return v
            if self.p.poll() is not None:
                pytest.fail(f"{' '.join(self.argv)} exited {self.p.returncode} before {what}:\n"
                            f"{self.out[-2000:]}\n{self.err[-3000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"{' '.join(self.argv)}: no {what} in {timeout:.0f} s ({last!r}):\n"
                            f"{self.out[-2000:]}\n{self.err[-3000:]}")
            time.sleep(0.3)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, as a service manager would; the return code (a signal death is -15)."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(10)
                pytest.fail(f"{' '.join(self.argv)} ignored SIGTERM for {timeout:.0f} s")
        return self.p.returncode

    def kill(self) -> None:
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.p.wait(10)


def assert_clean_stop(proc: Proc, codes: tuple[int, ...] = (0,)) -> None:
    rc = proc.stop()
    assert rc in codes, f"{proc.name} exited {rc} on SIGTERM:\n{proc.err[-3000:]}"
    assert "Traceback" not in proc.err, proc.err[-3000:]


class BusThread:
    """A live-bus hub and a publisher in a background event loop (for the arbitrage check)."""

    def __init__(self, token: str) -> None:
        from lab.bus import Hub

        self.token = token
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.hub = self.call(Hub("127.0.0.1", 0, token=token).start())
        self.pub = None

    def call(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def url(self) -> str:
        return self.hub.url

    def publish(self, table: str, rows: list[dict]) -> None:
        from lab.bus import Publisher

        if self.pub is None:
            self.pub = self.call(Publisher(self.url + "/publish", token=self.token).start())
        self.call(self.pub.publish(table, rows))

    def close(self) -> None:
        if self.pub is not None:
            self.call(self.pub.close())
        self.call(self.hub.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.loop.is_running():
            self.loop.close()  # here, not by the garbage collector during a later test


# --------------------------------------------------------------------------- the new user's folder
class Session:
    """The project copy, its seeded ./data, the ports, and the services started so far."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.proj = root / "project"
        self.logs = root / "logs"
        self.logs.mkdir(parents=True)
        for d in ("notebooks", "streamlit_apps", "config"):
            shutil.copytree(ROOT / d, self.proj / d, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
        (self.proj / "recorders").mkdir()
        shutil.copy(ROOT / "recorders" / "demo.toml", self.proj / "recorders" / "demo.toml")
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("LAB_DATA", "LAB_LAKE", "LAB_REPORTS", "LAB_PROJECT", "LAB_STREAMLIT_PAGES")}
        self.env["PYTHONUNBUFFERED"] = "1"
        self.data = self.proj / "data"  # what ./data means for the commands
        self.sim_port = free_port_base(5)
        self.bus_port = free_port_base(1)
        self.procs: dict[str, Proc] = {}
        self.done: set[str] = set()
        self.seed()

    def seed(self) -> None:
        from lab.lake import Lake
        from recorders.sim.bulk import write_to_lake

        self.seed_end = dt.datetime.now(UTC).replace(microsecond=0)
        write_to_lake(Lake(self.data / "lake"), start=self.seed_end - dt.timedelta(minutes=SEED_MINUTES),
                      duration=dt.timedelta(minutes=SEED_MINUTES), seed=11)

    @property
    def bus_token(self) -> str:
        """The token the commands share through ./data/run/bus_token (as for a user: nothing to pass)."""
        from lab.bus import bus_token

        return bus_token(path=self.data / "run" / "bus_token")

    @property
    def lake(self):
        from lab.lake import Lake

        return Lake(self.data / "lake")

    # -- running README lines ------------------------------------------------
    def localise(self, line: str, port_base: int | None = None) -> list[str]:
        """The README line as argv, with the test's ports (see the module docstring)."""
        argv = shlex.split(line)
        bus = f"ws://127.0.0.1:{self.bus_port}"
        argv = [a.replace("ws://127.0.0.1:50052", bus) for a in argv]
        cmd = argv[1]
        if cmd == "simulate" and "--to-lake" not in argv:
            argv += ["--port-base", str(port_base or self.sim_port)]
        if cmd == "record" and "--config" in argv:
            argv += ["--sim", "--sim-port-base", str(self.sim_port)]
        if cmd == "serve":
            argv += ["--port", str(self.serve_port), "--bus", bus]
        if cmd == "record" and "--venue" in argv and "--base-url" not in argv:
            argv += ["--base-url", f"ws://127.0.0.1:{self.sim_port}", "--rest-url", f"http://127.0.0.1:{self.sim_port}"]
        return [LAB, *argv[1:]]

    def start(self, line: str, name: str, **kw) -> Proc:
        p = Proc(self.localise(line, **kw), self.proj, self.env, self.logs, name)
        self.procs[name] = p
        return p

    def run(self, line: str, timeout: float = 240.0) -> subprocess.CompletedProcess:
        r = subprocess.run(self.localise(line), cwd=self.proj, env=self.env, capture_output=True, text=True,
                           timeout=timeout)
        assert r.returncode == 0, f"{line!r} exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
        assert "Traceback" not in r.stderr, r.stderr[-3000:]
        return r

    def rows(self, table: str, **filters) -> pl.DataFrame:
        return self.lake.scan(table, **filters).collect()

    # -- shared services, started once when a check needs them ------------------
    def simulator(self) -> Proc:
        if "simulate" not in self.procs:
            check_simulate(self, "lab simulate")
        return self.procs["simulate"]

    def journal(self) -> None:
        """raw_messages in ./data/lake: what the binance README recorder leaves behind."""
        if "record_binance" not in self.done:
            check_record_binance(self, "lab record --venue binance --symbols BTC-USDT,ETH-USDT")

    def demo_recorder(self) -> Proc:
        if "record_demo" not in self.procs:
            check_record_demo(self, "lab record --config recorders/demo.toml --bus ws://127.0.0.1:50052 --bus-serve")
        return self.procs["record_demo"]

    def close(self) -> None:
        errors = []
        for name in ("record_demo", "simulate"):  # stopped last: others depend on them
            p = self.procs.pop(name, None)
            if p is not None:
                rc = p.stop()
                if rc != 0 or "Traceback" in p.err:
                    errors.append(f"{name} exited {rc} on SIGTERM: {p.err[-1500:]}")
        for p in self.procs.values():
            p.kill()
        assert not errors, errors


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory):
    s = Session(tmp_path_factory.mktemp("readme"))
    try:
        yield s
    finally:
        s.close()


# --------------------------------------------------------------------------- websocket helpers
def first_ws_message(url: str, ssl_context=None, timeout: float = 20.0) -> str:
    """Connect, receive one message (the venue's first data or answer), close."""
    import websockets

    async def go() -> str:
        async with websockets.connect(url, ssl=ssl_context, open_timeout=timeout) as ws:
            msg = await asyncio.wait_for(ws.recv(), timeout)
            return msg if isinstance(msg, str) else msg.decode()

    return asyncio.run(go())


def printed_urls(proc: Proc) -> dict[str, str]:
    return dict(re.findall(r"^\s*(\w+): (\S+)$", proc.out, re.M))


# --------------------------------------------------------------------------- checks, one per README line
def check_simulate(s: Session, line: str) -> None:
    p = s.start(line, "simulate")
    urls = p.wait_for("venue URLs", lambda: printed_urls(p).get("kraken") and printed_urls(p))
    assert set(urls) == {"binance", "binance_rest", "coinbase", "coinbase_rest", "kraken", "kraken_rest"}  # the default three, WS + REST
    msg = json.loads(first_ws_message(f"{urls['binance']}/ws/btcusdt@trade"))
    assert msg["e"] == "trade" and msg["s"] == "BTCUSDT"
    # kept running for the recorders; stopped with SIGTERM (exit 0) at the end of the module


def check_to_lake(s: Session, line: str) -> None:
    # A whole simulated day (~100 M rows) takes many minutes and commits in 2 M-row batches: here it
    # must start simulating yesterday (its progress bar counts simulated minutes and rows), then stop
    # on SIGTERM leaving the lake readable and without a partial batch (Delta commits are atomic).
    day = dt.datetime.now(UTC).date() - dt.timedelta(days=1)
    before = s.rows("trades").height
    p = s.start(line, "to_lake")
    p.wait_for("simulated minutes with rows", lambda: re.search(r"simulating:.*\b([1-9]\d*)/1440 .*rows=[1-9]", p.err),
               timeout=90)
    p.stop()
    t = s.rows("trades")
    assert t.height >= before
    y = t.filter(pl.col("ts_exchange").dt.date() == day)
    assert y.select("venue", "symbol", "trade_id").is_unique().all()


def check_replay(s: Session, line: str) -> None:
    s.journal()
    base = free_port_base(5)
    p = s.start(line, "replay", port_base=base)
    urls = p.wait_for("venue URLs", lambda: printed_urls(p).get("binance") and printed_urls(p))
    msg = json.loads(first_ws_message(f"{urls['binance']}/stream?streams=btcusdt@trade"))
    assert msg  # a journaled Binance message
    assert_clean_stop(p)


def check_tls(s: Session, line: str) -> None:
    import ssl

    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(s.proj / "chain.pem"))
    cert.private_key_pem.write_to_path(str(s.proj / "key.pem"))
    base = free_port_base(5)
    p = s.start(line, "tls", port_base=base)
    urls = p.wait_for("wss:// URLs", lambda: printed_urls(p).get("kraken") and printed_urls(p))
    assert urls["binance"].startswith("wss://") and urls["binance_rest"].startswith("https://")
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    msg = json.loads(first_ws_message(f"{urls['binance']}/ws/btcusdt@trade", ssl_context=ctx))
    assert msg["e"] == "trade"
    assert_clean_stop(p)


def check_record_binance(s: Session, line: str) -> None:
    s.simulator()
    t0 = dt.datetime.now(UTC)
    p = s.start(line, "record_binance")

    def recorded() -> bool:
        t = s.rows("trades", venue="binance").filter(pl.col("ts_local") >= t0)
        j = s.rows("raw_messages", venue="binance").filter(pl.col("ts_local") >= t0)
        return set(t["symbol"]) == {"BTC-USDT", "ETH-USDT"} and j.height > 0

    p.wait_for("binance BTC-USDT and ETH-USDT trades from the simulator", recorded, timeout=90)
    assert_clean_stop(p)
    s.done.add("record_binance")


def check_record_demo(s: Session, line: str) -> None:
    s.simulator()
    t0 = dt.datetime.now(UTC)
    p = s.start(line, "record_demo")
    p.wait_for("trades of the three demo venues",
               lambda: set(s.rows("trades").filter(pl.col("ts_local") >= t0)["venue"]) == {"binance", "coinbase",
                                                                                           "kraken"}, timeout=90)

    async def one_frame() -> str:
        from lab.bus import subscribe

        async for table, rows in subscribe(["quotes"], url=f"ws://127.0.0.1:{s.bus_port}", reconnect=False,
                                           token=s.bus_token):
            assert rows
            return table

    assert asyncio.run(asyncio.wait_for(one_frame(), 30)) == "quotes"  # --bus-serve: the bus is up
    # kept running for status/paper/risk; stopped with SIGTERM (exit 0) at the end of the module


def check_status(s: Session, line: str) -> None:
    s.demo_recorder()
    out = s.run(line).stdout
    assert "demo" in out and "trades" in out and "book_updates" in out, out


def check_rebuild(s: Session, line: str) -> None:
    s.journal()
    s.run(line)
    from lab.lake import Lake

    rebuilt = Lake(s.data / "rebuilt")
    t = rebuilt.read("trades")
    assert t.height > 0 and set(t["venue"]) >= {"binance"}
    assert rebuilt.read("book_updates").height > 0


def check_maintain(s: Session, line: str) -> None:
    import polars as pl

    from lab.lake import last_checkpoint

    trades = s.data / "lake" / "trades"

    def in_delta() -> int:
        return pl.scan_delta(str(trades)).select(pl.len()).collect().item()

    # the demo recorder (committer = "maintainer") writes its tail and commits nothing itself: its
    # rows are readable through the lab at once, and Delta-only readers wait for `lab maintain`
    rec = s.demo_recorder()
    rec.wait_for("trades readable through the lab", lambda: s.rows("trades").height > 0)
    rows0, checkpoint0 = in_delta(), last_checkpoint(trades)
    time.sleep(2.0)
    assert in_delta() == rows0 and s.rows("trades").height > rows0  # recording, not committing
    p = s.start(line, "maintain")
    # a pass commits the live recorder's tail and checkpoints the log (compaction of small files
    # is checked in tests/foundation: it needs --min-files files of one size tier)
    p.wait_for("the tail's commit", lambda: in_delta() > rows0, timeout=120)
    p.wait_for("a checkpoint", lambda: last_checkpoint(trades) > checkpoint0, timeout=60)
    assert_clean_stop(p, codes=(0, -signal.SIGTERM))
    assert s.rows("trades").height >= in_delta() > rows0


def check_doctor(s: Session, line: str) -> None:
    s.demo_recorder()  # checked while a recorder appends, as a user would
    out = s.run(line).stdout
    for t in ("trades", "book_updates", "quotes", "raw_messages"):
        assert re.search(rf"^\s+{t}\s+OK", out, re.M), out
    assert "all tables healthy" in out


def check_arbitrage(s: Session, line: str) -> None:
    bus = BusThread(s.bus_token)
    port = s.bus_port
    try:
        s.bus_port = int(bus.url.rsplit(":", 1)[1])  # this command alone listens to the test's bus
        p = s.start(line, "arbitrage")
    finally:
        s.bus_port = port
    try:
        p.wait_for("its subscription", lambda: bus.hub.subs, timeout=60)
        # binance sells BTC at 100,000 USDT, kraken buys at 101,000 USD: 100 bps, more than both taker fees

        def book(venue: str, symbol: str, bids: list, asks: list) -> list[dict]:
            now = int(time.time() * 1e6)
            return [{"ts_exchange": now, "ts_local": now, "venue": venue, "symbol": symbol, "side": side,
                     "price": px, "qty": 1.0, "is_snapshot": True, "seq": None}
                    for side, levels in (("bid", bids), ("ask", asks)) for px in levels]

        def crossed() -> bool:
            bus.publish("book_updates", book("binance", "BTC-USDT", [99_990.0], [100_000.0])
                        + book("kraken", "BTC-USD", [101_000.0], [101_010.0]))
            return s.lake.exists("arbitrage_signals") and s.rows("arbitrage_signals").filter(
                (pl.col("buy_venue") == "binance") & (pl.col("sell_venue") == "kraken")).height > 0

        p.wait_for("a binance>kraken signal in the lake", crossed, timeout=60)
        sig = s.rows("arbitrage_signals").filter(pl.col("buy_venue") == "binance").row(0, named=True)
        assert sig["buy_px"] == pytest.approx(100_000.0) and sig["sell_px"] == pytest.approx(101_000.0)
        assert sig["net_edge_bps"] > 0
        assert_clean_stop(p, codes=(0, -signal.SIGTERM))
    finally:
        p.kill()
        bus.close()


def check_paper(s: Session, line: str) -> None:
    s.demo_recorder()
    p = s.start(line, "paper")
    session = p.wait_for("its session id", lambda: (m := re.search(r"paper session (\S+):", p.out)) and m.group(1))
    mine = pl.col("session") == session
    p.wait_for("its orders in the lake", lambda: s.rows("paper_orders").filter(mine & (pl.col("status") == "new")
                                                                                ).height > 0, timeout=90)
    assert_clean_stop(p, codes=(0, -signal.SIGTERM))
    start = s.rows("paper_orders").filter(mine & (pl.col("status") == "session_start"))
    assert json.loads(start["detail"][0])["instruments"]  # the session says what it traded


def check_backtest(s: Session, line: str) -> None:
    out = s.run(line).stdout
    m = re.search(r"mm on ([\d,]+) events", out)
    assert m and int(m.group(1).replace(",", "")) > 1000, out
    fills = re.search(r"n_fills\s+(\d+)", out)
    assert fills and int(fills.group(1)) > 0, out


def check_risk(s: Session, line: str) -> None:
    s.demo_recorder()
    t0 = dt.datetime.now(UTC)
    p = s.start(line, "risk")
    p.wait_for("two risk snapshots", lambda: s.rows("risk_snapshots").filter(
        (pl.col("ts") >= t0) & (pl.col("scope") == "portfolio"))["ts"].n_unique() >= 2, timeout=90)
    assert_clean_stop(p, codes=(0, -signal.SIGTERM))


def check_report(s: Session, line: str) -> None:
    s.run(line)
    today = dt.datetime.now(UTC).date().isoformat()
    page = s.proj / "reports" / "daily_market_report" / f"{today}.html"
    from bs4 import BeautifulSoup

    text = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser").get_text(" ")
    m = re.search(r"([\d,]+) trades on (\d+) venue", text)
    assert m and int(m.group(1).replace(",", "")) > 0 and int(m.group(2)) >= 3, text[:500]


def check_schedule(s: Session, line: str) -> None:
    p = s.start(line, "schedule")
    p.wait_for("the next run of the daily job", lambda: re.search(r"\[schedule\] daily: cron .* next run", p.out))
    assert_clean_stop(p, codes=(0, -signal.SIGTERM))


def check_promote(s: Session, line: str) -> None:
    s.run(line)
    page = s.proj / "streamlit_apps" / "pages" / "nb_03_arbitrage.py"
    from streamlit.testing.v1 import AppTest

    old = {k: os.environ.get(k) for k in ("LAB_DATA", "LAB_LAKE")}
    os.environ.pop("LAB_LAKE", None)
    os.environ["LAB_DATA"] = str(s.data)
    try:
        at = AppTest.from_file(str(page), default_timeout=180).run()
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert [t.value for t in at.title] == ["Cross-venue and triangular arbitrage"]
    assert len(at.dataframe) >= 4 and any(df.value.shape[0] for df in at.dataframe)
    charts = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]
    assert charts and all(c["data"] for c in charts)  # episode durations at low fees


def check_serve(s: Session, line: str) -> None:

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        s.serve_port = sock.getsockname()[1]
    s.demo_recorder()
    p = s.start(line, "serve")
    token_file = s.data / "run" / "service_token"
    p.wait_for("the service token file", token_file.exists, timeout=60)
    assert token_file.stat().st_mode & 0o777 == 0o600
    code = ("import lab, sys\n"
            f"con = lab.connect('grpc://127.0.0.1:{s.serve_port}', token=open(sys.argv[1]).read().strip())\n"
            "print(con.sql('select count(*) as n from trades').pl()['n'][0])\n")

    def answered() -> bool:
        r = subprocess.run([sys.executable, "-c", code, str(token_file)], cwd=s.proj, env=s.env,
                           capture_output=True, text=True, timeout=60)
        return r.returncode == 0 and int(r.stdout.split()[-1]) > 0

    p.wait_for("a remote count of trades from another process", answered, timeout=90)
    assert_clean_stop(p, codes=(0, -signal.SIGTERM))


def check_import_tardis(s: Session, line: str) -> None:
    import csv
    import gzip

    folder = s.proj / "data" / "tardis"  # the README's relative path, in the project folder
    folder.mkdir(parents=True, exist_ok=True)
    t0 = 1_700_006_400_000_000
    with gzip.open(folder / "binance_trades_2023-11-15_BTCUSDT.csv.gz", "wt", newline="") as f:
        w = csv.writer(f)
        w.writerow(["exchange", "symbol", "timestamp", "local_timestamp", "id", "side", "price", "amount"])
        for i in range(50):
            w.writerow(["binance", "BTCUSDT", t0 + i * 1000, t0 + i * 1000 + 500, str(9_000_000 + i),
                        "buy" if i % 2 else "sell", "37000.5", "0.01"])
    out = s.run(line).stdout
    assert "50 rows -> trades" in out, out
    imported = s.rows("trades").filter(pl.col("trade_id").is_in([str(9_000_000 + i) for i in range(50)]))
    assert imported.height == 50 and set(imported["symbol"]) == {"BTC-USDT"}
    assert "already imported" in s.run(line).stdout  # idempotent


def check_export(s: Session, line: str) -> None:
    import numpy as np

    s.run(line)
    data = np.load(s.proj / "data" / "btc.npz")["data"]
    kinds = data["ev"] & 0xFF
    assert len(data) > 100 and (kinds == 1).any() and (kinds == 2).any()  # depth and trade events
    assert (np.diff(data["exch_ts"][(data["ev"] & (1 << 31)) != 0]) >= 0).all()


CHECKS: dict[str, Callable[[Session, str], None]] = {
    "lab simulate": check_simulate,
    "lab simulate --to-lake --days 1": check_to_lake,
    "lab simulate --replay data/lake": check_replay,
    "lab simulate --tls-cert chain.pem --tls-key key.pem": check_tls,
    "lab record --venue binance --symbols BTC-USDT,ETH-USDT": check_record_binance,
    "lab record --config recorders/demo.toml --bus ws://127.0.0.1:50052 --bus-serve": check_record_demo,
    "lab status": check_status,
    "lab rebuild --from-journal --out data/rebuilt": check_rebuild,
    "lab maintain --every 60": check_maintain,
    "lab doctor": check_doctor,
    "lab arbitrage --bus ws://127.0.0.1:50052": check_arbitrage,
    "lab paper mm -p venue=binance -p symbol=BTC-USDT --bus ws://127.0.0.1:50052": check_paper,
    "lab backtest mm --last 1h -p venue=binance -p symbol=BTC-USDT": check_backtest,
    "lab risk --bus ws://127.0.0.1:50052": check_risk,
    "lab report daily_market_report --date today": check_report,
    "lab schedule": check_schedule,
    "lab promote notebooks/03_arbitrage.ipynb": check_promote,
    "lab serve": check_serve,
    "lab import tardis data/tardis/": check_import_tardis,
    "lab export hftbacktest --venue binance --symbol BTC-USDT --last 1h --out data/btc.npz": check_export,
}


def test_every_readme_line_has_a_check() -> None:
    lines = readme_commands()
    assert lines, "the README lost its 'What you can do' block"
    assert [ln for ln in lines if ln not in CHECKS] == [], "README lines without a check in CHECKS"
    assert [ln for ln in CHECKS if ln not in lines] == [], "checks for lines the README no longer has"


@pytest.mark.parametrize("line", readme_commands())
def test_readme_command_works_as_written(session: Session, line: str) -> None:
    if line not in CHECKS:
        pytest.fail(f"no check for README line {line!r}")
    if line in ("lab simulate", "lab record --config recorders/demo.toml --bus ws://127.0.0.1:50052 --bus-serve"):
        # shared services: started once, by this line or by the first check that needed them
        if line == "lab simulate":
            s_proc = session.simulator()
        else:
            s_proc = session.demo_recorder()
        assert s_proc.p.poll() is None
        return
    if line == "lab record --venue binance --symbols BTC-USDT,ETH-USDT":
        session.journal()
        return
    CHECKS[line](session, line)


def test_readme_python_runs(session: Session) -> None:
    """The README's Python block, run as a script from the new user's folder (LAB_DATA unset)."""
    code = readme_block("The lake and SQL", "python")

    def seconds_with_btc_usd_trades() -> int:  # the SQL's answer, computed in Polars
        return (session.rows("trades", symbol="BTC-USD")
                .filter(pl.col("ts_exchange") > dt.datetime.now(UTC) - dt.timedelta(hours=1))
                .select(pl.col("ts_exchange").dt.truncate("1s").n_unique()).item())

    before = seconds_with_btc_usd_trades()
    probe = code + ("\nimport json\nprint(json.dumps({'per_second': per_second.height, "
                    "'lf': lf.collect().height, 'cols': per_second.columns}))\n")
    r = subprocess.run([sys.executable, "-c", probe], cwd=session.proj, env=session.env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["cols"] == ["bucket", "avg_price", "total_volume"]
    # one row per second of the last hour with a coinbase or kraken BTC-USD trade (recorders may
    # still be adding seconds while it runs: between the counts taken before and after)
    assert 0 < before <= got["per_second"] <= seconds_with_btc_usd_trades()
    assert got["lf"] > 0

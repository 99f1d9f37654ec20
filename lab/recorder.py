"""``lab.start_recorder``: a recorder in a background process, with a handle.

>>> import lab
>>> rec = lab.start_recorder(venue="binance", symbols=["BTC-USDT"], sim=True)  # doctest: +SKIP
>>> rec.status()["venues"]["binance"]["msgs_per_s"]                             # doctest: +SKIP
>>> rec.widget()     # live ipywidget in Jupyter                                # doctest: +SKIP
>>> rec.stop()                                                                  # doctest: +SKIP

A running recorder rewrites its status file every second: one
:class:`RecorderStatus` (``recorders/runtime.py`` builds it) as JSON, which
``lab status``, the notebook widgets and the dashboards decode with
:func:`read_status`. Decoding is lenient, so files of older or newer
recorders still read: unknown fields are ignored, missing ones defaulted.

>>> st = decode_status(b'{"name": "r", "pid": 7, "venues": {"kraken": {"gaps": 2}}, "new_field": 1}')
>>> st.name, st.venues["kraken"].gaps, st.venues["kraken"].connected
('r', 2, False)
>>> decode_status(encode_status(st)) == st
True
"""

from __future__ import annotations

import datetime as dt
import html
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import msgspec

from lab.errors import DataError
from lab.lake import Lake, data_dir


def status_path(name: str, status_dir: str | Path | None = None) -> Path:
    """Where recorder ``name`` writes its status (``$LAB_DATA/run/recorder-NAME.json``)."""
    d = Path(status_dir) if status_dir else data_dir() / "run"
    return d / f"recorder-{name}.json"

__all__ = ["RecorderHandle", "start_recorder", "status_path", "RecorderStatus", "VenueStatus",
           "SymbolStatus", "WriteOutage", "decode_status", "encode_status", "read_status",
           "status_dict"]


# --------------------------------------------------------------------------- the status file
class SymbolStatus(msgspec.Struct, kw_only=True):
    """One symbol of a venue: seconds since its last message (None: none yet), book synced."""

    last_msg_age_s: float | None = None
    book_synced: bool = False


class VenueStatus(msgspec.Struct, kw_only=True):
    """One venue of a recorder: connection, message rate, feed-problem counters, symbols."""

    lag_s: float | None = None  # receive minus exchange time of its newest trade/quote
    connected: bool = False
    connections: int = 0
    url: str = ""
    msgs_per_s: float = 0.0
    messages: int = 0
    gaps: int = 0
    resyncs: int = 0
    checksum_failures: int = 0
    rejected: int = 0
    duplicate_trades: int = 0
    duplicate_messages: int = 0
    bad_values: int = 0
    crossed_books: int = 0
    reconnects: int = 0
    rotations: int = 0
    stale: int = 0
    last_error: str | None = ""
    symbols: dict[str, SymbolStatus] = {}


class WriteOutage(msgspec.Struct, kw_only=True):
    """While lake appends fail (disk full, read-only mount): since when, what is held."""

    since: str = ""
    for_s: float = 0.0
    failing_tables: dict[str, str] = {}
    pending_rows: int = 0
    pending_bytes: int = 0
    lost_rows: int = 0


class RecorderStatus(msgspec.Struct, kw_only=True):
    """What a running recorder says about itself (``$LAB_DATA/run/recorder-NAME.json``).

    Field order is the file's key order. Times are UTC; ``updated`` is the last
    refresh (a recorder whose file stops updating is dead or stuck).
    """

    name: str = ""
    pid: int = -1
    run_id: str = ""
    started: dt.datetime | None = None
    updated: dt.datetime | None = None
    lake: str = ""
    bus: str | None = None
    lag_s: float | None = None
    queue_depth: int = 0
    queue_bound: int = 0
    rows_written: dict[str, int] = {}
    commits: int = 0
    lost_rows: int = 0
    lost_batches: int = 0
    lost_by_table: dict[str, int] = {}
    write_errors: int = 0
    pending_rows: int = 0
    write_outage: WriteOutage | None = None
    # tail mode (lab.tail): files written and readable but not yet in a Delta commit, and the
    # first line of the last failed commit ("" when commits work)
    tail_uncommitted: int = 0
    tail_commit_error: str = ""
    last_write_age_s: float | None = None
    rest_calls: int = 0
    rest_errors: int = 0
    bus_dropped: int = 0
    venues: dict[str, VenueStatus] = {}

    def age_s(self, now: dt.datetime | None = None) -> float | None:
        """Seconds since the last refresh (None if the file has no ``updated``)."""
        if self.updated is None:
            return None
        upd = self.updated if self.updated.tzinfo else self.updated.replace(tzinfo=dt.timezone.utc)
        return ((now or dt.datetime.now(dt.timezone.utc)) - upd).total_seconds()


_decoder = msgspec.json.Decoder(RecorderStatus)
_encoder = msgspec.json.Encoder()


def decode_status(data: bytes | str, source: str = "recorder status") -> RecorderStatus:
    """A status file's bytes → :class:`RecorderStatus`; :class:`DataError` (one line, naming
    ``source``) when they are not a recorder status."""
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as e:
        raise DataError(f"{source} is not a recorder status file: {e}") from None


def encode_status(st: RecorderStatus) -> bytes:
    """:class:`RecorderStatus` → the file's JSON (indented, the layout ``json.dumps(indent=1)`` wrote)."""
    return msgspec.json.format(_encoder.encode(st), indent=1)


def read_status(path: str | Path) -> RecorderStatus:
    """Decode the status file at ``path``. Raises ``FileNotFoundError`` when there is none
    (yet) and :class:`DataError` when it cannot be read or is not a status file."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as e:
        raise DataError(f"{p}: cannot read the recorder status ({e})") from None
    return decode_status(data, str(p))


def status_dict(st: RecorderStatus) -> dict:
    """The status as plain JSON types (times as ISO text): what ``lab status --json`` prints."""
    return msgspec.to_builtins(st)


def _ages(venue_status: dict) -> str:
    return ", ".join(f"{k}: {y['last_msg_age_s']}s" for k, y in venue_status["symbols"].items())


class RecorderHandle:
    """A recorder process started by :func:`start_recorder`."""

    def __init__(self, proc: subprocess.Popen, name: str, status_file: Path, log: Path) -> None:
        self.proc = proc
        self.name = name
        self.status_file = status_file
        self.log = log
        self._stop_widget = threading.Event()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def status(self) -> dict:
        """The recorder's latest status (:class:`RecorderStatus` as a dict, see ``lab status``),
        with ``running``; ``{}`` (and ``running``) before the first refresh."""
        try:
            s = status_dict(read_status(self.status_file))
        except (OSError, DataError):
            s = {}
        s["running"] = self.running()
        return s

    def wait_ready(self, timeout: float = 60.0) -> dict:
        """Block until the recorder has written rows (or raise, with its log tail)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            s = self.status()
            if s.get("commits", 0) > 0:
                return s
            if not self.running():
                raise RuntimeError(f"recorder {self.name} exited ({self.proc.returncode}): {self.log_tail()}")
            time.sleep(0.2)
        raise TimeoutError(f"recorder {self.name} wrote nothing in {timeout}s: {self.log_tail()}")

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log.read_text()[-n:]
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (pending rows are flushed), then SIGKILL after ``timeout``."""
        self._stop_widget.set()
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def _html(self) -> str:
        s = self.status()
        if not s.get("venues"):
            return f"<b>recorder {html.escape(self.name)}</b>: starting (pid {self.pid})"
        state = "running" if s["running"] else f"stopped ({self.proc.returncode})"
        rows = "".join(
            f"<tr><td>{html.escape(v)}</td><td>{'up' if x['connected'] else 'DOWN'}</td>"
            f"<td>{x['msgs_per_s']}</td><td>{x['gaps']}</td><td>{x['resyncs']}</td>"
            f"<td>{x['reconnects']}</td><td>{x['rejected']}</td>"
            f"<td>{_ages(x)}</td></tr>"
            for v, x in s["venues"].items())
        written = ", ".join(f"{k} {n}" for k, n in s.get("rows_written", {}).items())
        return (f"<b>recorder {html.escape(self.name)}</b> pid {self.pid}, {state}; queue "
                f"{s['queue_depth']}/{s['queue_bound']}, lost rows {s['lost_rows']}<br>"
                f"<table><tr><th>venue</th><th>conn</th><th>msg/s</th><th>gaps</th><th>resyncs</th>"
                f"<th>reconnects</th><th>rejected</th><th>last message age</th></tr>{rows}</table>"
                f"<small>written: {html.escape(written)}</small>")

    def _repr_html_(self) -> str:
        return self._html()

    def __repr__(self) -> str:
        return f"RecorderHandle(name={self.name!r}, pid={self.pid}, running={self.running()})"

    def widget(self, every: float = 1.0):
        """An ipywidgets HTML panel refreshed every ``every`` seconds until :meth:`stop`."""
        import ipywidgets as w

        box = w.HTML(self._html())

        def loop() -> None:
            while not self._stop_widget.wait(every):
                box.value = self._html()
                if not self.running():
                    box.value = self._html()
                    return

        threading.Thread(target=loop, daemon=True, name=f"recorder-widget-{self.name}").start()
        return box


def start_recorder(
    venue: str | None = None,
    symbols: Iterable[str] | str | None = None,
    *,
    base_url: str | None = None,
    rest_url: str | None = None,
    lake: Lake | str | os.PathLike | None = None,
    config: str | os.PathLike | None = None,
    sim: bool = False,
    sim_port_base: int = 9443,
    name: str | None = None,
    flush_interval: float | None = None,
    bus: str | None = None,
    extra_args: Iterable[str] = (),
) -> RecorderHandle:
    """Launch ``lab record`` in a background process and return its handle.

    Give ``venue`` and ``symbols`` (or a TOML ``config``); ``base_url``/``rest_url``
    point it elsewhere than the real venue, ``sim=True`` at the local simulator.
    """
    if config is None and (not venue or not symbols):
        raise ValueError("start_recorder needs venue= and symbols= (or config=)")
    name = name or f"{venue or 'config'}-{uuid.uuid4().hex[:6]}"
    root = Path(lake.root if isinstance(lake, Lake) else lake) if lake is not None else data_dir() / "lake"
    status_dir = data_dir() / "run"
    args = [sys.executable, "-m", "lab.cli", "record", "--name", name, "--lake", str(root),
            "--status-dir", str(status_dir)]
    if config is not None:
        args += ["--config", str(config)]
    else:
        assert venue is not None and symbols is not None  # checked above
        syms = symbols if isinstance(symbols, str) else ",".join(symbols)
        args += ["--venue", venue, "--symbols", syms]
    for flag, val in (("--base-url", base_url), ("--rest-url", rest_url), ("--bus", bus),
                      ("--flush-interval", flush_interval)):
        if val is not None:
            args += [flag, str(val)]
    if sim:
        args += ["--sim", "--sim-port-base", str(sim_port_base)]
    args += list(extra_args)
    status_dir.mkdir(parents=True, exist_ok=True)
    log = status_dir / f"recorder-{name}.log"
    env = dict(os.environ)
    repo = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "") if env.get("PYTHONPATH") else repo
    with open(log, "ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    return RecorderHandle(proc, name, status_path(name, status_dir), log)

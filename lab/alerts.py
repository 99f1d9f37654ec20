"""Pluggable alert sinks shared by the arbitrage detector and the risk limits.

A sink is named by a short spec string (config files list them):

* ``log`` — one ``logging`` line per alert (logger ``lab.alerts``);
* ``bell`` — a terminal bell (``\\a``) plus the message on stderr;
* ``file:<path>`` — one JSON object per line appended to ``path`` (a relative
  path is under ``$LAB_DATA``);
* ``webhook`` — an HTTP POST of the alert as JSON to the URL in
  ``$LAB_ALERT_WEBHOOK``; ``webhook:env:NAME`` reads it from ``$NAME``. A webhook
  URL is a secret (it carries its own credentials): keep it in the environment,
  not in a config file; ``webhook:<url>`` still works for a local endpoint. Sent
  from a background thread so a slow endpoint never stalls the caller. The URL
  is never logged or printed beyond its scheme and host (:func:`redact_url`).

:class:`Latch` turns a condition checked over and over into alerts that fire
once when it becomes true and once (``kind + "_cleared"``) when it clears.

>>> import io
>>> buf = io.StringIO()
>>> sinks = [StreamSink(buf)]
>>> latch = Latch(sinks, source="risk")
>>> for v in (5, 12, 15, 7):
...     _ = latch.update("limit:BTC", v > 10, kind="breach", message=f"BTC notional {v}")
>>> print(buf.getvalue().strip())
risk breach limit:BTC: BTC notional 12
risk breach_cleared limit:BTC: BTC notional 7
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import queue
import sys
import threading
from pathlib import Path
from typing import Any, Protocol, TextIO
from urllib.parse import urlsplit

import msgspec

from lab.errors import ConfigError

__all__ = [
    "Alert",
    "Sink",
    "LogSink",
    "BellSink",
    "FileSink",
    "WebhookSink",
    "StreamSink",
    "make_sink",
    "make_sinks",
    "describe_sinks",
    "redact_url",
    "WEBHOOK_ENV",
    "emit",
    "Latch",
]

log = logging.getLogger("lab.alerts")
WEBHOOK_ENV = "LAB_ALERT_WEBHOOK"


def redact_url(url: str) -> str:
    """``url`` cut to its scheme and host: what may be logged of a secret URL.

    >>> redact_url("https://hooks.slack.com/services/T000/B000/XXXX?token=abc")
    'https://hooks.slack.com/…'
    >>> redact_url("http://user:pw@127.0.0.1:9000/hook"), redact_url("not a url")
    ('http://127.0.0.1:9000/…', '…')
    """
    try:
        p = urlsplit(url)
        host = p.hostname
        port = p.port
    except ValueError:
        return "…"
    if not p.scheme or not host:
        return "…"
    return f"{p.scheme}://{host}{f':{port}' if port else ''}/…"


def _webhook_url(spec: str) -> str:
    """The URL a ``webhook`` sink spec names: ``webhook`` ($LAB_ALERT_WEBHOOK),
    ``webhook:env:NAME`` ($NAME) or ``webhook:<url>``."""
    rest = spec[len("webhook"):]
    if rest in ("", ":"):
        name = WEBHOOK_ENV
    elif rest.startswith(":env:"):
        name = rest[5:]
    else:
        return rest[1:]
    url = os.environ.get(name, "").strip()
    if not url:
        raise ConfigError(f"alert sink {spec!r}: the environment variable {name} is not set "
                          "(it holds the webhook URL)")
    return url


def describe_sinks(specs: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """Sink specs safe to print: webhook URLs cut to scheme and host.

    >>> describe_sinks(["log", "webhook:https://hooks.example.com/T0/B0/secret", "webhook:env:HOOK"])
    ['log', 'webhook:https://hooks.example.com/…', 'webhook:env:HOOK']
    """
    if specs is None:
        return ["log"]
    items = specs.split(",") if isinstance(specs, str) else list(specs)
    out = []
    for s in (x.strip() for x in items if x.strip()):
        if s.startswith("webhook:") and not s.startswith("webhook:env:"):
            s = "webhook:" + redact_url(s[8:])
        out.append(s)
    return out


class Alert(msgspec.Struct, frozen=True):
    """One alert: who raised it, what kind, about what (``key``), and details."""

    ts: dt.datetime
    source: str  # "arbitrage", "risk", ...
    kind: str  # "opportunity", "breach", "breach_cleared", ...
    key: str  # what it is about: "BTC binance>kraken", "limit:asset_notional:BTC"
    message: str
    payload: dict[str, Any] = msgspec.field(default_factory=dict)

    def line(self) -> str:
        return f"{self.source} {self.kind} {self.key}: {self.message}"

    def to_json(self) -> bytes:
        return msgspec.json.encode(self)


class Sink(Protocol):
    def emit(self, alert: Alert) -> None: ...

    def close(self) -> None: ...


class LogSink:
    """Alerts as log lines (WARNING level)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or log

    def emit(self, alert: Alert) -> None:
        self.logger.warning("%s", alert.line())

    def close(self) -> None:
        pass


class StreamSink:
    """Alerts as text lines on a stream (tests, ``--alerts stdout``)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def emit(self, alert: Alert) -> None:
        self.stream.write(alert.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        pass


class BellSink:
    """Terminal bell plus the message on a stream (stderr by default)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr

    def emit(self, alert: Alert) -> None:
        self.stream.write("\a" + alert.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        pass


class FileSink:
    """One JSON line per alert appended to ``path`` (directories created)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def emit(self, alert: Alert) -> None:
        with self._lock, self.path.open("ab") as f:
            f.write(alert.to_json() + b"\n")

    def close(self) -> None:
        pass


class WebhookSink:
    """POST each alert as JSON to ``url`` from a background thread.

    Delivery is best effort with ``retries`` attempts; failures are logged,
    never raised into the detector. :meth:`close` waits for the queue to drain
    (at most ``timeout`` seconds per pending alert).
    """

    def __init__(self, url: str, *, timeout: float = 5.0, retries: int = 2,
                 headers: dict[str, str] | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"webhook URL must start with http:// or https://, got {redact_url(url)!r}")
        self.url, self.timeout, self.retries = url, timeout, retries
        self.where = redact_url(url)  # what logs may show
        self.headers = {"content-type": "application/json", **(headers or {})}
        self.sent = 0
        self.failed = 0
        self._q: queue.Queue[Alert | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="webhook-sink", daemon=True)
        self._thread.start()

    def emit(self, alert: Alert) -> None:
        self._q.put(alert)

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=self.timeout) as client:
            while True:
                alert = self._q.get()
                if alert is None:
                    return
                body = alert.to_json()
                for attempt in range(self.retries + 1):
                    try:
                        r = client.post(self.url, content=body, headers=self.headers)
                        r.raise_for_status()
                        self.sent += 1
                        break
                    except Exception as e:  # noqa: BLE001 - never break the caller
                        if attempt == self.retries:
                            self.failed += 1
                            log.error("webhook %s failed for %s: %s", self.where, alert.key,
                                      self._reason(e))

    def _reason(self, e: Exception) -> str:
        """Why a POST failed, without the URL (httpx puts it in its messages)."""
        resp = getattr(e, "response", None)
        if resp is not None and getattr(resp, "status_code", None) is not None:
            return f"HTTP {resp.status_code}"
        return f"{type(e).__name__}: {str(e).replace(self.url, self.where)}"

    def __repr__(self) -> str:
        return f"WebhookSink({self.where!r})"

    def flush(self, timeout: float = 10.0) -> None:
        """Block until every queued alert was attempted (or ``timeout``)."""
        import time

        deadline = time.monotonic() + timeout
        while self._q.unfinished_tasks and time.monotonic() < deadline:
            if self._q.empty():
                break
            time.sleep(0.01)

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(timeout=self.timeout * (self.retries + 1) + 1)


def make_sink(spec: str) -> Sink:
    """Build one sink from its spec (``log``, ``bell``, ``stdout``, ``file:PATH``, ``webhook``,
    ``webhook:env:NAME``, ``webhook:URL``).

    >>> type(make_sink("log")).__name__, type(make_sink("file:/tmp/x.jsonl")).__name__
    ('LogSink', 'FileSink')
    """
    s = spec.strip()
    if s == "log":
        return LogSink()
    if s == "bell":
        return BellSink()
    if s == "stdout":
        return StreamSink(sys.stdout)
    if s.startswith("file:") and len(s) > 5:
        path = Path(s[5:]).expanduser()
        if not path.is_absolute():  # relative paths live under $LAB_DATA
            from lab.lake import data_dir

            path = data_dir() / path
        return FileSink(path)
    if s == "webhook" or (s.startswith("webhook:") and len(s) > 8):
        return WebhookSink(_webhook_url(s))
    raise ConfigError(f"unknown alert sink {describe_sinks([spec])[0]!r}; use log, bell, stdout, "
                      f"file:<path>, webhook (URL in ${WEBHOOK_ENV}), webhook:env:NAME or webhook:<url>")


def make_sinks(config: str | list[str] | tuple[str, ...] | None) -> list[Sink]:
    """Sinks from a list of specs (or one comma-separated string); ``None`` → ``[log]``.

    >>> [type(s).__name__ for s in make_sinks("log,bell")]
    ['LogSink', 'BellSink']
    """
    if config is None:
        return [LogSink()]
    specs = config.split(",") if isinstance(config, str) else list(config)
    return [make_sink(s) for s in specs if s.strip()]


def emit(sinks: list[Sink], alert: Alert) -> None:
    """Send ``alert`` to every sink; one failing sink does not stop the others."""
    for s in sinks:
        try:
            s.emit(alert)
        except Exception as e:  # noqa: BLE001
            log.error("alert sink %s failed: %s", type(s).__name__, e)


class Latch:
    """Fire an alert once when a condition turns true, once when it clears.

    ``update(key, active, ...)`` is called on every evaluation; it emits
    ``kind`` on a False→True edge and ``kind + "_cleared"`` on True→False and
    returns the emitted :class:`Alert` (or ``None``). ``active`` keys are in
    :attr:`active`.
    """

    def __init__(self, sinks: list[Sink], source: str) -> None:
        self.sinks, self.source = sinks, source
        self.active: set[str] = set()

    def update(self, key: str, active: bool, *, kind: str, message: str,
               payload: dict[str, Any] | None = None, ts: dt.datetime | None = None
               ) -> Alert | None:
        was = key in self.active
        if active == was:
            return None
        if active:
            self.active.add(key)
        else:
            self.active.discard(key)
        alert = Alert(ts=ts or dt.datetime.now(dt.timezone.utc), source=self.source,
                      kind=kind if active else f"{kind}_cleared", key=key, message=message,
                      payload=payload or {})
        emit(self.sinks, alert)
        return alert

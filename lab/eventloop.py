"""The event loop every long-running lab service runs on.

``run(coro)`` is ``asyncio.run(coro)`` on uvloop when it is installed (it is a
dependency of the lab on Linux and macOS), else on asyncio's own loop. The
services wake up for each of a few hundred messages a second all day; most of
the CPU they spend at the demo's rates is the loop's own bookkeeping, and
uvloop (libuv, in C) does it for less: 0.92 of the whole demo's CPU side by side
(``bench/bench_demo_cpu.py --compare-loop``).

``LAB_EVENT_LOOP=asyncio`` picks asyncio's loop anyway (to compare, or to rule
the loop out when chasing a problem); ``LAB_EVENT_LOOP=uvloop`` insists on uvloop
and fails with a clear message (:class:`~lab.errors.ConfigError`) when it is
missing.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from lab.errors import ConfigError

__all__ = ["loop_factory", "loop_name", "run"]

T = TypeVar("T")
_CHOICES = ("uvloop", "asyncio")


def loop_name() -> str:
    """``"uvloop"`` or ``"asyncio"``: the loop :func:`run` uses here (``LAB_EVENT_LOOP``, else uvloop
    when it imports)."""
    want = os.environ.get("LAB_EVENT_LOOP", "").strip().lower()
    if want and want not in _CHOICES:
        raise ConfigError(f"LAB_EVENT_LOOP={want!r}: expected one of {', '.join(_CHOICES)} (or unset)")
    if want == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if want == "uvloop":
            raise ConfigError("LAB_EVENT_LOOP=uvloop but uvloop is not installed (make setup installs it)") from None
        return "asyncio"
    return "uvloop"


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    if loop_name() == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the loop of :func:`loop_name` (a bad ``LAB_EVENT_LOOP``: ``main`` is
    closed unrun, and :class:`~lab.errors.ConfigError` names the value)."""
    try:
        factory = loop_factory()
    except ConfigError:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)

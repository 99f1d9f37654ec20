"""SIGINT/SIGTERM as a stop request for the long-running services (``lab arbitrage``,
``lab paper``, ``lab risk``).

A service installs :class:`Stop` before it starts its event loop; a signal
that arrives during start-up is remembered, one that arrives while the loop
runs sets :attr:`Stop.event`, which the service's loop watches to flush and
return normally (exit code 0). Further signals while it is stopping are
ignored (a supervisor's SIGTERM and the terminal's SIGINT often arrive
together); SIGKILL remains the way to force it.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from lab import eventloop

__all__ = ["Stop", "service"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)
T = TypeVar("T")


class Stop:
    """Turn SIGINT/SIGTERM into a stop request (see the module docstring)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.signum: int | None = None
        self.event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._saved: dict[int, object] | None = None

    def install(self) -> Stop:
        """Catch the signals from now on (call before anything slow). A no-op outside the
        main thread, where Python cannot set signal handlers."""
        if threading.current_thread() is not threading.main_thread():
            return self
        if self._saved is None:
            self._saved = {s: signal.getsignal(s) for s in SIGNALS}
        for s in SIGNALS:
            signal.signal(s, self._early)
        return self

    def restore(self) -> None:
        """Put back the handlers found by :meth:`install` (the service is done)."""
        if self._saved is not None and threading.current_thread() is threading.main_thread():
            for s, h in self._saved.items():
                signal.signal(s, h)
            self._saved = None

    def _early(self, signum: int, frame) -> None:
        self._note(signum)

    def _note(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum
            print(f"{self.name}: {signal.Signals(signum).name} received, stopping "
                  "(flushing what is pending)", file=sys.stderr, flush=True)
        if self.event is not None:
            self.event.set()

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def attach(self) -> asyncio.Event:
        """Inside the running loop: the event a signal sets (already set if one came early)."""
        self.event = asyncio.Event()
        if self._saved is not None:  # installed (main thread): the loop takes the signals over
            self._loop = asyncio.get_running_loop()
            for s in SIGNALS:
                self._loop.add_signal_handler(s, self._note, s)
        if self.signum is not None:
            self.event.set()
        return self.event

    def run(self, work: Callable[[asyncio.Event], Awaitable[T]]) -> T:
        """``asyncio.run`` of ``work(event)``, the loop taking the signals meanwhile
        (:meth:`attach`, then :meth:`detach` whatever happens)."""

        async def main() -> T:
            try:
                return await work(self.attach())
            finally:
                self.detach()

        return eventloop.run(main())

    def detach(self) -> None:
        """Back to catching signals outside the loop (e.g. while the service writes its last rows)."""
        if self._loop is not None and not self._loop.is_closed():
            for s in SIGNALS:
                self._loop.remove_signal_handler(s)
        was = self._loop is not None
        self._loop = None
        self.event = None
        if was:
            signal.signal(signal.SIGINT, self._early)
            signal.signal(signal.SIGTERM, self._early)



@contextmanager
def service(name: str, *, verbose: bool = False) -> Iterator[Stop]:
    """The start-up of a long-running command: catch SIGINT/SIGTERM as a stop request
    at once (a :class:`Stop`, put back on the way out) and set up logging (INFO with
    ``verbose``, else WARNING).

    ``with service("lab risk", verbose=args.verbose) as stop: ... stop.run(work)``.
    """
    stop = Stop(name).install()
    try:
        logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                            format="%(asctime)s %(name)s %(levelname)s %(message)s")
        yield stop
    finally:
        stop.restore()

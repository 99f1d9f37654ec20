"""Recorders: venue feeds into the lake.

- :mod:`recorders.venues`: pure adapters (parse, book sync), ``replay(...)`` offline.
- :mod:`recorders.runtime`: the recorder process (``lab record``), :mod:`recorders.writer`.
- :mod:`lab.bus`: the live data bus (``Hub``, ``Publisher``, ``subscribe``).
- :mod:`lab.recorder`: ``lab.start_recorder`` background processes.
- :mod:`recorders.rebuild`: ``lab rebuild --from-journal``.
- :mod:`recorders.sim`: the exchange simulator.

Submodules import on use, so ``import recorders`` stays cheap.
"""

__all__ = ["venues", "runtime", "writer", "bus", "handle", "rebuild", "config", "sim"]

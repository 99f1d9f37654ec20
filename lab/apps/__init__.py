"""The commands and services above the library: one module per ``lab`` command.

Layers, from the bottom: the analysis library (``lab`` minus ``lab.apps``)
imports neither :mod:`recorders` nor :mod:`lab.apps`; :mod:`recorders` (the
venue adapters, the recorder process, the simulator) imports the library;
``lab.apps`` may import both. ``tests/foundation/test_layers.py`` holds the
line. A module here named ``NAME.py`` with ``HELP``, ``add_arguments`` and
``run`` is the command ``lab NAME`` (see :mod:`lab.cli`); modules whose name
starts with ``_`` are helpers of the commands.
"""

"""The lab's exceptions: one base, a few kinds, each a one-line message for a user.

The ``lab`` command prints any :class:`LabError` as ``lab COMMAND: message``
and exits 2 (1 for :class:`ServiceError`); anything else is a bug and keeps its traceback.

>>> from lab.errors import ConfigError, LabError
>>> issubclass(ConfigError, LabError) and issubclass(ConfigError, ValueError)
True
"""

from __future__ import annotations

__all__ = ["LabError", "ConfigError", "DataError", "ServiceError"]


class LabError(Exception):
    """Base of every error the lab raises on purpose; its text is meant for the user."""

    exit_code = 2


class ConfigError(LabError, ValueError):
    """A bad config file, flag, parameter or path: the message names it."""


class DataError(LabError, RuntimeError):
    """The lake lacks what was asked for, or a table or file is damaged."""


class ServiceError(LabError, RuntimeError):
    """A service (bus, data service, simulator, Jupyter) cannot be reached or started."""

    exit_code = 1

"""The one TOML config reader: a file into a dict or a frozen msgspec Struct, errors as ConfigError.

Every config of the lab (recorders, arbitrage, risk, positions, schedule) is read
here, so a missing file, invalid TOML or a rejected key gives the same one-line
:class:`~lab.errors.ConfigError` naming the file (and msgspec's path to the key).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from lab.errors import ConfigError

__all__ = ["read_toml", "convert", "load_section"]

T = TypeVar("T")


def read_toml(path: str | Path, what: str = "config") -> dict[str, Any]:
    """The TOML file at ``path`` as a dict; ``what`` names the file's role in errors."""
    p = Path(path)
    try:
        return tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} file {p} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} file {p} is a directory") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML ({e})") from None


def convert(data: Any, cls: type[T], path: str | Path, **kw: Any) -> T:
    """``msgspec.convert(data, cls)``, a rejection raised as ConfigError naming ``path``."""
    try:
        return msgspec.convert(data, cls, **kw)
    except msgspec.ValidationError as e:
        raise ConfigError(f"{path}: {e}") from None


def load_section(path: str | Path | None, section: str, cls: type[T]) -> T:
    """``[section]`` (or the top level) of the TOML file at ``path`` as ``cls``.

    ``None`` gives ``cls()``'s defaults.
    """
    if path is None:
        return cls()
    data = read_toml(path, f"{section} config")
    return convert(data.get(section, data), cls, path)

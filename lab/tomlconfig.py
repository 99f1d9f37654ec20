"""Reading one section of a TOML config file into a frozen msgspec Struct."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TypeVar

import msgspec

from lab.errors import ConfigError

__all__ = ["load_section"]

T = TypeVar("T")


def load_section(path: str | Path | None, section: str, cls: type[T]) -> T:
    """``[section]`` (or the top level) of the TOML file at ``path`` as ``cls``.

    ``None`` gives ``cls()``'s defaults. A missing file raises
    ConfigError, as do invalid TOML and a key or value the Struct rejects,
    naming the file and msgspec's path to the bad key.
    """
    if path is None:
        return cls()
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{section} config {p} not found")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML ({e})") from None
    data = data.get(section, data)
    try:
        return msgspec.convert(data, cls)
    except msgspec.ValidationError as e:
        raise ConfigError(f"{p}: {e}") from None

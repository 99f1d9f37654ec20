"""The live-source options shared by ``lab arbitrage``, ``lab risk`` and ``lab paper``.

``--bus`` takes the live bus (``ws://127.0.0.1:50052``, on the recorder's machine)
or a data service (``grpc://host:50053`` / ``grpc+tls://host:50053``, ``lab
serve``), so the three commands can run on another machine. :func:`subscribe_kwargs`
turns the options into the keywords of :func:`lab.bus.subscribe`, the one place
that tells the two apart.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lab.bus import DEFAULT_URL
from lab.errors import ConfigError

__all__ = ["add_bus_arguments", "subscribe_kwargs", "describe_source"]


def add_bus_arguments(p: argparse.ArgumentParser, what: str = "live rows") -> None:
    """``--bus``, ``--token-file`` and ``--tls-root-certs`` on ``p``."""
    p.add_argument("--bus", default=DEFAULT_URL,
                   help=f"where {what} come from: the live bus (ws://host:port, default {DEFAULT_URL}) "
                   "or a data service on another machine (grpc://host:50053, grpc+tls://host:50053)")
    p.add_argument("--token-file", default=None,
                   help="file holding the bus or service token (default: $LAB_BUS_TOKEN or "
                   "$LAB_DATA/run/bus_token for ws://; $LAB_SERVICE_TOKEN or "
                   "$LAB_DATA/run/service_token for grpc://)")
    p.add_argument("--tls-root-certs", default=None,
                   help="grpc+tls://: PEM file of the CA that signed the service's certificate "
                   "(default $LAB_SERVICE_CA; else the system's CAs)")


def _read_token(path: str) -> str:
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ConfigError(f"cannot read --token-file {path}: {e.strerror or e}") from None
    if not text:
        raise ConfigError(f"--token-file {path} is empty")
    return text


def subscribe_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``url``, ``token`` and ``tls_root_certs`` for :func:`lab.bus.subscribe` (a bad file:
    :class:`~lab.errors.ConfigError`)."""
    ca = getattr(args, "tls_root_certs", None)
    if ca and not Path(ca).expanduser().is_file():
        raise ConfigError(f"no such file: --tls-root-certs {ca}")
    tf = getattr(args, "token_file", None)
    return {"url": args.bus, "token": _read_token(tf) if tf else None, "tls_root_certs": ca}


def describe_source(url: str) -> str:
    """``bus ws://...`` or ``data service grpc://...`` (for the start-up line)."""
    return f"data service {url}" if urlsplit(url).scheme.startswith("grpc") else f"bus {url}"

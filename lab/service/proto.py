"""Flight SQL protobuf messages, compiled at first use from ``flight_sql.proto``.

grpcio-tools' bundled ``protoc`` turns the ``.proto`` beside this module into a
descriptor set (no generated Python in the repository, nothing written next to
the package); the message classes come from a private descriptor pool. Flight
SQL wraps every command in ``google.protobuf.Any``: :func:`pack` and
:func:`unpack` do that.

>>> q = msg("CommandStatementQuery")(query="select 1")
>>> name, back = unpack(pack(q))
>>> name, back.query
('CommandStatementQuery', 'select 1')
"""

from __future__ import annotations

import functools
import tempfile
from importlib import resources
from pathlib import Path

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

__all__ = ["msg", "pack", "unpack", "PACKAGE"]

PACKAGE = "arrow.flight.protocol.sql"
_PREFIX = f"type.googleapis.com/{PACKAGE}."


@functools.cache
def _pool() -> descriptor_pool.DescriptorPool:
    from grpc_tools import protoc  # deferred: only the service needs protoc

    src = resources.files("lab.service").joinpath("flight_sql.proto")
    with tempfile.TemporaryDirectory() as d:
        proto = Path(d) / "flight_sql.proto"
        proto.write_text(src.read_text(encoding="utf-8"), encoding="utf-8")
        out = Path(d) / "flight_sql.desc"
        rc = protoc.main(["protoc", f"-I{d}", f"--descriptor_set_out={out}", str(proto)])
        if rc != 0:
            raise RuntimeError(f"protoc could not compile {src} (exit {rc})")
        fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for f in fds.file:
        pool.Add(f)
    return pool


@functools.cache
def msg(name: str) -> type[Message]:
    """The message class ``arrow.flight.protocol.sql.<name>``."""
    return message_factory.GetMessageClass(_pool().FindMessageTypeByName(f"{PACKAGE}.{name}"))


def pack(m: Message) -> bytes:
    """``m`` wrapped in ``google.protobuf.Any``, serialised (a Flight SQL command or ticket)."""
    a = any_pb2.Any(type_url=_PREFIX + m.DESCRIPTOR.name, value=m.SerializeToString())
    return a.SerializeToString()


def unpack(raw: bytes) -> tuple[str, Message | None]:
    """``(message name, message)`` of a packed command; ``(type_url, None)`` when it is
    not a Flight SQL message this module knows, ``("", None)`` when it is not an Any."""
    a = any_pb2.Any()
    try:
        a.ParseFromString(raw)
    except DecodeError:
        return "", None
    if not a.type_url.startswith(_PREFIX):
        return a.type_url, None
    name = a.type_url[len(_PREFIX):]
    try:
        cls = msg(name)
    except KeyError:
        return name, None
    m = cls()
    try:
        m.ParseFromString(a.value)
    except DecodeError:
        return name, None
    return name, m

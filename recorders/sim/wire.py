"""Wire helpers: exact decimal text of integer ticks/lots, WebSocket frames, times.

Numbers are held as integers (ticks, lots) and written as text exactly, so
no float ever touches a price on the wire.

>>> dec(4528520, 2), dec(100000, 8), dec(5, 3), dec(0, 2)
('45285.20', '0.00100000', '0.005', '0.00')
>>> dec_strip(4528520, 2), dec_strip(100000, 8), dec_strip(0, 8), dec_strip(300, 2)
('45285.2', '0.001', '0', '3')
>>> frame(b"hi")
b'\\x81\\x02hi'
>>> len(frame(b"x" * 200)), len(frame(b"x" * 70000))
(204, 70010)
>>> iso_ns(1_700_000_000_123_456_789)
'2023-11-14T22:13:20.123456789Z'
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import struct
from typing import Any

__all__ = ["close_servers", "dec", "dec_strip", "frame", "frames_blob", "iso_ns", "iso_us", "scale_dec"]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def dec(v: int, d: int) -> str:
    """``v * 10**-d`` with exactly ``d`` decimals."""
    if d == 0:
        return str(v)
    neg = v < 0
    s = str(-v if neg else v).rjust(d + 1, "0")
    s = s[:-d] + "." + s[-d:]
    return "-" + s if neg else s


def dec_strip(v: int, d: int) -> str:
    """``v * 10**-d`` with trailing zeros (and a bare ``.``) removed."""
    s = dec(v, d)
    if d:
        s = s.rstrip("0").rstrip(".")
    return s


def scale_dec(v: int, d: int, to: int) -> str:
    """``v * 10**-d`` written with ``to >= d`` decimals (Binance pads to 8)."""
    return dec(v * 10 ** (to - d), to)


_H2 = struct.Struct("!BBH")
_H8 = struct.Struct("!BBQ")


def frame(payload: bytes) -> bytes:
    """One unmasked, final WebSocket text frame (server to client)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return _H2.pack(0x81, 126, n) + payload
    return _H8.pack(0x81, 127, n) + payload


def frames_blob(texts: list[str]):
    """Frame many ASCII texts at once: (all frames back to back, frame offsets).

    Vectorised with numpy; equals ``b"".join(frame(t.encode()) for t in texts)``.

    >>> ts = ["a", "b" * 130, "{}"]
    >>> blob, off = frames_blob(ts)
    >>> blob == b"".join(frame(t.encode()) for t in ts), off.tolist()
    (True, [0, 3, 137, 141])
    """
    import numpy as np

    n = len(texts)
    pay = "".join(texts).encode()
    lens = np.fromiter(map(len, texts), np.int64, n)
    if len(pay) != int(lens.sum()) or (n and int(lens.max()) >= 65536):  # non-ASCII or huge: slow path
        fr = [frame(t.encode()) for t in texts]
        ln = np.fromiter(map(len, fr), np.int64, n)
        return b"".join(fr), np.concatenate([[0], np.cumsum(ln)])
    hl = np.where(lens < 126, 2, 4)
    off = np.concatenate([[0], np.cumsum(lens + hl)])
    buf = np.empty(int(off[-1]), np.uint8)
    st = off[:-1]
    buf[st] = 0x81
    small = lens < 126
    buf[st[small] + 1] = lens[small]
    mid = ~small
    buf[st[mid] + 1] = 126
    buf[st[mid] + 2] = lens[mid] >> 8
    buf[st[mid] + 3] = lens[mid] & 0xFF
    hdr = np.zeros(buf.shape[0], bool)
    first = np.concatenate([[0], np.cumsum(hl)[:-1]]) if n else hl
    pos = np.repeat(st, hl) + (np.arange(int(hl.sum())) - np.repeat(first, hl))
    hdr[pos] = True
    buf[~hdr] = np.frombuffer(pay, np.uint8)
    return buf.tobytes(), off


def iso_ns(t_ns: int) -> str:
    """RFC 3339 UTC with nanoseconds (Coinbase style)."""
    s, ns = divmod(t_ns, 10**9)
    return (_EPOCH + dt.timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns:09d}Z"


def iso_us(t_ns: int) -> str:
    """RFC 3339 UTC with microseconds (Kraken style)."""
    s, ns = divmod(t_ns, 10**9)
    return (_EPOCH + dt.timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns // 1000:06d}Z"


async def close_servers(servers: list[Any]) -> None:
    """Close every WebSocket server of ``servers`` (all first, then wait up to 5 s for each)
    and empty the list."""
    for s in servers:
        s.close()
    for s in servers:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(s.wait_closed(), 5)
    servers.clear()

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

import datetime as dt
import struct

__all__ = ["dec", "dec_strip", "frame", "iso_ns", "iso_us", "scale_dec"]

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


def iso_ns(t_ns: int) -> str:
    """RFC 3339 UTC with nanoseconds (Coinbase style)."""
    s, ns = divmod(t_ns, 10**9)
    return (_EPOCH + dt.timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns:09d}Z"


def iso_us(t_ns: int) -> str:
    """RFC 3339 UTC with microseconds (Kraken style)."""
    s, ns = divmod(t_ns, 10**9)
    return (_EPOCH + dt.timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns // 1000:06d}Z"

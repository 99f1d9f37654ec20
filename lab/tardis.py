"""tardis.dev CSV files -> the lake's canonical tables (``lab import tardis``).

tardis.dev sells normalised historical market data as CSV (plain or gzip), one
file per exchange, data type, day and symbol. The documented types read here:

========================  =========================  ====================================
tardis data type          columns (after the 4 ids)  lake table
========================  =========================  ====================================
``trades``                id, side, price, amount    ``trades``
``incremental_book_L2``   is_snapshot, side, ...     ``book_updates``
``book_snapshot_25``/``_5`` asks[i].price, .amount,  ``book_snapshots`` (level i)
                          bids[i].price, .amount
``quotes``                ask/bid amount and price   ``quotes``
========================  =========================  ====================================

Every file starts with ``exchange, symbol, timestamp, local_timestamp``
(microseconds since the epoch: the venue's time and tardis' receive time,
our ``ts_exchange`` and ``ts_local``). Venues and symbols are normalised
(``okex`` -> ``okx``, ``XBT/USD`` -> ``BTC-USD``, ``BTCUSDT`` -> ``BTC-USDT``).

``book_updates.seq`` has no venue update id to carry here: it numbers the
*messages* of the file in order — consecutive rows with the same
``timestamp``, ``local_timestamp`` and ``is_snapshot`` are one message, as
tardis writes one venue message per such run — so a snapshot's rows share
one ``seq`` and reset the book together, the way our recorders mark them.

A malformed row raises :class:`~lab.errors.DataError` naming the file and the
line. Importing is idempotent by content: the SHA-256 of each file is kept
in the ``imports`` table and a file already imported adds nothing.

>>> canonical_symbol("XBT/USD"), canonical_symbol("BTCUSDT"), canonical_symbol("ETH-BTC")
('BTC-USD', 'BTC-USDT', 'ETH-BTC')
>>> canonical_venue("okex"), canonical_venue("bybit-spot"), canonical_venue("Binance")
('okx', 'bybit', 'binance')
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from lab.errors import DataError
from lab.schema import TS

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["KINDS", "detect_kind", "read_file", "files_under", "file_digest", "canonical_symbol",
           "canonical_venue", "TABLE_OF", "write_parquet", "decoded"]

_IDS = ["exchange", "symbol", "timestamp", "local_timestamp"]
_HEADERS: dict[str, list[str]] = {
    "trades": [*_IDS, "id", "side", "price", "amount"],
    "incremental_book_L2": [*_IDS, "is_snapshot", "side", "price", "amount"],
    "quotes": [*_IDS, "ask_amount", "ask_price", "bid_price", "bid_amount"],
}
KINDS = ("trades", "incremental_book_L2", "book_snapshot_25", "book_snapshot_5", "quotes")
TABLE_OF = {"trades": "trades", "incremental_book_L2": "book_updates", "book_snapshot_25": "book_snapshots",
            "book_snapshot_5": "book_snapshots", "quotes": "quotes"}

_VENUES = {"okex": "okx", "bybit-spot": "bybit", "coinbase-pro": "coinbase", "gdax": "coinbase",
           "binance-us": "binanceus"}
_ASSETS = {"XBT": "BTC", "XXBT": "BTC", "XETH": "ETH", "ZUSD": "USD"}
_QUOTES = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USD", "EUR", "GBP", "BTC", "ETH", "BNB", "TRY", "DAI")


def canonical_venue(exchange: str) -> str:
    """tardis exchange id -> our venue name (lower case)."""
    e = exchange.strip().lower()
    return _VENUES.get(e, e)


def canonical_symbol(symbol: str) -> str:
    """A venue's symbol notation -> ``BASE-QUOTE`` (unknown shapes are kept, upper-cased)."""
    s = symbol.strip().upper()
    parts = re.split(r"[-/_]", s)
    if len(parts) == 2 and all(parts):
        base, quote = parts
    else:
        quote = next((q for q in _QUOTES if s.endswith(q) and len(s) > len(q)), None)
        if quote is None:
            return s
        base = s[: -len(quote)]
    return f"{_ASSETS.get(base, base)}-{_ASSETS.get(quote, quote)}"


def _snapshot_header(n: int) -> list[str]:
    cols = list(_IDS)
    for i in range(n):
        cols += [f"asks[{i}].price", f"asks[{i}].amount", f"bids[{i}].price", f"bids[{i}].amount"]
    return cols


def _open_text(path: Path):
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt", encoding="utf-8") if gz else open(path, encoding="utf-8")


def _header(path: Path) -> list[str]:
    with _open_text(path) as f:
        return f.readline().strip().split(",")


def detect_kind(path: str | os.PathLike[str]) -> str:
    """The tardis data type of ``path``: from its name (tardis' ``<exchange>_<type>_<date>_<symbol>``),
    else from its header."""
    p = Path(path)
    name = p.name
    for k in sorted(KINDS, key=len, reverse=True):
        if f"_{k}_" in f"_{name}_".replace(".csv", "_").replace(".gz", "_"):
            return k
    header = _header(p)
    for k, cols in _HEADERS.items():
        if header == cols:
            return k
    if header[:4] == _IDS and header[4:5] == ["asks[0].price"]:
        levels = sum(1 for c in header if c.startswith("asks[") and c.endswith(".price"))
        return f"book_snapshot_{levels}" if levels in (5, 25) else "book_snapshot_25"
    raise DataError(f"{p}: not a tardis CSV of a known type (header {','.join(header[:6])}...); "
                    f"known types: {', '.join(KINDS)}")


def files_under(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Every ``*.csv`` / ``*.csv.gz`` file named or under a named folder, sorted."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and (f.name.endswith(".csv")
                                                                      or f.name.endswith(".csv.gz")))
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"{p}: no such file or folder")
    return out


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of the file's bytes (what makes an import idempotent).

    :func:`hashlib.file_digest` (one reused buffer, GIL released) rather than a loop of our own.
    SHA-256 runs at ~1.9 GB/s here (0.40 CPU-s on a 743 MB file), whichever way the bytes are
    fed (read loop, readinto, mmap: within 0.01 s); BLAKE2b is slower (0.59 s). So the import
    hides it behind the parse instead of making it cheaper.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile() as f:
    ...     _ = f.write(b"abc"); f.flush()
    ...     file_digest(f.name) == hashlib.sha256(b"abc").hexdigest()
    True
    """
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# --------------------------------------------------------------------------- reading
def _schema(kind: str, header: list[str]) -> dict[str, pl.DataType]:
    out: dict[str, pl.DataType] = {}
    for c in header:
        if c == "side" and kind == "incremental_book_L2":
            out[c] = pl.Enum(["ask", "bid"])  # parsed straight to codes: checked and encoded in the parse
        elif c in ("exchange", "symbol", "id", "side"):
            out[c] = pl.String()
        elif c in ("timestamp", "local_timestamp"):
            out[c] = pl.Int64()
        elif c == "is_snapshot":
            out[c] = pl.Boolean()
        else:
            out[c] = pl.Float64()
    return out


def _required(kind: str, header: list[str]) -> list[str]:
    if kind == "trades":
        return [*_IDS, "side", "price", "amount"]
    if kind == "incremental_book_L2":
        return list(header)
    return list(_IDS)  # quotes and snapshot levels may be empty (a side ran out)


def _bad_line(path: Path, schema: dict[str, pl.DataType], required: list[str]) -> str:
    """Find the first malformed row by reading the file as text: ``line N: why``."""
    raw = pl.read_csv(path, infer_schema=False, truncate_ragged_lines=False)
    for c, dtype in schema.items():
        if c not in raw.columns:
            return f"line 1: missing column {c!r}"
        col = raw[c]
        if isinstance(dtype, pl.Enum):
            ok = col.is_null() | col.is_in(dtype.categories.to_list())
            bad = (~ok).arg_true()
            if len(bad):
                i = int(bad[0])
                return (f"line {i + 2}: column {c!r} has {col[i]!r}, "
                        f"expected one of {', '.join(dtype.categories.to_list())}")
            ok = pl.Series([True] * raw.height)  # an empty one: the required check below
        elif dtype == pl.Boolean():
            ok = col.is_null() | col.str.to_lowercase().is_in(["true", "false"])
        elif dtype == pl.String():
            ok = pl.Series([True] * raw.height)
        else:
            ok = col.is_null() | col.cast(dtype, strict=False).is_not_null()
        if c in required:
            ok = ok & col.is_not_null()
        bad = (~ok).arg_true()
        if len(bad):
            i = int(bad[0])
            return f"line {i + 2}: column {c!r} has {col[i]!r}, expected {dtype}"
    return "a row could not be parsed"


def _read(path: Path, kind: str) -> pl.DataFrame:
    header = _header(path)
    if kind in _HEADERS and header != _HEADERS[kind]:
        raise DataError(f"{path}: line 1: header {','.join(header)} is not tardis' {kind} header "
                        f"{','.join(_HEADERS[kind])}")
    if kind.startswith("book_snapshot") and header[:4] != _IDS:
        raise DataError(f"{path}: line 1: header does not start with {','.join(_IDS)}")
    schema = _schema(kind, header)
    required = _required(kind, header)
    try:
        df = pl.read_csv(path, schema=schema)
    except (pl.exceptions.ComputeError, pl.exceptions.SchemaError, pl.exceptions.NoDataError,
            pl.exceptions.InvalidOperationError, OSError) as e:
        try:
            where = _bad_line(path, schema, required)
        except Exception:  # noqa: BLE001 - the text read failed too: report the first error
            where = str(e).splitlines()[0]
        raise DataError(f"{path}: {where}") from None
    nulls = [c for c in required if df[c].null_count()]
    if nulls:
        i = int(df[nulls[0]].is_null().arg_true()[0])
        raise DataError(f"{path}: line {i + 2}: column {nulls[0]!r} is empty")
    return df


def _text(values: Iterable[str], enum: bool) -> pl.DataType:
    """The dtype of a string column: ``String``, or (``enum``) an ``Enum`` of its sorted values,
    whose codes order as the strings do (what :func:`write_parquet` and ``file_stats`` rely on)."""
    return pl.Enum(sorted(set(values))) if enum else pl.String()


def _normalised(df: pl.DataFrame, column: str, fn: Callable[[str], str], enum: bool) -> pl.Expr:
    """``fn`` applied to ``column``: a constant when the file holds one value (tardis writes one
    exchange and symbol per file; a constant costs nothing per row), else a lookup per distinct value."""
    s = df[column]
    if s.len() and (s == s[0]).all():
        v = fn(s[0])
        return pl.lit(v, _text([v], enum))
    mapping = {v: fn(v) for v in s.unique().to_list()}
    return pl.col(column).replace_strict(mapping, return_dtype=_text(mapping.values(), enum))


def _ids(df: pl.DataFrame, enum: bool) -> list[pl.Expr]:
    return [
        pl.col("timestamp").cast(TS).alias("ts_exchange"),  # µs since the epoch, UTC: the same numbers
        pl.col("local_timestamp").cast(TS).alias("ts_local"),
        _normalised(df, "exchange", canonical_venue, enum).alias("venue"),
        _normalised(df, "symbol", canonical_symbol, enum).alias("symbol"),
    ]


def _checked(path: Path, df: pl.DataFrame, column: str, allowed: tuple[str, ...]) -> pl.Series:
    """``column`` as an ``Enum`` of ``allowed`` (one hash per row: the check and the encoding in one
    pass); a value outside it raises :class:`DataError` naming its line."""
    col = df[column]
    enum = col.cast(pl.Enum(sorted(allowed)), strict=False)
    if enum.null_count() != col.null_count():
        i = int((enum.is_null() & col.is_not_null()).arg_true()[0])
        raise DataError(f"{path}: line {i + 2}: column {column!r} has {col[i]!r}, "
                        f"expected one of {', '.join(allowed)}")
    return enum


def _trades(path: Path, df: pl.DataFrame, enum: bool) -> pl.DataFrame:
    _checked(path, df, "side", ("buy", "sell", "unknown"))
    known = pl.when(pl.col("side") == "unknown").then(None).otherwise(pl.col("side"))
    return df.select(*_ids(df, enum), pl.col("id").alias("trade_id"), pl.col("price"), pl.col("amount").alias("qty"),
                     known.cast(_text(["buy", "sell"], enum)).alias("side"))


def _book_updates(path: Path, df: pl.DataFrame, enum: bool) -> pl.DataFrame:
    side = df["side"]  # an Enum of bid, ask: the parse rejected any other value (see _schema)
    # one message = one run of equal (timestamp, local_timestamp, is_snapshot): its run id is the seq
    msg = pl.struct("timestamp", "local_timestamp", "is_snapshot").rle_id().cast(pl.Int64)
    return df.select(*_ids(df, enum), pl.lit(side if enum else side.cast(pl.String())).alias("side"),
                     pl.col("price"), pl.col("amount").alias("qty"), pl.col("is_snapshot"), msg.alias("seq"))


def _quotes(path: Path, df: pl.DataFrame, enum: bool) -> pl.DataFrame:
    return df.select(*_ids(df, enum), pl.col("bid_price").alias("bid_px"), pl.col("bid_amount").alias("bid_qty"),
                     pl.col("ask_price").alias("ask_px"), pl.col("ask_amount").alias("ask_qty"))


def _snapshots(path: Path, df: pl.DataFrame, enum: bool) -> pl.DataFrame:
    levels = sum(1 for c in df.columns if c.startswith("asks[") and c.endswith(".price"))
    base = df.select(*_ids(df, enum), *[pl.col(c) for c in df.columns if c.startswith(("asks[", "bids["))])
    parts = []
    for side, name in (("bids", "bid"), ("asks", "ask")):
        for i in range(levels):
            parts.append(base.select(
                "ts_exchange", "ts_local", "venue", "symbol", pl.lit(i, pl.Int32()).alias("level"),
                pl.lit(name, _text(["ask", "bid"], enum)).alias("side"), pl.col(f"{side}[{i}].price").alias("price"),
                pl.col(f"{side}[{i}].amount").alias("qty")))
    out = pl.concat(parts).drop_nulls(["price", "qty"])
    return out.sort("ts_local", "ts_exchange", "side", "level", maintain_order=True)


_CONVERT: dict[str, Callable[[Path, pl.DataFrame, bool], pl.DataFrame]] = {
    "trades": _trades, "incremental_book_L2": _book_updates, "quotes": _quotes,
    "book_snapshot_25": _snapshots, "book_snapshot_5": _snapshots,
}


def read_file(path: str | os.PathLike[str], kind: str | None = None, *,
              encoded: bool = False) -> tuple[str, pl.DataFrame]:
    """One tardis file as ``(lake table, canonical frame)``; :class:`DataError` names a bad line.

    ``encoded=True`` gives the string columns (venue, symbol, side) as ``Enum`` of their sorted
    values instead of ``String``: the same rows (``cast(pl.String)`` gives the canonical frame)
    in the shape :func:`write_parquet` writes without hashing every string again.
    """
    p = Path(path)
    k = kind or detect_kind(p)
    if k not in _CONVERT:
        raise DataError(f"{p}: tardis type {k!r} is not supported; supported: {', '.join(KINDS)}")
    df = _read(p, k)
    return TABLE_OF[k], _CONVERT[k](p, df, encoded)


def decoded(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with its ``Enum`` columns as ``String`` (the canonical dtypes)."""
    return df.with_columns(pl.col(c).cast(pl.String()) for c, d in df.schema.items() if isinstance(d, pl.Enum))


def _arrow(df: pl.DataFrame) -> pa.Table:
    """``df`` as an Arrow table without copying its data.

    ``DataFrame.to_arrow`` first makes every column one contiguous chunk (the parse leaves one
    chunk per ~30k rows, the computed columns one): a copy of the whole frame into fresh pages
    (0.09 CPU-s per 10 M book rows). The Parquet writer takes chunked columns as they are, so
    numbers, times and booleans are handed over chunk by chunk through the Arrow C stream
    interface; the small ``Enum`` code columns (and anything else) go through ``to_arrow``, which
    gives the ``large_string`` dictionaries the writer knows.

    A column without nulls is declared non-nullable, so Parquet stores it as ``REQUIRED``: no
    definition levels to encode (16 % less writer CPU on a book file). Every reader of the lake
    takes such a column for the table's nullable one (Polars and DuckDB have no non-null types;
    pyarrow and delta-rs widen non-null to nullable), and a later file may hold nulls.

    >>> t = _arrow(pl.concat([pl.DataFrame({"x": [1.0], "s": ["a"]}), pl.DataFrame({"x": [2.0], "s": [None]})],
    ...                      rechunk=False).with_columns(pl.col("s").cast(pl.Enum(["a", "b"]))))
    >>> t.column("x").num_chunks, t.column("x").to_pylist(), t.column("s").to_pylist()
    (2, [1.0, 2.0], ['a', None])
    >>> t.schema.field("x").nullable, t.schema.field("s").nullable
    (False, True)
    """
    import pyarrow as pa

    cols = {c: pa.chunked_array(df[c]) if d.is_numeric() or d.is_temporal() or d == pl.Boolean()
            else df[c].to_arrow() for c, d in df.schema.items()}
    schema = pa.schema([pa.field(c, a.type, nullable=df[c].null_count() > 0) for c, a in cols.items()])
    return pa.table(list(cols.values()), schema=schema)


#: Rows pyarrow encodes per step (its default 1,024): larger steps cost 8 % less CPU on a 5 M-row
#: book part (0.325 -> 0.300 s, median of 9) for a file of the same rows and size (pages still
#: close at ~1 MiB, checked once per step).
_WRITE_BATCH = 65_536


def write_parquet(df: pl.DataFrame, path: str | os.PathLike[str], *, compression: str = "none") -> None:
    """Write a frame of :func:`read_file` (``encoded=True``) as one Parquet data file of the lake.

    The file reads back exactly as the canonical frame: strings as strings (no Arrow schema is
    stored, so no reader sees the dictionary type), 128k-row groups with statistics. Its
    encodings are chosen for what tardis files hold: the Enum columns' dictionaries are written
    as they are (Polars' writer hashes every string again), price columns are dictionary-encoded
    (few distinct prices; pyarrow falls back to plain when there are many), integer and time
    columns are delta-encoded (times in order: small deltas). With these encodings the file is
    as small uncompressed as Polars' zstd file, so the import writes it uncompressed (a codec
    every Parquet reader has). Measured on a 10 M-row incremental_book_L2 file (CPU seconds):
    Polars zstd-1 1.5 s, 129 MB; here zstd-1 1.0 s, 88 MB; lz4 0.85 s, 99 MB; none 0.72 s,
    131 MB. ``lab maintain`` rewrites files below its target size with the lake's zstd anyway.
    Since then (:func:`_arrow`: no rechunk copy, REQUIRED columns; 64k-row steps) the
    uncompressed write costs 0.58 instead of 0.94 CPU-s on a parsed 10 M-row frame (median of 5,
    the same 131 MB and rows).
    """
    import pyarrow.parquet as pq

    dictionary = [c for c, d in df.schema.items()
                  if isinstance(d, pl.Enum) or d == pl.String() or (d.is_float() and c.endswith(("price", "_px")))]
    delta = {c: "DELTA_BINARY_PACKED" for c, d in df.schema.items()
             if (d.is_integer() or isinstance(d, pl.Datetime)) and c not in dictionary}
    pq.write_table(_arrow(df), str(path), compression=compression,
                   compression_level=1 if compression == "zstd" else None, row_group_size=131_072,
                   use_dictionary=dictionary, column_encoding=delta, write_statistics=True, store_schema=False,
                   write_batch_size=_WRITE_BATCH)

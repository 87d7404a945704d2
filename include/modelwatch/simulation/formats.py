"""Serialize record tables as the log contract's JSONL, gzip-compressed JSONL or Parquet.

JSON lines are assembled column by column with Arrow string kernels instead of
one `json.dumps` per record: every value is rendered once per column (numbers
in their shortest round-trip form, strings quoted, or escaped by `json.dumps`
when they hold characters that need it), then the fragments are joined per row.
A null top-level field is left out of its line; a null `features` struct is
written as `{}`; a null inside `features` or `context` is written as `null`.

The output is byte-for-byte reproducible: gzip without a timestamp, Parquet
without pandas metadata.
"""

from __future__ import annotations

import gzip
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

FORMATS = ("jsonl", "jsonl.gz", "parquet")
_NEEDS_ESCAPE = r'["\\\x00-\x1f\x7f]'
GZIP_LEVEL = 1
MS_PER_DAY = 86_400_000


def _quoted(values: pa.Array) -> pa.Array:
    """JSON string literals for a string array (nulls stay null)."""
    if pc.any(pc.match_substring_regex(values, _NEEDS_ESCAPE)).as_py():
        encoded = values.dictionary_encode()
        literals = pa.array([json.dumps(v) for v in encoded.dictionary.to_pylist()], pa.string())
        return literals.take(encoded.indices)
    return pc.binary_join_element_wise('"', values, '"', "")


def _number(values: pa.Array) -> pa.Array:
    """JSON numbers for a float array; NaN and infinity (not JSON) become null."""
    text = pc.cast(values, pa.string())
    finite = pc.is_finite(values)
    return pc.if_else(
        pc.and_kleene(finite, pc.is_valid(values)), text, pa.scalar(None, pa.string())
    )


def _padded(values: np.ndarray, width: int) -> pa.Array:
    return pc.utf8_lpad(pc.cast(pa.array(values), pa.string()), width, "0")


def _rfc3339(values: pa.Array) -> pa.Array:
    """`YYYY-MM-DDTHH:MM:SS.mmmZ` for UTC timestamps, from integer arithmetic (nulls stay null)."""
    ms = values.cast(pa.int64())
    ms = pc.fill_null(ms, pc.min(ms)).to_numpy(zero_copy_only=False)
    day, rest = np.divmod(ms, MS_PER_DAY)
    first = int(day.min()) if len(day) else 0
    days = np.arange(first, int(day.max()) + 1 if len(day) else first).astype("datetime64[D]")
    dates = pa.array([f"{d}T" for d in days], pa.string()).take(pa.array(day - first))
    hour, rest = np.divmod(rest, 3_600_000)
    minute, rest = np.divmod(rest, 60_000)
    second, milli = np.divmod(rest, 1000)
    text = pc.binary_join_element_wise(
        dates,
        _padded(hour, 2),
        ":",
        _padded(minute, 2),
        ":",
        _padded(second, 2),
        ".",
        _padded(milli, 3),
        "Z",
        "",
    )
    return pc.if_else(pc.is_valid(values), text, pa.scalar(None, pa.string()))


def _value(values: pa.Array) -> pa.Array:
    """JSON text of each value of an array, null where the value is null."""
    kind = values.type
    if pa.types.is_struct(kind):
        return _object(values)
    if pa.types.is_timestamp(kind):
        return _quoted(_rfc3339(values))
    if pa.types.is_boolean(kind):
        return pc.if_else(values, "true", "false")
    if pa.types.is_floating(kind) or pa.types.is_integer(kind):
        return _number(pc.cast(values, pa.float64()))
    return _quoted(values.cast(pa.string()))


def _object(struct: pa.StructArray) -> pa.Array:
    """JSON objects for a struct array, each key present (null as `null`); null struct: `{}`."""
    parts: list[pa.Array | str] = ["{"]
    for i, child in enumerate(struct.flatten()):
        key = json.dumps(struct.type.field(i).name)
        parts += [(", " if i else "") + key + ": ", pc.fill_null(_value(child), "null")]
    text = pc.binary_join_element_wise(*parts, "}", "")
    return pc.if_else(pc.is_valid(struct), text, "{}")


def json_lines(table: pa.Table) -> pa.Array:
    """One newline-terminated JSON object per row, keys in column order."""
    parts: list[pa.Array | str] = []
    for i, name in enumerate(table.column_names):
        column = table.column(name).combine_chunks()
        rendered = _value(column)
        prefix = ("{" if i == 0 else ", ") + json.dumps(name) + ": "
        if rendered.null_count:
            parts.append(pc.fill_null(pc.binary_join_element_wise(prefix, rendered, ""), ""))
        else:
            parts += [prefix, rendered]
    return pc.binary_join_element_wise(*parts, "}\n", "")


def join_lines(lines: pa.Array) -> bytes:
    """The lines as one document: the string array's character data, read once."""
    if len(lines) == 0:
        return b""
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32, count=lines.offset + len(lines) + 1)
    first, end = int(offsets[lines.offset]), int(offsets[-1])
    return lines.buffers()[2].slice(first, end - first).to_pybytes()


def gzip_bytes(data: bytes) -> bytes:
    """gzip with a zero timestamp and no file name, so equal input gives equal bytes."""
    return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)


def _filled_structs(table: pa.Table) -> pa.Table:
    """Parquet form: a null struct (`{}` in JSON) becomes a struct whose fields are all null."""
    for i, name in enumerate(table.column_names):
        column = table.column(name).combine_chunks()
        if pa.types.is_struct(column.type) and column.null_count:
            filled = pa.StructArray.from_arrays(column.flatten(), fields=list(column.type))
            table = table.set_column(i, name, filled)
    return table


def parquet_bytes(table: pa.Table) -> bytes:
    """The table as a Parquet file (snappy)."""
    sink = pa.BufferOutputStream()
    pq.write_table(_filled_structs(table), sink, compression="snappy")
    return sink.getvalue().to_pybytes()


def encode(table: pa.Table, fmt: str, lines: pa.Array | None = None) -> bytes:
    """The file content of `table` in `fmt`; JSON formats may pass pre-rendered (edited) `lines`."""
    if fmt == "parquet":
        return parquet_bytes(table)
    document = join_lines(json_lines(table) if lines is None else lines)
    if fmt == "jsonl":
        return document
    if fmt == "jsonl.gz":
        return gzip_bytes(document)
    raise ValueError(f"unknown log format {fmt!r}; expected one of {list(FORMATS)}")

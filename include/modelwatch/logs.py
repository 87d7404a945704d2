"""Read inference logs as the log contract says, one file and one block at a time.

Records arrive as JSONL lines or Parquet record batches, in blocks of at most
CHUNK_ROWS. A block's rows that surely meet every rule are staged from its
Arrow columns (`modelwatch.columnar`); the rest take the record path here:
turned into columns of raw values, checked with vectorized rules, and split
into candidate rows (staged schema of `modelwatch.batch`) and quarantined rows
(with source file, line number, reason and raw text). Nothing is dropped
without a trace: every record read is either kept, counted as a duplicate,
counted as belonging to another interval, or quarantined.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import io
import json
import logging
import math
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from modelwatch import batch, columnar, staging
from modelwatch.config import ModelConfig

log = logging.getLogger(__name__)

SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")
CHUNK_ROWS = 50_000

PREDICTION_FIELDS = (
    "request_id", "timestamp", "model_name", "model_version", "features",
    "prediction", "score", "latency_ms", "status", "error", "context",
)
FEEDBACK_FIELDS = ("request_id", "label", "label_timestamp")

_MISSING = object()  # a key absent from the record, unlike an explicit null
_RFC3339_ZONE = r"(?:[zZ]|[+-]\d{2}:?\d{2})$"


# ---------------------------------------------------------------- partitions


def partition_days(start: datetime, end: datetime) -> list[date]:
    """UTC dates of every `dt=` partition that overlaps the interval [start, end)."""
    if end <= start:
        raise ValueError(f"interval end {end} must be after its start {start}")
    first = start.astimezone(UTC).date()
    last = (end.astimezone(UTC) - timedelta(microseconds=1)).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


@dataclass(frozen=True)
class Partition:
    """One `dt=` folder: its URL, whether it exists, its readable and ignored files."""

    day: date
    url: str
    exists: bool
    files: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()


def partition_url(root: str, model_name: str, kind: str, day: date) -> str:
    return f"{root.rstrip('/')}/{model_name}/{kind}/dt={day.isoformat()}"


def list_partition(root: str, model_name: str, kind: str, day: date) -> Partition:
    """List a partition; a missing folder is reported as such, never as empty.

    Only regular files (or links to them) named like logs are read: anything else
    with a log's name (a FIFO, a socket, a device, a directory) would block or fail
    the read, and is listed in `ignored` with the reason instead.
    """
    url = partition_url(root, model_name, kind, day)
    fs, path = fsspec.core.url_to_fs(url)
    if not fs.isdir(path):
        return Partition(day, url, exists=False)
    files: list[str] = []
    ignored: list[str] = []
    for entry in sorted(fs.ls(path, detail=True), key=lambda e: e["name"]):
        name = _unstrip(fs, entry["name"])
        if not entry["name"].endswith(SUFFIXES):
            ignored.append(batch.safe_text(name))
        elif (unreadable := _not_a_file(fs, entry)) is None:
            files.append(name)
        else:
            ignored.append(f"{batch.safe_text(name)} ({unreadable})")
    return Partition(day, url, exists=True, files=tuple(files), ignored=tuple(ignored))


def _not_a_file(fs: fsspec.AbstractFileSystem, entry: dict) -> str | None:
    """Why a listed entry is not read, or None for a regular file."""
    if entry.get("islink"):
        # fsspec's local listing types every symbolic link "other": look at its target.
        try:
            entry = fs.info(entry["name"])
        except FileNotFoundError:
            return "broken link"
    return None if entry["type"] == "file" else "not a regular file"


def _unstrip(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """Give a listed path back its protocol so that later opens find it."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return path if protocol in ("file", "local") else fs.unstrip_protocol(path)


def missing_prediction_partitions(model: ModelConfig, start: datetime, end: datetime) -> list[str]:
    """URLs of prediction partitions of the interval that have not arrived."""
    return [
        p.url
        for day in partition_days(start, end)
        if not (p := list_partition(model.log_url, model.name, "predictions", day)).exists
    ]


# ---------------------------------------------------------------- raw chunks


@dataclass
class RawChunk:
    """Raw values of up to CHUNK_ROWS records from one file.

    `fields` maps each top-level field to an object Series (`_MISSING` where the
    key is absent). `features` and `context` map names to such Series too.
    `reasons` starts with problems found while parsing (invalid JSON).
    `suspicious` marks the rows whose text may hold NUL or an unpaired
    surrogate, found by a cheap scan of the raw input: only their values are
    checked one by one.
    """

    source_file: str
    line_numbers: np.ndarray
    fields: dict[str, pd.Series]
    features: dict[str, pd.Series]
    extra_features: pd.Series  # JSON text of unnamed features, or None
    context: dict[str, pd.Series]
    reasons: pd.Series
    raw_text: Callable[[np.ndarray], list[str]]
    suspicious: np.ndarray

    def __len__(self) -> int:
        return len(self.line_numbers)


@dataclass
class FileDamage:
    source_file: str
    error: str


def _damage(path: str, error: str) -> FileDamage:
    return FileDamage(batch.safe_text(path), batch.safe_text(error))


def reference_text(text: str) -> str:
    """Raw text as kept for reference: cleaned by `batch.safe_text`, cut at RAW_TEXT_LIMIT characters."""
    text = batch.safe_text(text[: batch.RAW_TEXT_LIMIT + 1])
    return text if len(text) <= batch.RAW_TEXT_LIMIT else text[: batch.RAW_TEXT_LIMIT] + "…"


_LINE_LIMIT = batch.MAX_RECORD_BYTES + 1  # bytes a record and its newline may take
_READ_BYTES = 1 << 20  # bytes decompressed or read at a time


def _iter_jsonl_lines(fs, path: str, damage: list[FileDamage]) -> Iterator[tuple[int, bytes, int]]:
    """Yield (line number, bytes, bytes read) of non-blank lines; a cut-off .gz is reported, not raised.

    No line is held whole when it is longer than MAX_RECORD_BYTES: its bytes
    are its first 4 * RAW_TEXT_LIMIT and its bytes read are reported as
    MAX_RECORD_BYTES + 1; the rest of it is passed over as it is read.
    """
    number = 0
    try:
        with fs.open(path, "rb") as handle:
            stream = gzip.open(handle, "rb") if path.endswith(".gz") else _line_reader(handle)
            head, size = b"", 0  # the line begun in an earlier block: its first _LINE_LIMIT bytes, its length
            while block := stream.read1(_READ_BYTES):
                parts = block.split(b"\n")
                for part in parts[:-1]:
                    number += 1
                    if not size and part[:1] == b"{" and part[-1:] == b"}":  # a record, within this block
                        yield number, part, len(part) + 1
                        continue
                    line, length = (head + part[:_LINE_LIMIT], size + len(part)) if size else (part, len(part))
                    head, size = b"", 0
                    if (found := _line(number, line, length, length + 1)) is not None:
                        yield found
                tail = parts[-1]
                head += tail[: max(0, _LINE_LIMIT - len(head))]
                size += len(tail)
            if size:  # the last line has no newline
                number += 1
                if (found := _line(number, head, size, size)) is not None:
                    yield found
    except (EOFError, OSError, zlib.error) as exc:
        damage.append(_damage(path, f"unreadable after line {number}: {exc}"))


def _line(number: int, line: bytes, length: int, read: int) -> tuple[int, bytes, int] | None:
    """What `_iter_jsonl_lines` yields of one line of `length` bytes (without its newline), or None if blank."""
    if length >= _LINE_LIMIT:
        return number, line[: 4 * batch.RAW_TEXT_LIMIT], _LINE_LIMIT
    text = line.rstrip(b"\r")
    return None if _blank(text) else (number, text, read)


def _line_reader(handle):
    """A binary stream with read1 (fsspec's remote files have none)."""
    return io.BufferedReader(handle) if isinstance(handle, fsspec.spec.AbstractBufferedFile) else handle


def _blank(line: bytes) -> bool:
    """Whether a line holds only white space, Unicode's included."""
    stripped = line.strip()
    return not stripped or (not stripped.isascii() and not _text_of(stripped).strip())


def _text_of(line: bytes) -> str:
    """A line's text; bytes that are not UTF-8 read as U+FFFD."""
    return line.decode("utf-8", errors="replace")


def _split_mapping(
    values: list[object], names: list[str], keep_extra: bool
) -> tuple[dict[str, pd.Series], pd.Series, pd.Series]:
    """Columns of named keys from a list of dicts; extras as JSON; rows that are not dicts.

    Extras nested more than MAX_JSON_DEPTH levels count as not a mapping of
    features: their JSON could not be read back safely.
    """
    as_dicts = [v if isinstance(v, dict) else None for v in values]
    bad = [v is not _MISSING and v is not None and not isinstance(v, dict) for v in values]
    columns = {
        name: pd.Series([d.get(name, _MISSING) if d is not None else _MISSING for d in as_dicts], dtype=object)
        for name in names
    }
    extras: list[str | None] = [None] * len(values)
    if keep_extra:
        known = set(names)
        for i, d in enumerate(as_dicts):
            if d is not None and not known.issuperset(d):
                unnamed = {k: v for k, v in d.items() if k not in known}
                if _nested_deeper(unnamed):
                    bad[i] = True
                else:
                    extras[i] = json.dumps(unnamed, sort_keys=True, default=str)
    return columns, pd.Series(extras, dtype=object), pd.Series(bad)


def _json_chunk(
    source_file: str, numbers: list[int], lines: list[str], too_large: list[int], fields: tuple[str, ...],
    feature_names: list[str], context_names: list[str],
) -> RawChunk:
    records: list[object] = []
    reasons: list[str | None] = []
    suspicious: list[int] = []
    skipped = set(too_large)
    for i, text in enumerate(lines):
        if skipped and i in skipped:
            records.append({})
            reasons.append("record_too_large")
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            record, reason = {}, f"invalid_json: {exc.msg} at column {exc.colno}"
        except RecursionError:
            record, reason = {}, "invalid_json: nested too deeply"
        except ValueError as exc:  # e.g. an integer of more digits than int() converts
            record, reason = {}, f"invalid_json: {str(exc).split(':')[0]}"
        else:
            record, reason = (record, None) if isinstance(record, dict) else ({}, "not_a_json_object")
        # NUL and surrogates can only come in as \u escapes (a raw NUL is not JSON).
        if "\\u" in text and ("\\u0000" in text or "\\ud" in text or "\\uD" in text):
            suspicious.append(i)
        records.append(record)
        reasons.append(reason)
    columns = {
        name: pd.Series([r.get(name, _MISSING) for r in records], dtype=object) for name in fields
    }
    reason_series = pd.Series(reasons, dtype=object)
    features: dict[str, pd.Series] = {}
    extra = pd.Series([None] * len(records), dtype=object)
    context: dict[str, pd.Series] = {}
    if "features" in columns:
        features, extra, features_bad = _split_mapping(columns["features"].tolist(), feature_names, True)
        reason_series = reason_series.mask(reason_series.isna() & features_bad, "wrong_type:features")
    if "context" in columns:
        context, _, context_bad = _split_mapping(columns["context"].tolist(), context_names, False)
        reason_series = reason_series.mask(reason_series.isna() & context_bad, "wrong_type:context")
    kept_lines = lines
    flags = np.zeros(len(lines), dtype=bool)
    flags[suspicious] = True
    return RawChunk(
        source_file=batch.safe_text(source_file),
        line_numbers=np.asarray(numbers, dtype=np.int64),
        fields=columns,
        features=features,
        extra_features=extra,
        context=context,
        reasons=reason_series,
        raw_text=lambda idx: [reference_text(kept_lines[i]) for i in idx],
        suspicious=flags,
    )


_CONTAINERS = (dict, list)


def _nested_deeper(mapping: dict, depth: int = batch.MAX_JSON_DEPTH) -> bool:
    """Whether containers nest more than `depth` levels in `mapping` (itself the first), walked without recursion."""
    level = [v for v in mapping.values() if isinstance(v, _CONTAINERS)]
    for _ in range(depth - 1):
        if not level:
            return False
        level = [
            item
            for container in level
            for item in (container.values() if isinstance(container, dict) else container)
            if isinstance(item, _CONTAINERS)
        ]
    return bool(level)


@dataclass
class Block:
    """Up to CHUNK_ROWS records of one file: their Arrow columns where they decode, and the record path.

    `records` holds the records of the block's rows `typed` as Arrow typed
    them (None when it could not: the record path reads them all); `keys` says
    which keys a record held where its columns show a null (see
    `modelwatch.columnar`). `raw(rows)` is the record path's `RawChunk` of the
    given rows (all when None).
    """

    source_file: str
    line_numbers: np.ndarray
    records: pa.Table | pa.RecordBatch | None
    typed: np.ndarray
    keys: object
    raw: Callable[[np.ndarray | None], RawChunk]

    def __len__(self) -> int:
        return len(self.line_numbers)


def _json_block(path, numbers, lines, too_large, fields, feature_names, context_names, schema) -> Block:
    """A block of JSONL lines, decoded at once by Arrow but for the lines too large to read."""
    records = keys = None
    typed = np.setdiff1d(np.arange(len(lines)), too_large)
    if schema is not None and len(typed):
        readable = [lines[i] for i in typed] if too_large else lines
        records = columnar.decode_json_lines(readable, schema)
        if records is not None:
            keys = columnar.JsonKeys(readable, records.schema)

    def raw(rows: np.ndarray | None) -> RawChunk:
        picked = range(len(lines)) if rows is None else rows.tolist()
        large = set(too_large)
        texts = [_text_of(lines[i])[: batch.RAW_TEXT_LIMIT + 1] if i in large else _text_of(lines[i])
                 for i in picked]
        return _json_chunk(path, [numbers[i] for i in picked], texts,
                           [k for k, i in enumerate(picked) if i in large], fields, feature_names, context_names)

    return Block(batch.safe_text(path), np.asarray(numbers, dtype=np.int64), records, typed, keys, raw)


def _iter_json_blocks(fs, path, fields, feature_names, context_names, damage, schema) -> Iterator[Block]:
    """Blocks of at most CHUNK_ROWS lines and MAX_CHUNK_BYTES bytes read."""
    numbers: list[int] = []
    lines: list[bytes] = []
    too_large: list[int] = []
    size = 0
    for number, text, read in _iter_jsonl_lines(fs, path, damage):
        if read > batch.MAX_RECORD_BYTES:
            too_large.append(len(lines))
        numbers.append(number)
        lines.append(text)
        size += read
        if len(lines) == CHUNK_ROWS or size >= batch.MAX_CHUNK_BYTES:
            yield _json_block(path, numbers, lines, too_large, fields, feature_names, context_names, schema)
            numbers, lines, too_large, size = [], [], [], 0
    if lines:
        yield _json_block(path, numbers, lines, too_large, fields, feature_names, context_names, schema)


# A cut value stays longer than every bound, so that its record is quarantined, never kept cut.
_CLIP_CHARS = max(batch.MAX_TEXT_CHARS, batch.MAX_ERROR_CHARS, batch.MAX_EXTRA_FEATURES_CHARS, batch.RAW_TEXT_LIMIT) + 1
# Python's datetime spans years 1 to 9999; a day is spared at each end for time zones.
_FIRST_SECOND = int(datetime(1, 1, 2, tzinfo=UTC).timestamp())
_LAST_SECOND = int(datetime(9999, 12, 30, tzinfo=UTC).timestamp())
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000}  # nanoseconds always fit


def _sanitized(array: pa.Array) -> tuple[pa.Array, np.ndarray | None]:
    """An Arrow column made safe to turn into Python values, and its rows holding a NUL (None if none).

    Walked down to its leaves: strings are made valid UTF-8 (bytes that are not
    read as U+FFFD, as in JSONL) and, with binary values, cut at _CLIP_CHARS
    before any becomes a Python object; timestamps and dates Python cannot hold
    are read as their text. Columns that need none of it are returned as they are.
    """
    kind = array.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _sanitized_text(array)
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return (pc.binary_slice(array, 0, _CLIP_CHARS) if columnar.longest_bytes(array) > _CLIP_CHARS else array), None
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return _sanitized_temporal(array), None
    if pa.types.is_dictionary(kind):
        dictionary = array.dictionary
        values, nul = _sanitized(dictionary)
        rows = None if nul is None else pc.fill_null(pc.take(pa.array(nul), array.indices), False).to_numpy(
            zero_copy_only=False
        )
        return (array if values is dictionary else pa.DictionaryArray.from_arrays(array.indices, values)), rows
    if pa.types.is_struct(kind):
        children = [array.field(i) for i in range(kind.num_fields)]
        done = [_sanitized(child) for child in children]
        masks = [nul for _, nul in done if nul is not None]
        if any("\x00" in f.name for f in kind):
            masks.append(np.ones(len(array), dtype=bool))  # a field name is text of every row
        if any(new is not old for (new, _), old in zip(done, children, strict=True)):
            array = pa.StructArray.from_arrays(
                [new for new, _ in done], names=[f.name for f in kind], mask=array.is_null()
            )
        return array, _any_row(masks)
    if pa.types.is_map(kind) or pa.types.is_list(kind) or pa.types.is_large_list(kind):
        children = [array.keys, array.items] if pa.types.is_map(kind) else [array.values]
        done = [_sanitized(child) for child in children]
        offsets = array.offsets.to_numpy()
        masks = [_rows_of(nul, offsets) for _, nul in done if nul is not None]
        if any(new is not old for (new, _), old in zip(done, children, strict=True)):
            array = type(array).from_arrays(array.offsets, *[new for new, _ in done], mask=array.is_null())
        return array, _any_row(masks)
    return array, None


def _sanitized_text(array: pa.Array) -> tuple[pa.Array, np.ndarray | None]:
    try:
        array.validate(full=True)
    except pa.ArrowInvalid:
        binary = pa.large_binary() if pa.types.is_large_string(array.type) else pa.binary()
        array = pa.array(
            [None if v is None else v.decode("utf-8", errors="replace") for v in array.cast(binary).to_pylist()],
            type=array.type,
        )
    if columnar.longest_bytes(array) > _CLIP_CHARS:
        array = pc.utf8_slice_codeunits(array, 0, _CLIP_CHARS)
    if not columnar.holds_zero_byte(array):
        return array, None
    return array, pc.fill_null(pc.match_substring(array, "\x00"), False).to_numpy(zero_copy_only=False)


def _sanitized_temporal(array: pa.Array) -> pa.Array:
    """The column itself, or its text (UTC timestamps end in Z) when a value is outside years 1 to 9999."""
    kind = array.type
    if pa.types.is_date32(kind):
        low, high = _FIRST_SECOND // 86_400, _LAST_SECOND // 86_400
    else:
        unit = "ms" if pa.types.is_date64(kind) else kind.unit
        if unit not in _PER_SECOND:
            return array
        low, high = _FIRST_SECOND * _PER_SECOND[unit], _LAST_SECOND * _PER_SECOND[unit]
    bounds = pc.min_max(array.cast(pa.int32() if pa.types.is_date32(kind) else pa.int64()))
    first, last = bounds["min"].as_py(), bounds["max"].as_py()
    if first is None or (low <= first and last <= high):
        return array
    if pa.types.is_timestamp(kind):
        array = array.cast(pa.timestamp(kind.unit, tz="UTC"))
    return array.cast(pa.string())


def _rows_of(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per list row, whether any of its values is flagged."""
    counts = np.concatenate(([0], np.cumsum(values)))
    return counts[offsets[1:]] > counts[offsets[:-1]]


def _any_row(masks: list[np.ndarray]) -> np.ndarray | None:
    return np.logical_or.reduce(masks) if masks else None


def _arrow_to_objects(array: pa.Array | pa.ChunkedArray) -> pd.Series:
    """An Arrow column as a Series of Python objects; timestamps stay datetimes."""
    return pd.Series(array.to_pylist(), dtype=object)


def _struct_columns(
    column: pa.Array | None, names: list[str], rows: int, keep_extra: bool
) -> tuple[dict[str, pd.Series], pd.Series]:
    if column is None:
        return {n: pd.Series([_MISSING] * rows, dtype=object) for n in names}, pd.Series([None] * rows, dtype=object)
    if pa.types.is_map(column.type):
        if not (pa.types.is_string(column.type.key_type) or pa.types.is_large_string(column.type.key_type)):
            raise TypeError(f"expected a map with text keys, found {column.type}")
        values = column.to_pylist()
        dicts = [dict(v) if v is not None else None for v in values]
        columns, extra, _ = _split_mapping(dicts, names, keep_extra)
        return columns, extra
    if not pa.types.is_struct(column.type):
        raise TypeError(f"expected a struct or map column, found {column.type}")
    present = {column.type.field(i).name for i in range(column.type.num_fields)}
    columns = {
        n: _arrow_to_objects(column.field(n)) if n in present else pd.Series([_MISSING] * rows, dtype=object)
        for n in names
    }
    extra = pd.Series([None] * rows, dtype=object)
    extras = sorted(present - set(names))
    if keep_extra and extras:
        # A struct holds every field on every row; a row's extras are its non-null ones.
        parts = {n: column.field(n).to_pylist() for n in extras}
        present_extras = [{n: parts[n][i] for n in extras if parts[n][i] is not None} for i in range(rows)]
        extra = pd.Series(
            [json.dumps(e, sort_keys=True, default=str) if e else None for e in present_extras],
            dtype=object,
        )
    return columns, extra


def _parquet_chunk(
    source_file: str, record_batch: pa.RecordBatch, line_numbers: np.ndarray, fields: tuple[str, ...],
    feature_names: list[str], context_names: list[str],
) -> RawChunk:
    rows = record_batch.num_rows
    cleaned = [_sanitized(column) for column in record_batch.columns]
    record_batch = pa.RecordBatch.from_arrays([column for column, _ in cleaned], names=record_batch.schema.names)
    suspicious = _any_row([nul for _, nul in cleaned if nul is not None])
    names = set(record_batch.schema.names)
    columns = {
        f: _arrow_to_objects(record_batch.column(f)) if f in names else pd.Series([_MISSING] * rows, dtype=object)
        for f in fields
        if f not in ("features", "context")
    }
    reasons = pd.Series([None] * rows, dtype=object)
    features: dict[str, pd.Series] = {}
    extra = pd.Series([None] * rows, dtype=object)
    context: dict[str, pd.Series] = {}
    if "features" in fields:
        if "features" in names:
            try:
                features, extra = _struct_columns(record_batch.column("features"), feature_names, rows, True)
                nulls = pd.Series(record_batch.column("features").is_null().to_numpy(zero_copy_only=False))
                columns["features"] = pd.Series(np.where(nulls, None, {}), dtype=object)
            except TypeError:
                reasons[:] = "wrong_type:features"
                columns["features"] = pd.Series([None] * rows, dtype=object)
                features, extra = _struct_columns(None, feature_names, rows, True)
        else:
            columns["features"] = pd.Series([_MISSING] * rows, dtype=object)
            features, extra = _struct_columns(None, feature_names, rows, True)
    if "context" in fields:
        try:
            context, _ = _struct_columns(
                record_batch.column("context") if "context" in names else None, context_names, rows, False
            )
        except TypeError:
            reasons[:] = reasons.fillna("wrong_type:context")
            context, _ = _struct_columns(None, context_names, rows, False)

    def raw_text(idx: np.ndarray) -> list[str]:
        picked = record_batch.take(pa.array(idx, type=pa.int64())).to_pylist()
        return [reference_text(json.dumps(r, default=str, sort_keys=True, skipkeys=True)) for r in picked]

    return RawChunk(
        source_file=batch.safe_text(source_file),
        line_numbers=line_numbers,
        fields=columns,
        features=features,
        extra_features=extra,
        context=context,
        reasons=reasons,
        raw_text=raw_text,
        suspicious=np.zeros(rows, dtype=bool) if suspicious is None else suspicious,
    )


def _parquet_block(path, record_batch: pa.RecordBatch, first_row: int, fields, feature_names,
                   context_names) -> Block:
    numbers = np.arange(first_row + 1, first_row + record_batch.num_rows + 1, dtype=np.int64)

    def raw(rows: np.ndarray | None) -> RawChunk:
        if rows is None:
            return _parquet_chunk(path, record_batch, numbers, fields, feature_names, context_names)
        # Cleaned before the rows are copied: a value past every bound is cut, never copied whole, and a
        # column read as text is read so for all rows, as the record path alone reads it.
        cleaned = pa.RecordBatch.from_arrays([_sanitized(column)[0] for column in record_batch.columns],
                                             names=record_batch.schema.names)
        picked = cleaned.take(pa.array(rows, type=pa.int64()))
        return _parquet_chunk(path, picked, numbers[rows], fields, feature_names, context_names)

    return Block(batch.safe_text(path), numbers, record_batch, np.arange(len(numbers)), columnar.StructKeys(), raw)


def _iter_parquet_blocks(fs, path, fields, feature_names, context_names, damage, schema) -> Iterator[Block]:
    first_row = 0
    try:
        with fs.open(path, "rb") as handle:
            parquet = batch.streaming_parquet(handle)
            # The next batch is decoded (the GIL released) while this one is checked; the reading
            # thread is done before the file closes, also when the caller stops early.
            batches = contextlib.closing(staging.prefetched(parquet.iter_batches(batch_size=CHUNK_ROWS)))
            with batches as record_batches:
                for record_batch in record_batches:
                    yield _parquet_block(path, record_batch, first_row, fields, feature_names, context_names)
                    first_row += record_batch.num_rows
    except (OSError, pa.ArrowException) as exc:
        damage.append(_damage(path, f"unreadable after row {first_row}: {exc}"))


def iter_blocks(
    path: str, fields: tuple[str, ...], feature_names: list[str], context_names: list[str],
    damage: list[FileDamage], json_schema: pa.Schema | None = None,
) -> Iterator[Block]:
    """Stream one log file as blocks; damage is appended to `damage`, never raised.

    JSONL lines are decoded by Arrow with `json_schema` (see
    `modelwatch.columnar`); without one, only the record path reads them.
    """
    fs, _ = fsspec.core.url_to_fs(path)
    reader = _iter_parquet_blocks if path.endswith(".parquet") else _iter_json_blocks
    yield from reader(fs, path, fields, feature_names, context_names, damage, json_schema)


# ---------------------------------------------------------------- value checks


# Element-wise comparisons of object arrays run in numpy's C loop; a Python
# function mapped over every value of every field cost most of an extract.
_type_of = np.frompyfunc(type, 1, 1)


def _types(series: pd.Series) -> pd.Series:
    return pd.Series(_type_of(series.to_numpy(dtype=object)), index=series.index, dtype=object)


def _is_missing(series: pd.Series) -> pd.Series:
    return pd.Series(series.to_numpy(dtype=object) == _MISSING, index=series.index)


def _is_null(series: pd.Series) -> pd.Series:
    values = series.to_numpy(dtype=object)
    return pd.Series((values == None) | (values == _MISSING), index=series.index)  # noqa: E711


def _is_number(series: pd.Series) -> pd.Series:
    return _types(series).isin([int, float, np.float64, np.int64])


def _as_float(series: pd.Series, usable: pd.Series) -> pd.Series:
    values = series.where(usable, None)
    try:
        return pd.to_numeric(values, errors="coerce").astype("float64")
    except OverflowError:  # an integer beyond the range of a double, read as infinite
        return pd.Series([_float(v) for v in values], index=series.index, dtype="float64")


def _float(value: object) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _text_lengths(series: pd.Series) -> np.ndarray:
    """Characters of each text value, -1 for any other value (one pass serves type and length checks)."""
    values = series.to_numpy(dtype=object)
    return np.fromiter((len(v) if type(v) is str else -1 for v in values), dtype=np.int64, count=len(values))


def _invalid_text(series: pd.Series, suspicious: np.ndarray) -> np.ndarray:
    """Rows whose value is text holding NUL or an unpaired surrogate; only suspicious rows are looked at."""
    bad = np.zeros(len(series), dtype=bool)
    rows = np.flatnonzero(suspicious)
    if len(rows):
        values = series.to_numpy(dtype=object)[rows]
        bad[rows] = [type(v) is str and not batch.is_safe_text(v) for v in values]
    return bad


def _check_text(
    reasons: _Reasons, chunk: RawChunk, values: pd.Series, name: str, limit: int | None,
    lengths: np.ndarray | None = None,
) -> None:
    """Quarantine text the warehouse cannot store, or longer than `limit` characters.

    `lengths` are those of the value as stored, when it is not the raw value
    (numbers are stored as their text).
    """
    reasons.add(_invalid_text(values, chunk.suspicious), f"invalid_text:{name}")
    if limit is not None:
        reasons.add((_text_lengths(values) if lengths is None else lengths) > limit, f"value_too_long:{name}")


def _check_extra_features(reasons: _Reasons, chunk: RawChunk) -> None:
    """Bound the JSON of unnamed features; their names reach validation's report, so they must be storable."""
    extra = chunk.extra_features
    present = extra.notna().to_numpy()
    if not present.any():
        return
    reasons.add(_text_lengths(extra) > batch.MAX_EXTRA_FEATURES_CHARS, "value_too_long:features")
    rows = np.flatnonzero(chunk.suspicious & present)
    bad = np.zeros(len(extra), dtype=bool)
    bad[rows] = [not all(map(batch.is_safe_text, json.loads(extra.iat[i]))) for i in rows]
    reasons.add(bad, "invalid_text:features")


def canonical_text(series: pd.Series) -> pd.Series:
    """Labels and predictions as text: 1, 1.0 and "1" all read "1".

    Built as an object Series on purpose: pandas would infer its Arrow string
    type, a costly round trip that also fails on a lone surrogate.
    """
    return pd.Series([_canonical(v) for v in series.to_numpy(dtype=object)], index=series.index, dtype=object)


def _canonical(value: object) -> object:
    if value is None or value is _MISSING:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    try:
        return str(value)
    except RecursionError:  # a list nested too deeply to print is no label anyway (wrong_type)
        return None


class _Reasons:
    """First failing reason per row, filled in rule order."""

    def __init__(self, initial: pd.Series):
        self.values = initial.copy()

    def add(self, mask: pd.Series | np.ndarray, reason: str) -> None:
        if isinstance(mask, pd.Series):
            mask = mask.fillna(False).astype(bool).to_numpy()
        open_rows = self.values.isna().to_numpy()
        self.values[mask & open_rows] = reason

    @property
    def ok(self) -> pd.Series:
        return self.values.isna()


def _parse_timestamp(series: pd.Series, reasons: _Reasons, name: str) -> pd.Series:
    """RFC 3339 strings (zone required) or datetimes, to UTC."""
    is_str = _types(series) == str
    is_dt = series.map(lambda v: isinstance(v, datetime))
    reasons.add(~is_str & ~is_dt & ~_is_null(series), f"wrong_type:{name}")
    text = series.where(is_str, None)
    zoned = text.str.contains(_RFC3339_ZONE, regex=True, na=False)
    parsed = pd.to_datetime(text.where(zoned, None), utc=True, format="ISO8601", errors="coerce")
    if is_dt.any():
        as_dt = series.where(is_dt, None).map(
            lambda v: v if v is None or v.tzinfo else v.replace(tzinfo=UTC)
        )
        parsed = parsed.where(~is_dt, pd.to_datetime(as_dt, utc=True))
    reasons.add(is_str & parsed.isna(), f"invalid_timestamp:{name}")
    return parsed.astype("datetime64[us, UTC]")


def _require(reasons: _Reasons, raw: dict[str, pd.Series], names: tuple[str, ...]) -> None:
    for name in names:
        reasons.add(_is_null(raw[name]), f"missing_field:{name}")


def _check_number(
    reasons: _Reasons, values: pd.Series, name: str, required: pd.Series | None = None
) -> pd.Series:
    """Validate a numeric field; returns float64 with NaN where absent."""
    null = _is_null(values)
    if required is not None:
        reasons.add(required & null, f"missing_field:{name}")
    number = _is_number(values)
    reasons.add(~null & ~number, f"wrong_type:{name}")
    as_float = _as_float(values, number)
    reasons.add(number & ~np.isfinite(as_float), f"non_finite:{name}")
    return as_float


def _day_bounds(day: date) -> tuple[pd.Timestamp, pd.Timestamp]:
    start = pd.Timestamp(datetime(day.year, day.month, day.day, tzinfo=UTC))
    return start, start + pd.Timedelta(days=1)


# ---------------------------------------------------------------- normalizing


@dataclass
class Normalized:
    """A chunk split into candidate rows (the staged schema) and quarantined rows."""

    rows: pa.Table
    quarantined: pd.DataFrame
    outside_interval: int = 0


def _staged(frame: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False, safe=False)


def _quarantine_frame(chunk: RawChunk, kind: str, bad: np.ndarray, reasons: pd.Series) -> pd.DataFrame:
    idx = np.flatnonzero(bad)
    return pd.DataFrame(
        {
            "kind": kind,
            "source_file": chunk.source_file,
            "line_number": chunk.line_numbers[idx],
            "reason": reasons.to_numpy()[idx],
            "raw": chunk.raw_text(idx) if len(idx) else [],
        }
    )


def _missing_feature_names(chunk: RawChunk, model: ModelConfig, is_error: np.ndarray) -> np.ndarray:
    """Comma-separated configured features absent per row (None when all present).

    An error record may log `features: {}`; its absent features are not schema drift.
    """
    names = [f.name for f in model.features]
    missing = np.column_stack([_is_missing(chunk.features[n]).to_numpy(dtype=bool) for n in names])
    missing &= ~is_error[:, None]
    result = np.full(len(chunk), None, dtype=object)
    for row in np.flatnonzero(missing.any(axis=1)):
        result[row] = ",".join(n for n, absent in zip(names, missing[row], strict=False) if absent)
    return result


def normalize_predictions(
    chunk: RawChunk, model: ModelConfig, day: date, start: datetime, end: datetime
) -> Normalized:
    """Apply the contract's rules to one chunk of prediction records from partition `day`."""
    raw = chunk.fields
    reasons = _Reasons(chunk.reasons)
    _require(reasons, raw, ("request_id", "timestamp", "model_name", "model_version", "latency_ms", "status"))
    reasons.add(_is_missing(raw["features"]), "missing_field:features")
    # A model_name other than the configured one is a mismatch, however long.
    for name, limit in (
        ("request_id", batch.MAX_TEXT_CHARS), ("model_name", None),
        ("model_version", batch.MAX_TEXT_CHARS), ("status", batch.MAX_TEXT_CHARS),
    ):
        lengths = _text_lengths(raw[name])
        reasons.add(~_is_null(raw[name]).to_numpy() & (lengths < 0), f"wrong_type:{name}")
        _check_text(reasons, chunk, raw[name], name, limit, lengths)
    timestamp = _parse_timestamp(raw["timestamp"], reasons, "timestamp")
    status = raw["status"]
    reasons.add(~_is_null(status) & ~status.isin(["ok", "error"]), "invalid_status")
    is_ok = status.eq("ok")
    is_error = status.eq("error")

    prediction = raw["prediction"]
    reasons.add(is_ok & _is_null(prediction), "missing_field:prediction")
    if model.task == "regression":
        prediction_value = _check_number(reasons, prediction, "prediction")
    else:
        reasons.add(
            ~_is_null(prediction) & ~(_is_number(prediction) | (_types(prediction) == str)),
            "wrong_type:prediction",
        )
        prediction_value = _as_float(prediction, _is_number(prediction))
        reasons.add(_is_number(prediction) & ~np.isfinite(prediction_value), "non_finite:prediction")
    prediction_text = canonical_text(prediction)
    _check_text(reasons, chunk, prediction, "prediction", batch.MAX_TEXT_CHARS, _text_lengths(prediction_text))
    score = _check_number(
        reasons, raw["score"], "score", required=is_ok if model.task == "binary_classification" else None
    )
    reasons.add((score < 0) | (score > 1), "score_out_of_range")
    latency = _check_number(reasons, raw["latency_ms"], "latency_ms")
    reasons.add(latency < 0, "negative_latency")
    error = raw["error"]
    reasons.add(is_error & _is_null(error), "missing_field:error")
    error_lengths = _text_lengths(error)
    reasons.add(~_is_null(error).to_numpy() & (error_lengths < 0), "wrong_type:error")
    _check_text(reasons, chunk, error, "error", batch.MAX_ERROR_CHARS, error_lengths)

    features: dict[str, pd.Series] = {}
    for feature in model.features:
        values = chunk.features[feature.name]
        null = _is_null(values)
        column = batch.feature_column(feature.name)
        if feature.type == "numeric":
            features[column] = _check_number(reasons, values, f"features.{feature.name}")
        elif feature.type == "boolean":
            is_bool = _types(values) == bool
            reasons.add(~null & ~is_bool, f"wrong_type:features.{feature.name}")
            features[column] = values.where(is_bool, None).astype("boolean")
        else:
            kinds = _types(values)
            reasons.add(~null & ~kinds.isin([str, int, float]), f"wrong_type:features.{feature.name}")
            number = kinds.isin([int, float])
            if number.any():  # a category code must be a finite number
                reasons.add(number & ~np.isfinite(_as_float(values, number)), f"non_finite:features.{feature.name}")
            text = canonical_text(values)
            _check_text(reasons, chunk, values, f"features.{feature.name}", batch.MAX_TEXT_CHARS, _text_lengths(text))
            features[column] = text
    _check_extra_features(reasons, chunk)
    missing_names = _missing_feature_names(chunk, model, is_error.to_numpy(dtype=bool))

    context: dict[str, pd.Series] = {}
    for key in batch.context_keys(model):
        values = chunk.context[key]
        lengths = _text_lengths(values)
        reasons.add(~_is_null(values).to_numpy() & (lengths < 0), f"wrong_type:context.{key}")
        _check_text(reasons, chunk, values, f"context.{key}", batch.MAX_TEXT_CHARS, lengths)
        context[batch.context_column(key)] = values.where(~_is_null(values), None)

    reasons.add(~_is_null(raw["model_name"]) & raw["model_name"].ne(model.name), "model_name_mismatch")
    day_start, day_end = _day_bounds(day)
    reasons.add(timestamp.notna() & ((timestamp < day_start) | (timestamp >= day_end)), "timestamp_outside_partition")

    ok = reasons.ok.to_numpy()
    in_interval = ((timestamp >= pd.Timestamp(start)) & (timestamp < pd.Timestamp(end))).to_numpy()
    # A bad record belongs to the run whose interval holds its time, else the partition's start.
    owner_time = timestamp.where(~reasons.ok & timestamp.between(day_start, day_end, inclusive="left"), day_start)
    owned = ((owner_time >= pd.Timestamp(start)) & (owner_time < pd.Timestamp(end))).to_numpy()

    keep = ok & in_interval
    frame = pd.DataFrame(
        {
            "request_id": raw["request_id"],
            "timestamp": timestamp,
            "model_name": raw["model_name"],
            "model_version": raw["model_version"],
            "status": status,
            "error": error.where(~_is_null(error), None),
            "prediction": prediction_text,
            "prediction_value": prediction_value,
            "score": score,
            "latency_ms": latency,
            "extra_features": chunk.extra_features,
            "missing_features": missing_names,
            "source_file": chunk.source_file,
            "line_number": chunk.line_numbers,
            **features,
            **context,
        }
    )
    return Normalized(
        rows=_staged(frame[keep], batch.prediction_schema(model)),
        quarantined=_quarantine_frame(chunk, "predictions", ~ok & owned, reasons.values),
        outside_interval=int((ok & ~in_interval).sum()),
    )


def normalize_feedback(
    chunk: RawChunk, day: date, start: datetime, end: datetime, known_before: datetime
) -> Normalized:
    """Apply the contract's rules to feedback records from partition `day`.

    Labels whose `label_timestamp` is at or after `known_before` are not known yet
    as of the interval's end and are left out (counted as outside the interval).
    Bad records are quarantined only by the run whose interval holds the partition.
    """
    raw = chunk.fields
    reasons = _Reasons(chunk.reasons)
    _require(reasons, raw, FEEDBACK_FIELDS)
    lengths = _text_lengths(raw["request_id"])
    reasons.add(~_is_null(raw["request_id"]).to_numpy() & (lengths < 0), "wrong_type:request_id")
    _check_text(reasons, chunk, raw["request_id"], "request_id", batch.MAX_TEXT_CHARS, lengths)
    label = raw["label"]
    reasons.add(~_is_null(label) & ~(_is_number(label) | (_types(label) == str)), "wrong_type:label")
    label_value = _as_float(label, _is_number(label))
    reasons.add(_is_number(label) & ~np.isfinite(label_value), "non_finite:label")
    label_text = canonical_text(label)
    _check_text(reasons, chunk, label, "label", batch.MAX_TEXT_CHARS, _text_lengths(label_text))
    label_timestamp = _parse_timestamp(raw["label_timestamp"], reasons, "label_timestamp")
    day_start, day_end = _day_bounds(day)
    reasons.add(
        label_timestamp.notna() & ((label_timestamp < day_start) | (label_timestamp >= day_end)),
        "timestamp_outside_partition",
    )
    ok = reasons.ok.to_numpy()
    known = (label_timestamp < pd.Timestamp(known_before)).to_numpy()
    owned = pd.Timestamp(start) <= day_start < pd.Timestamp(end)
    frame = pd.DataFrame(
        {
            "request_id": raw["request_id"],
            "label": label_text,
            "label_value": label_value,
            "label_timestamp": label_timestamp,
            "source_file": chunk.source_file,
            "line_number": chunk.line_numbers,
        }
    )
    return Normalized(
        rows=_staged(frame[ok & known], batch.FEEDBACK_SCHEMA),
        quarantined=_quarantine_frame(chunk, "feedback", ~ok & owned, reasons.values),
        outside_interval=int((ok & ~known).sum()),
    )


def stage_predictions(block: Block, model: ModelConfig, day: date, start: datetime, end: datetime) -> Normalized:
    """`normalize_predictions` of a block: Arrow's columns where every rule surely holds, the record path
    for the rest (`modelwatch.columnar`)."""
    fast = None if block.records is None else columnar.predictions(
        block.records, model, day, start, end, block.source_file, block.line_numbers[block.typed], block.keys)
    return _combined(block, fast, lambda rows: normalize_predictions(block.raw(rows), model, day, start, end),
                     batch.prediction_schema(model))


def stage_feedback(block: Block, day: date, start: datetime, end: datetime, known_before: datetime) -> Normalized:
    """`normalize_feedback` of a block, as `stage_predictions` does it."""
    fast = None if block.records is None else columnar.feedback(
        block.records, day, start, end, known_before, block.source_file, block.line_numbers[block.typed])
    return _combined(block, fast, lambda rows: normalize_feedback(block.raw(rows), day, start, end, known_before),
                     batch.FEEDBACK_SCHEMA)


def _combined(block: Block, fast, record_path: Callable[[np.ndarray | None], Normalized],
              schema: pa.Schema) -> Normalized:
    """The fast path's rows and the record path's of the rest of the block, in line order."""
    if fast is None:
        return record_path(None)
    slow = np.ones(len(block), dtype=bool)
    slow[block.typed] = fast.slow
    if not slow.any():
        return Normalized(fast.rows, _no_quarantine(), fast.outside_interval)
    slow = record_path(np.flatnonzero(slow))
    return Normalized(columnar.concatenated([fast.rows, slow.rows], schema), slow.quarantined,
                      fast.outside_interval + slow.outside_interval)


@functools.cache
def _empty_quarantine() -> pd.DataFrame:
    return pd.DataFrame({name: [] for name in batch.QUARANTINE_SCHEMA.names})


def _no_quarantine() -> pd.DataFrame:
    """An empty quarantine frame: a copy of one built once, which takes a fiftieth of the time."""
    return _empty_quarantine().copy()


# ---------------------------------------------------------------- partition reads


@dataclass
class ReadStats:
    """What a read saw; every record is in exactly one of the counted outcomes."""

    records_read: int = 0
    rows_kept: int = 0
    rows_quarantined: int = 0
    outside_interval: int = 0
    files_read: list[str] = field(default_factory=list)
    ignored_files: list[str] = field(default_factory=list)
    damaged_files: list[FileDamage] = field(default_factory=list)
    missing_partitions: list[str] = field(default_factory=list)
    empty_partitions: list[str] = field(default_factory=list)


def iter_partition_blocks(
    model: ModelConfig, kind: str, days: list[date], stats: ReadStats
) -> Iterator[tuple[date, Block]]:
    """Stream every block of every file in the given partitions of one kind."""
    if kind == "predictions":
        fields, feature_names = PREDICTION_FIELDS, [f.name for f in model.features]
        context_names, json_schema = batch.context_keys(model), columnar.prediction_json_schema(model)
    else:
        fields, feature_names, context_names, json_schema = FEEDBACK_FIELDS, [], [], columnar.FEEDBACK_JSON_SCHEMA
    for day in days:
        partition = list_partition(model.log_url, model.name, kind, day)
        if not partition.exists:
            stats.missing_partitions.append(partition.url)
            continue
        stats.ignored_files.extend(partition.ignored)
        records_before = stats.records_read
        for path in partition.files:
            for block in iter_blocks(path, fields, feature_names, context_names, stats.damaged_files, json_schema):
                stats.records_read += len(block)
                yield day, block
            stats.files_read.append(batch.safe_text(path))
            log.info("read %s (%d records so far)", batch.safe_text(path), stats.records_read)
        if stats.records_read == records_before:
            stats.empty_partitions.append(partition.url)

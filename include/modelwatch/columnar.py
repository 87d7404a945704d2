"""The log contract's rules on whole Arrow columns: the fast path of `modelwatch.logs`.

Records come in blocks: a Parquet record batch, or the lines of a JSONL chunk
decoded at once by `pyarrow.json` with the contract's types. The rows of a
block that meet every rule for certain are staged straight from its columns.
Every other row (one that may break a rule, or whose staged values only the
record-by-record path computes exactly) is left to `modelwatch.logs`, which
names each reason; so is a whole block whose columns Arrow cannot type as
the contract does (`predictions` and `feedback` return None). The fast path
therefore never decides an outcome the record path would decide otherwise:
it only skips work whose result is sure.
"""

from __future__ import annotations

import functools
import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from modelwatch import batch
from modelwatch.config import ModelConfig

# RFC 3339 as both readers parse it alike: seconds, at most microseconds, a zone.
_STRICT_TIMESTAMP = (
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?"
    r"(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$"
)
_TIMESTAMP_UNITS = {"s": 1, "ms": 1_000, "us": 1_000_000}  # nanoseconds are left to the record path
# Years 1 to 9999, a day spared at each end for time zones (as `logs` reads them).
_FIRST_SECOND = int(datetime(1, 1, 2, tzinfo=UTC).timestamp())
_LAST_SECOND = int(datetime(9999, 12, 30, tzinfo=UTC).timestamp())
_FEW_DISTINCT = 16  # a column with at most 1/16 as many distinct values as rows writes each value once
_EXACT_INTEGER = 2.0**53  # doubles up to this are integers whose text int() gives exactly
# Python writes a double in fixed notation in this range; Arrow agrees there wherever it writes no exponent.
_FIXED_NOTATION = (1e-4, 1e16)
# Arrow parses blocks of this many bytes in parallel; a block must hold the longest line.
_JSON_BLOCK_BYTES = batch.MAX_RECORD_BYTES + 2
_UNSAFE_ESCAPE = re.compile(rb"\\u(0000|[dD][89a-fA-F])")


@dataclass
class FastRows:
    """The rows of a block the fast path decided: staged rows, and which rows it left to `logs`.

    Attributes
    ----------
    rows : pa.Table
        Accepted rows inside the interval, in block order, in the staged schema.
    slow : np.ndarray
        Per block row, whether the record path must decide it.
    outside_interval : int
        Accepted rows that belong to another interval (not staged).
    """

    rows: pa.Table
    slow: np.ndarray
    outside_interval: int


# ---------------------------------------------------------------- JSONL blocks


def prediction_json_schema(model: ModelConfig) -> pa.Schema:
    """The types `pyarrow.json` decodes prediction lines with; fields it may infer are left out.

    `prediction` and categorical features may be numbers or text, so Arrow
    infers them per block; timestamps are read as text and parsed here, where
    a missing zone is caught.
    """
    kinds = {"numeric": pa.float64(), "boolean": pa.bool_()}
    features = [pa.field(f.name, kinds[f.type]) for f in model.features if f.type in kinds]
    return pa.schema([
        ("request_id", pa.string()), ("timestamp", pa.string()), ("model_name", pa.string()),
        ("model_version", pa.string()), ("features", pa.struct(features)), ("score", pa.float64()),
        ("latency_ms", pa.float64()), ("status", pa.string()), ("error", pa.string()),
        ("context", pa.struct([(key, pa.string()) for key in batch.context_keys(model)])),
    ])


FEEDBACK_JSON_SCHEMA = pa.schema([("request_id", pa.string()), ("label_timestamp", pa.string())])
"""The types feedback lines are decoded with (`label` is inferred)."""


def decode_json_lines(lines: list[bytes], schema: pa.Schema) -> pa.Table | None:
    """The lines as one table; None when Arrow cannot decode them one row per line.

    A line that is not one JSON object, a value of another type than
    `schema` says, a key given twice, text that is not UTF-8, or a NUL or
    surrogate escape (text the warehouse cannot store) makes the whole block
    one for the record path.
    """
    data = b"\n".join(lines)
    # Arrow skips a byte-order mark that opens its input; the record path quarantines the line.
    if data.startswith(b"\xef\xbb\xbf") or (b"\\u" in data and _UNSAFE_ESCAPE.search(data)):
        return None
    try:
        table = pa_json.read_json(
            io.BytesIO(data),
            read_options=pa_json.ReadOptions(block_size=_JSON_BLOCK_BYTES),
            parse_options=pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer"),
        )
    except pa.ArrowInvalid:
        return None
    if table.num_rows != len(lines):  # two objects on one line
        return None
    return table.combine_chunks()


class JsonKeys:
    """Which keys a JSON line holds, where Arrow shows only a null.

    Arrow decodes an absent key and an explicit null alike; the record path
    tells them apart (an absent feature is schema drift, a null one a missing
    value). A key ``"name":`` found in a line's text is surely the features
    object's when no other object of the block has a key of that name and the
    line holds no escape (which could spell a key differently). Only the lines
    with a null are searched.
    """

    def __init__(self, lines: list[bytes], schema: pa.Schema):
        self.lines = lines
        self.elsewhere = _names_outside_features(schema)

    def absent(self, name: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Among `rows` (where the value is null): which surely lack the key, and which are unsure."""
        absent, unsure = np.zeros(len(rows), dtype=bool), np.zeros(len(rows), dtype=bool)
        if not rows.any():
            return absent, unsure
        if name in self.elsewhere:
            return absent, rows.copy()
        picked = np.flatnonzero(rows)
        key = re.compile(re.escape(json.dumps(name).encode()) + rb"\s*:")
        for row in picked.tolist():
            line = self.lines[row]
            found = len(key.findall(line))
            if b"\\" in line or found > 1:
                unsure[row] = True
            elif found == 0:
                absent[row] = True
        return absent, unsure

    def no_extra(self, name: str, rows: np.ndarray) -> np.ndarray:
        """Among `rows` (where an unnamed feature is null): which surely lack its key (a null one is still kept)."""
        absent, _ = self.absent(name, rows)
        return absent


def _names_outside_features(schema: pa.Schema) -> set[str]:
    names: set[str] = set()
    for field in schema:
        names.add(field.name)
        if field.name == "features" and pa.types.is_struct(field.type):
            for child in field.type:
                names |= _struct_names(child.type)
        else:
            names |= _struct_names(field.type)
    return names


def _struct_names(kind: pa.DataType) -> set[str]:
    if pa.types.is_struct(kind):
        return {child.name for child in kind} | {n for child in kind for n in _struct_names(child.type)}
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _struct_names(kind.value_type)
    return set()


class StructKeys:
    """Key presence in Parquet: a struct's field is on every row, null or not; a field it lacks is absent."""

    def absent(self, name: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(len(rows), dtype=bool), np.zeros(len(rows), dtype=bool)

    def no_extra(self, name: str, rows: np.ndarray) -> np.ndarray:
        # The record path keeps an unnamed feature of a Parquet row only when it is not null.
        return rows


# ---------------------------------------------------------------- column rules


def _column(columns: dict[str, pa.Array], name: str, rows: int) -> pa.Array:
    """A field's column; a field no record has is all null."""
    return columns.get(name, pa.nulls(rows))


def _mask(array: pa.Array) -> np.ndarray:
    """A boolean column as numpy, null as False: its bits unpacked at once, a twentieth of `to_numpy`'s time."""
    if array.null_count:
        array = pc.fill_null(array, False)
    if not len(array):
        return np.zeros(0, dtype=bool)
    bits = np.frombuffer(array.buffers()[1], dtype=np.uint8)
    return np.unpackbits(bits, count=array.offset + len(array), bitorder="little")[array.offset:].view(bool)


def _nulls(array: pa.Array) -> np.ndarray:
    """Where a column is null."""
    if not array.null_count:
        return np.zeros(len(array), dtype=bool)
    return _mask(pc.is_null(array))


def _doubles(array: pa.Array) -> np.ndarray:
    """A float64 column's values as numpy, without a copy; what a null row holds is undefined."""
    if array.null_count == len(array):
        return np.zeros(len(array))
    return np.frombuffer(array.buffers()[1], dtype=np.float64, count=len(array), offset=array.offset * 8)


def _text(array: pa.Array) -> pa.Array | None:
    """A column of text as pa.string() (validated UTF-8), an all-null column as null text, else None."""
    if pa.types.is_null(array.type):
        return pa.nulls(len(array), pa.string())
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        return None
    # Readers do not check UTF-8 (Parquet's string columns are any bytes); ASCII needs no check per value.
    if _value_bytes(array).max(initial=0) >= 0x80:
        try:
            array.validate(full=True)
        except pa.ArrowInvalid:
            return None
    return array if array.type == pa.string() else array.cast(pa.string())


def _offsets(array: pa.Array) -> np.ndarray:
    """A string or binary column's value offsets (one more than its length), without a copy."""
    width = np.int64 if pa.types.is_large_string(array.type) or pa.types.is_large_binary(array.type) else np.int32
    return np.frombuffer(array.buffers()[1], dtype=width, count=len(array) + 1, offset=array.offset * width().itemsize)


def _value_bytes(array: pa.Array) -> np.ndarray:
    """The bytes of a string column's values, end to end, without a copy."""
    data = array.buffers()[2]
    if data is None or not len(array):
        return np.zeros(0, dtype=np.uint8)
    first, last = _offsets(array)[[0, -1]]
    return np.frombuffer(data, dtype=np.uint8, count=int(last - first), offset=int(first))


def longest_bytes(array: pa.Array) -> int:
    """An upper bound of the bytes of a string or binary column's longest value (a null may hold bytes too)."""
    return int(np.diff(_offsets(array)).max()) if len(array) else 0


def holds_zero_byte(array: pa.Array) -> bool:
    """Whether the bytes of a string column's values hold a zero: one scan of its data, not one per value."""
    values = _value_bytes(array)
    return bool(np.count_nonzero(values) != len(values))


_MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))
_SEED = np.uint64(0x9E3779B97F4A7C15)


def _mixed(state: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: every bit of the input moves about half the bits of the output."""
    state = (state ^ (state >> np.uint64(30))) * _MIX[0]
    state = (state ^ (state >> np.uint64(27))) * _MIX[1]
    return state ^ (state >> np.uint64(31))


def text_hashes(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit hash of each text value's bytes, the same for the same text in any block.

    The values are laid out as rows of 8-byte words and mixed word by word in
    numpy: a quarter of the time of hashing them as Python strings.
    """
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks else pa.array([], pa.string())
    lengths = pc.binary_length(array).to_numpy(zero_copy_only=False).astype(np.int64)
    state = _mixed(lengths.astype(np.uint64) + _SEED)
    if not len(array):
        return state
    width = int(-(-lengths.max() // 8))
    words = _padded_words(array, lengths, width)
    used = -(-lengths // 8)
    for word in range(width):
        state = np.where(word < used, _mixed(state ^ words[:, word]), state)
    return state


def _padded_words(array: pa.Array, lengths: np.ndarray, width: int) -> np.ndarray:
    """Each value's bytes, zero-padded to `width` little-endian 8-byte words: one row per value."""
    # Padding by characters gives every value the same byte length when the text is ASCII, as ids are.
    padded = pc.utf8_rpad(array.cast(pa.string()), width * 8, "\x00")
    _, offsets, data = padded.buffers()
    offsets = np.frombuffer(offsets, dtype=np.int32)[padded.offset: padded.offset + len(padded) + 1]
    if offsets[-1] - offsets[0] == len(padded) * width * 8:
        raw = np.frombuffer(data, dtype=np.uint8, count=int(offsets[-1] - offsets[0]), offset=int(offsets[0]))
        return raw.copy().view("<u8").reshape(len(padded), width)
    _, offsets, data = array.cast(pa.large_string()).buffers()
    offsets = np.frombuffer(offsets, dtype=np.int64)[array.offset: array.offset + len(array) + 1]
    span = np.arange(width * 8)
    inside = span < lengths[:, None]
    grid = np.zeros((len(array), width * 8), dtype=np.uint8)
    grid[inside] = np.frombuffer(data, dtype=np.uint8)[(offsets[:-1, None] + span)[inside]]
    return grid.view("<u8")


def _clean_text(array: pa.Array, limit: int) -> np.ndarray:
    """Rows whose text (or null) is storable and at most `limit` characters."""
    ok = np.ones(len(array), dtype=bool)
    # A value has no more characters than bytes: most columns are decided by their offsets alone.
    if longest_bytes(array) > limit:
        ok &= _mask(pc.or_kleene(pc.is_null(array), pc.less_equal(pc.utf8_length(array), limit)))
    if holds_zero_byte(array):
        ok &= ~_mask(pc.match_substring(array, "\x00"))
    return ok


def _number(array: pa.Array) -> tuple[pa.Array, np.ndarray] | None:
    """A numeric column as float64 and its rows that are null or finite; None for another type."""
    if pa.types.is_null(array.type):
        return pa.nulls(len(array), pa.float64()), np.ones(len(array), dtype=bool)
    if not (pa.types.is_integer(array.type) or pa.types.is_floating(array.type)):
        return None
    values = array.cast(pa.float64(), safe=False)
    return values, np.isfinite(_doubles(values)) | _nulls(values)


def _canonical(array: pa.Array) -> tuple[pa.Array, pa.Array, np.ndarray] | None:
    """Text as the record path writes labels and predictions (1, 1.0 and "1" read "1"), their numeric
    value (null for text), and the rows where both are sure; None for a column of another type."""
    rows = len(array)
    if pa.types.is_null(array.type):
        return pa.nulls(rows, pa.string()), pa.nulls(rows, pa.float64()), np.ones(rows, dtype=bool)
    text = _text(array) if not (pa.types.is_integer(array.type) or pa.types.is_floating(array.type)) else None
    if text is not None:
        return text, pa.nulls(rows, pa.float64()), np.ones(rows, dtype=bool)
    if pa.types.is_integer(array.type):
        return _integer_text(array), array.cast(pa.float64(), safe=False), np.ones(rows, dtype=bool)
    if not pa.types.is_floating(array.type):
        return None
    values = array.cast(pa.float64())
    finite = _mask(pc.is_finite(values))
    number = values.to_numpy(zero_copy_only=False)
    magnitude = np.abs(np.where(finite, number, 0.0))
    whole = finite & (number == np.round(number))
    integral = whole & (magnitude < _EXACT_INTEGER)
    as_int = _integer_text(pc.cast(pc.if_else(pa.array(integral), values, 0.0), pa.int64()))
    # Text of the rows that are not sure (not finite, huge integers) is never staged: null will do.
    text = pc.if_else(pa.array(integral), as_int, pa.scalar(None, pa.string()))
    fractions = finite & ~whole
    if fractions.any():  # labels and class predictions are mostly whole: their doubles need no writing
        written = pc.cast(values, pa.string())
        fixed = fractions & (magnitude >= _FIXED_NOTATION[0]) & (magnitude < _FIXED_NOTATION[1])
        fixed &= ~_mask(pc.match_substring(written, "e"))
        text = pc.if_else(pa.array(integral), as_int, written)
        # Fractions neither rule covers (tiny or huge) Python writes, value by value.
        others = np.flatnonzero(fractions & ~fixed)
        if len(others):
            text = _put(text, others, pa.array([str(v) for v in number[others].tolist()], pa.string()))
    # A huge integer's digits may be those of a JSON literal that no double holds: the record path has them.
    unsure = whole & ~integral
    valid = _mask(pc.is_valid(values))
    return text, values, (finite & ~unsure) | ~valid


def _integer_text(integers: pa.Array) -> pa.Array:
    """Integers as text; a column of few distinct values (class labels) writes each of them once."""
    encoded = pc.dictionary_encode(integers)
    if len(encoded.dictionary) * _FEW_DISTINCT > len(integers):
        return integers.cast(pa.string())
    return encoded.dictionary.cast(pa.string()).take(encoded.indices)


def _put(array: pa.Array, rows: np.ndarray, values: pa.Array) -> pa.Array:
    """`array` with `values` at `rows` (ascending)."""
    chosen = np.zeros(len(array), dtype=bool)
    chosen[rows] = True
    return pc.replace_with_mask(array, pa.array(chosen), values)


def _timestamps(array: pa.Array) -> tuple[pa.Array, np.ndarray] | None:
    """Times as UTC microseconds and the rows where the reading is sure; None when the column is not one."""
    if pa.types.is_timestamp(array.type):
        if array.type.unit not in _TIMESTAMP_UNITS:
            return None
        per_second = _TIMESTAMP_UNITS[array.type.unit]
        bounds = pc.min_max(array.cast(pa.int64()))
        first, last = bounds["min"].as_py(), bounds["max"].as_py()
        if first is not None and not (_FIRST_SECOND * per_second <= first and last <= _LAST_SECOND * per_second):
            return None
        utc = array.cast(pa.timestamp(array.type.unit, tz="UTC")).cast(pa.timestamp("us", tz="UTC"))
        return utc, _mask(pc.is_valid(utc))
    text = _text(array)
    if text is None:
        return None
    strict = pc.match_substring_regex(text, _STRICT_TIMESTAMP)
    try:
        parsed = pc.cast(pc.if_else(strict, text, pa.scalar(None, pa.string())), pa.timestamp("us", tz="UTC"))
    except pa.ArrowInvalid:  # a day that does not exist, e.g. 30 February
        return None
    return parsed, _mask(strict)


def _moment(moment: datetime) -> pa.Scalar:
    return pa.scalar(moment.astimezone(UTC), pa.timestamp("us", tz="UTC"))


def _within(times: pa.Array, first: datetime, last: datetime) -> np.ndarray:
    """Rows whose time lies in [first, last)."""
    return _mask(pc.and_(pc.greater_equal(times, _moment(first)), pc.less(times, _moment(last))))


def _day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, datetime.fromordinal(day.toordinal() + 1).replace(tzinfo=UTC)


def _columns(block: pa.Table | pa.RecordBatch) -> dict[str, pa.Array]:
    if isinstance(block, pa.Table):
        block = block.combine_chunks()
        return {name: block.column(name).chunk(0) if block.column(name).num_chunks else pa.nulls(0)
                for name in block.column_names}
    return {name: block.column(name) for name in block.schema.names}


def _struct(column: pa.Array) -> dict[str, pa.Array] | None:
    """The fields of a struct column (nulls of a null row applied); None when it is not a struct."""
    if pa.types.is_null(column.type):
        return {}
    if not pa.types.is_struct(column.type):
        return None
    return {field.name: child for field, child in zip(column.type, column.flatten(), strict=True)}


def _missing_names(absent: dict[str, np.ndarray], names: list[str], rows: int) -> pa.Array:
    """Per row, the comma-separated names absent (null when none), from one mask per name."""
    if not any(mask.any() for mask in absent.values()):
        return pa.nulls(rows, pa.string())
    matrix = np.column_stack([absent.get(name, np.zeros(rows, dtype=bool)) for name in names])
    patterns, which = np.unique(matrix, axis=0, return_inverse=True)
    spelled = [",".join(n for n, flag in zip(names, pattern, strict=True) if flag) or None for pattern in patterns]
    return pa.array(spelled, pa.string()).take(pa.array(which.ravel()))


# ---------------------------------------------------------------- predictions


def predictions(
    block: pa.Table | pa.RecordBatch, model: ModelConfig, day: date, start: datetime, end: datetime,
    source_file: str, line_numbers: np.ndarray, keys: JsonKeys | StructKeys,
) -> FastRows | None:
    """The prediction rows of a block that surely meet the contract (see the module's docstring)."""
    rows = block.num_rows
    columns = _columns(block)
    if rows == 0 or "features" not in columns:
        return None
    sure = np.ones(rows, dtype=bool)
    staged: dict[str, pa.Array] = {}
    for name, limit in (("request_id", batch.MAX_TEXT_CHARS), ("model_name", None),
                        ("model_version", batch.MAX_TEXT_CHARS), ("status", batch.MAX_TEXT_CHARS),
                        ("error", batch.MAX_ERROR_CHARS)):
        text = _text(_column(columns, name, rows))
        if text is None:
            return None
        if limit is not None:  # model_name must equal the model's own
            sure &= _clean_text(text, limit)
        staged[name] = text
    for name in ("request_id", "model_name", "model_version", "status"):
        sure &= _mask(pc.is_valid(staged[name]))
    sure &= _mask(pc.equal(staged["model_name"], model.name))
    is_ok, is_error = _mask(pc.equal(staged["status"], "ok")), _mask(pc.equal(staged["status"], "error"))
    sure &= is_ok | is_error
    sure &= ~is_error | _mask(pc.is_valid(staged["error"]))

    timestamps = _timestamps(_column(columns, "timestamp", rows))
    if timestamps is None:
        return None
    staged["timestamp"], readable = timestamps
    sure &= readable & _within(staged["timestamp"], *_day_bounds(day))

    raw_prediction = _column(columns, "prediction", rows)
    if model.task == "regression" and _number(raw_prediction) is None:
        return None
    prediction = _canonical(raw_prediction)
    if prediction is None:
        return None
    staged["prediction"], staged["prediction_value"], exact = prediction
    sure &= exact & _clean_text(staged["prediction"], batch.MAX_TEXT_CHARS)
    sure &= ~is_ok | _mask(pc.is_valid(staged["prediction"]))
    for name in ("score", "latency_ms"):
        number = _number(_column(columns, name, rows))
        if number is None:
            return None
        staged[name], finite = number
        sure &= finite
    score, no_score = _doubles(staged["score"]), _nulls(staged["score"])
    sure &= no_score | ((score >= 0.0) & (score <= 1.0))
    if model.task == "binary_classification":
        sure &= ~is_ok | ~no_score
    sure &= ~_nulls(staged["latency_ms"]) & (_doubles(staged["latency_ms"]) >= 0.0)

    features = _struct(columns["features"])
    if features is None:
        return None
    sure &= _mask(pc.is_valid(columns["features"]))
    absent: dict[str, np.ndarray] = {}
    for feature in model.features:
        column = batch.feature_column(feature.name)
        values = features.get(feature.name)
        if values is None:  # no record of the block names it
            absent[feature.name] = ~is_error
            values = pa.nulls(rows)
        else:
            missing, unsure = keys.absent(feature.name, _nulls(values))
            absent[feature.name] = missing & ~is_error
            sure &= ~unsure
        if feature.type == "numeric":
            number = _number(values)
            if number is None:
                return None
            staged[column], finite = number
            sure &= finite
        elif feature.type == "boolean":
            if not (pa.types.is_boolean(values.type) or pa.types.is_null(values.type)):
                return None
            staged[column] = values.cast(pa.bool_())
        else:
            category = _canonical(values)
            if category is None:
                return None
            staged[column], _, exact = category
            sure &= exact & _clean_text(staged[column], batch.MAX_TEXT_CHARS)
    for name, values in features.items():
        if name in {f.name for f in model.features}:
            continue
        # A feature the models file does not name is kept as JSON text: the record path writes it.
        sure &= keys.no_extra(name, _nulls(values))
    staged["extra_features"] = pa.nulls(rows, pa.string())
    staged["missing_features"] = _missing_names(absent, [f.name for f in model.features], rows)

    context = _struct(_column(columns, "context", rows))
    if context is None:
        return None
    for key in batch.context_keys(model):
        values = _text(context.get(key, pa.nulls(rows)))
        if values is None:
            return None
        sure &= _clean_text(values, batch.MAX_TEXT_CHARS)
        staged[batch.context_column(key)] = values

    in_interval = _within(staged["timestamp"], start, end)
    keep = sure & in_interval
    staged["source_file"] = _repeated(source_file, rows)
    staged["line_number"] = pa.array(line_numbers, pa.int64())
    schema = batch.prediction_schema(model)
    table = pa.Table.from_arrays([staged[name] for name in schema.names], schema=_nullable(schema))
    return FastRows(_kept(table, keep).cast(schema), ~sure, int((sure & ~in_interval).sum()))


@functools.lru_cache(maxsize=4)
def _repeated(text: str, rows: int) -> pa.Array:
    """`text` on every row; the blocks of one file share it (Arrow arrays are immutable)."""
    return pa.repeat(pa.scalar(text, pa.string()), rows)


def _kept(table: pa.Table, keep: np.ndarray) -> pa.Table:
    """The rows of `table` where `keep` holds; most blocks keep every row, and a filter would copy them all."""
    return table if keep.all() else table.filter(pa.array(keep))


def _nullable(schema: pa.Schema) -> pa.Schema:
    """`schema` with every field nullable: rows the filter drops may hold nulls in required fields."""
    return pa.schema([field.with_nullable(True) for field in schema])


# ---------------------------------------------------------------- feedback


def feedback(
    block: pa.Table | pa.RecordBatch, day: date, start: datetime, end: datetime, known_before: datetime,
    source_file: str, line_numbers: np.ndarray,
) -> FastRows | None:
    """The feedback rows of a block that surely meet the contract; labels not known by `known_before`
    count as outside the interval, as in `logs.normalize_feedback`."""
    rows = block.num_rows
    columns = _columns(block)
    if rows == 0:
        return None
    request_id = _text(_column(columns, "request_id", rows))
    label = _canonical(_column(columns, "label", rows))
    timestamps = _timestamps(_column(columns, "label_timestamp", rows))
    if request_id is None or label is None or timestamps is None:
        return None
    text, value, exact = label
    label_timestamp, readable = timestamps
    sure = _mask(pc.is_valid(request_id)) & _clean_text(request_id, batch.MAX_TEXT_CHARS)
    sure &= exact & _mask(pc.is_valid(text)) & _clean_text(text, batch.MAX_TEXT_CHARS)
    sure &= readable & _within(label_timestamp, *_day_bounds(day))
    known = _mask(pc.less(label_timestamp, _moment(known_before)))
    staged = {
        "request_id": request_id, "label": text, "label_value": value, "label_timestamp": label_timestamp,
        "source_file": _repeated(source_file, rows),
        "line_number": pa.array(line_numbers, pa.int64()),
    }
    schema = batch.FEEDBACK_SCHEMA
    table = pa.Table.from_arrays([staged[name] for name in schema.names], schema=_nullable(schema))
    return FastRows(_kept(table, sure & known).cast(schema), ~sure, int((sure & ~known).sum()))


def concatenated(tables: Iterable[pa.Table], schema: pa.Schema) -> pa.Table:
    """Tables of one block in line order (each table's rows are in line order already)."""
    tables = [table for table in tables if table.num_rows]
    if not tables:
        return schema.empty_table()
    table = pa.concat_tables([table.cast(schema) for table in tables])
    return table if len(tables) == 1 else table.sort_by("line_number")

"""The staged batch's shape: the columns in which one interval's logs travel between tasks.

`modelwatch.staging` owns the folders and files these schemas are written to;
this module says what their rows hold, and the limits and text rule every
value meets before it is staged.
"""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.parquet as pq

from modelwatch.config import ModelConfig

ALL = "all"  # the model_version / segment value of an overall (unsplit) row

FEATURE_PREFIX = "feature__"
CONTEXT_PREFIX = "context__"

PREDICTION_BASE_FIELDS = [
    pa.field("request_id", pa.string(), nullable=False),
    pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("model_name", pa.string(), nullable=False),
    pa.field("model_version", pa.string(), nullable=False),
    pa.field("status", pa.string(), nullable=False),  # "ok" | "error"
    pa.field("error", pa.string()),
    pa.field("prediction", pa.string()),  # canonical text: 1 and 1.0 both read "1"
    pa.field("prediction_value", pa.float64()),  # numeric prediction, null if not a number
    pa.field("score", pa.float64()),
    pa.field("latency_ms", pa.float64(), nullable=False),
    pa.field("extra_features", pa.string()),  # JSON object of features the config does not name
    pa.field("missing_features", pa.string()),  # comma-separated configured features absent
    pa.field("source_file", pa.string(), nullable=False),
    pa.field("line_number", pa.int64(), nullable=False),
]

FEEDBACK_SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("label", pa.string(), nullable=False),  # canonical text, as `prediction`
        pa.field("label_value", pa.float64()),
        pa.field("label_timestamp", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("line_number", pa.int64(), nullable=False),
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("kind", pa.string(), nullable=False),  # "predictions" | "feedback"
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("line_number", pa.int64(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("raw", pa.string()),
    ]
)

RAW_TEXT_LIMIT = 2000

# Bounds on what one record may bring into a run (docs/log-contract.md, "Bad input").
# A value over its bound is quarantined as ``value_too_long:<field>``, never cut;
# lengths are in characters.
MAX_TEXT_CHARS = 256
"""request_id, model_version, status, prediction and label text, categories, context values."""
MAX_ERROR_CHARS = 1024
"""The `error` of a failed request."""
MAX_EXTRA_FEATURES_CHARS = 4096
"""The JSON object of the features the models file does not name (``extra_features``)."""
MAX_RECORD_BYTES = 1 << 20
"""A longer JSONL line is quarantined as ``record_too_large`` without being read whole or parsed."""
MAX_JSON_DEPTH = 64
"""Levels of nesting allowed in the unnamed features kept as JSON (``wrong_type:features`` beyond)."""
MAX_CHUNK_BYTES = 64 << 20
"""Bytes of JSONL lines read into one chunk, however few lines that is."""

_UNSAFE_TEXT = re.compile("[\x00\ud800-\udfff]")


def is_safe_text(text: str) -> bool:
    """Whether `text` can be stored as it is: no NUL, no unpaired surrogate (see `safe_text`)."""
    return "\x00" not in text and (text.isascii() or _UNSAFE_TEXT.search(text) is None)


def _escape_unsafe(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def safe_text(text: str) -> str:
    """`text` with NUL and unpaired surrogates written as JSON escapes, everything else unchanged.

    PostgreSQL refuses NUL in text, and a lone surrogate cannot be encoded as
    UTF-8; text kept for reference (raw records, file names) is cleaned by this
    one rule: NUL becomes the six characters ``\\u0000`` and each surrogate code
    point its ``\\udXXX`` escape, as `json.dumps` writes them. A Python string
    holds a valid surrogate pair as one code point, so every surrogate left in
    it is unpaired.

    Parameters
    ----------
    text : str
        Any text, e.g. a raw log line or a listed file name.

    Returns
    -------
    str
        `text` itself when it holds neither, else the escaped copy; it always
        encodes as UTF-8 and holds no NUL.
    """
    if is_safe_text(text):
        return text
    return _UNSAFE_TEXT.sub(_escape_unsafe, text)


_ARROW_FEATURE_TYPES = {
    "numeric": pa.float64(),
    "categorical": pa.string(),
    "boolean": pa.bool_(),
}


def feature_column(name: str) -> str:
    return FEATURE_PREFIX + name


def context_column(key: str) -> str:
    return CONTEXT_PREFIX + key


def context_keys(model: ModelConfig) -> list[str]:
    """Segment keys that come from `context` (those not naming a feature)."""
    feature_names = {f.name for f in model.features}
    return [key for key in model.segments if key not in feature_names]


def segment_column(model: ModelConfig, key: str) -> str:
    """The staged column holding a segment key: a feature, else a context entry."""
    if key in {f.name for f in model.features}:
        return feature_column(key)
    return context_column(key)


def prediction_schema(model: ModelConfig) -> pa.Schema:
    """Staged prediction columns for one model: fixed fields, features, context keys."""
    fields = list(PREDICTION_BASE_FIELDS)
    fields += [pa.field(feature_column(f.name), _ARROW_FEATURE_TYPES[f.type]) for f in model.features]
    fields += [pa.field(context_column(k), pa.string()) for k in context_keys(model)]
    return pa.schema(fields)


def streaming_parquet(source, **kwargs) -> pq.ParquetFile:
    """A Parquet file opened for reading batch by batch.

    pyarrow's pre-buffering keeps every column chunk it has fetched until the
    file is closed, so a batch-by-batch read of a 10M-row file would hold the
    whole file in memory; it is switched off here.
    """
    return pq.ParquetFile(source, pre_buffer=False, **kwargs)


def return_freed_memory(within_ms: int = 0) -> None:
    """Make Arrow hand freed buffers back to the operating system within `within_ms`.

    Arrow's default allocator keeps freed pages for reuse; reading a 10M-row
    interval column by column, that retained memory more than doubled the
    peak RSS of a task, so the stages that read a whole interval release them
    at once (0). Extract holds one block at a time: keeping freed pages for a
    second there costs a block's worth of memory and saves the page faults of
    every new block, a fifth of its time. Builds of pyarrow without jemalloc
    keep their default.
    """
    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
        pa.jemalloc_set_decay_ms(within_ms)
    except NotImplementedError:
        pass

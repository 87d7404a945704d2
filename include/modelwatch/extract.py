"""Extract one interval's logs into a staged batch (see `modelwatch.batch`).

Two passes keep memory flat however many files a day holds:

1. every chunk of every file is checked and appended to candidate files, with
   a content hash and a row number per record;
2. duplicates are resolved from the request ids and hashes alone: identical
   copies are kept once, conflicting ones are all quarantined; feedback keeps
   the latest label per request id.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TypeVar

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from modelwatch import batch, logs
from modelwatch.config import ModelConfig

log = logging.getLogger(__name__)

PREDICTIONS = "predictions.parquet"
FEEDBACK = "feedback.parquet"
QUARANTINE = "quarantine.parquet"
MANIFEST = "manifest.json"
_ROW = "_row"
_HASH = "_hash"
_ID = "_id_hash"

T = TypeVar("T")


@dataclass
class Manifest:
    """Counts and findings of one extract; small enough for XCom."""

    model_name: str
    interval_start: str
    interval_end: str
    folder: str
    rows_read: int = 0
    rows_valid: int = 0
    rows_quarantined: int = 0
    duplicates_dropped: int = 0
    conflicting_duplicates: int = 0
    rows_outside_interval: int = 0
    labels_read: int = 0
    labels_kept: int = 0
    label_corrections: int = 0
    labels_quarantined: int = 0
    label_window_start: str = ""
    files_read: int = 0
    damaged_files: list[dict[str, str]] = field(default_factory=list)
    missing_partitions: list[str] = field(default_factory=list)
    empty_partitions: list[str] = field(default_factory=list)
    ignored_files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


class _ParquetSink:
    """Append pandas frames to one Parquet file on any fsspec filesystem."""

    def __init__(self, url: str, schema: pa.Schema):
        self.url = url
        self.schema = schema
        self.rows = 0
        fs, path = fsspec.core.url_to_fs(url)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        self._handle = fs.open(path, "wb")
        self._writer = pq.ParquetWriter(self._handle, schema, compression="zstd")

    def write(self, frame: pd.DataFrame | pa.Table) -> None:
        if len(frame) == 0:
            return
        table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(
            frame, schema=self.schema, preserve_index=False, safe=False
        )
        self._writer.write_table(table)
        self.rows += len(frame)

    def close(self) -> None:
        self._writer.close()
        self._handle.close()


def _with_row_and_hash(frame: pd.DataFrame, first_row: int, content: list[str]) -> pd.DataFrame:
    """Add a dense row number, a hash of the request id and a hash of the record's content."""
    frame = frame.copy()
    frame[_ROW] = np.arange(first_row, first_row + len(frame), dtype=np.int64)
    # Mostly distinct values: hashing them directly beats factorizing them first.
    frame[_ID] = pd.util.hash_array(frame["request_id"].to_numpy(dtype=object), categorize=False)
    frame[_HASH] = pd.util.hash_pandas_object(frame[content], index=False, categorize=False).to_numpy()
    return frame


def _candidate_schema(schema: pa.Schema) -> pa.Schema:
    return (
        schema.append(pa.field(_ROW, pa.int64()))
        .append(pa.field(_ID, pa.uint64()))
        .append(pa.field(_HASH, pa.uint64()))
    )


def _remove(url: str) -> None:
    fs, path = fsspec.core.url_to_fs(url)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def _duplicate_masks(candidates: str) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Which candidate rows to keep and which to quarantine, from three integer columns.

    Rows are grouped by request-id hash: a group with one content hash keeps its
    first row (the rest are identical copies); a group with several content hashes
    is a conflict and every row of it is quarantined. Working on hashes keeps a
    10M-row day to a few hundred MB. Two different request ids sharing a 64-bit
    hash would be quarantined as a conflict, never silently merged.
    """
    keys = pq.read_table(candidates, columns=[_ROW, _ID, _HASH], filesystem=_fs(candidates))
    rows, ids, hashes = (keys[c].to_numpy() for c in (_ROW, _ID, _HASH))
    del keys
    order = np.lexsort((rows, hashes, ids))
    ids, hashes, rows = ids[order], hashes[order], rows[order]
    del order
    new_id = np.ones(len(ids), dtype=bool)
    new_id[1:] = ids[1:] != ids[:-1]
    new_hash = new_id.copy()
    new_hash[1:] |= hashes[1:] != hashes[:-1]
    group = np.cumsum(new_id) - 1
    conflicting = (np.bincount(group, weights=new_hash) > 1)[group] if len(group) else new_id
    keep = np.zeros(len(rows), dtype=bool)
    keep[rows[new_id & ~conflicting]] = True
    quarantine = np.zeros(len(rows), dtype=bool)
    quarantine[rows[conflicting]] = True
    dropped = int((~conflicting).sum() - (new_id & ~conflicting).sum())
    return keep, quarantine, dropped, int((new_id & conflicting).sum())


def _dedupe_predictions(candidates: str, out: _ParquetSink, quarantine: _ParquetSink) -> tuple[int, int]:
    """Keep identical copies once; quarantine every copy of a conflicting request id.

    Kept rows are written answered ones first, then errors (see `modelwatch.batch`).
    """
    keep, conflicting, dropped, conflicts = _duplicate_masks(candidates)
    for answered in (True, False):
        for table, kept in _kept_rows(candidates, keep, answered):
            out.write(kept.select(out.schema.names).cast(out.schema))
            if answered:
                _quarantine_conflicts(table.filter(pa.array(conflicting[table[_ROW].to_numpy()])), quarantine)
    return dropped, conflicts


def _kept_rows(candidates: str, keep: np.ndarray, answered: bool) -> Iterator[tuple[pa.Table, pa.Table]]:
    """Each batch of candidates, and its kept rows whose status is (or is not) ``ok``."""
    source = batch.streaming_parquet(candidates, filesystem=_fs(candidates))
    for record_batch in source.iter_batches(batch_size=logs.CHUNK_ROWS):
        table = pa.Table.from_batches([record_batch])
        is_ok = pc.equal(table["status"], "ok")
        wanted = pc.and_(pa.array(keep[table[_ROW].to_numpy()]), is_ok if answered else pc.invert(is_ok))
        yield table, table.filter(wanted)


def _quarantine_conflicts(bad: pa.Table, quarantine: _ParquetSink) -> None:
    if not bad.num_rows:
        return
    content = [n for n in bad.schema.names if n not in ("source_file", "line_number", _ROW, _ID, _HASH)]
    quarantine.write(
        pd.DataFrame(
            {
                "kind": "predictions",
                "source_file": bad["source_file"].to_pylist(),
                "line_number": bad["line_number"].to_pylist(),
                "reason": "conflicting_duplicate",
                "raw": [json.dumps(r, default=str, sort_keys=True) for r in bad.select(content).to_pylist()],
            }
        )
    )


def _latest_labels(candidates: str, out: _ParquetSink) -> int:
    """Keep the latest label per request id (later files win ties); return corrections."""
    table = pq.read_table(candidates, filesystem=_fs(candidates))
    if table.num_rows == 0:
        return 0
    ordered = table.sort_by([("request_id", "ascending"), ("label_timestamp", "ascending"), (_ROW, "ascending")])
    ids = ordered["request_id"].combine_chunks()
    is_last = np.ones(len(ids), dtype=bool)
    if len(ids) > 1:
        is_last[:-1] = pc.not_equal(ids.slice(0, len(ids) - 1), ids.slice(1)).to_numpy(zero_copy_only=False)
    latest = ordered.filter(pa.array(is_last))
    out.write(latest.select(out.schema.names).cast(out.schema))
    return table.num_rows - latest.num_rows


def _fs(url: str) -> fsspec.AbstractFileSystem:
    return fsspec.core.url_to_fs(url)[0]


def _path(url: str) -> str:
    return fsspec.core.url_to_fs(url)[1]


def label_window_start(model: ModelConfig, start: datetime) -> datetime:
    """Labels for the interval and the K earlier ones it recomputes may sit this far back."""
    return start - model.interval_length * model.label_maturity_intervals


def extract_interval(model: ModelConfig, start: datetime, end: datetime, staging_url: str) -> Manifest:
    """Stage the interval's predictions, feedback and quarantine; return the manifest.

    Predictions are those with `start <= timestamp < end`. Feedback covers labels
    known before `end` from partitions back to `label_window_start`, so that the
    interval's metrics and those of the K intervals before it can be recomputed.
    Re-running replaces the folder.
    """
    folder = batch.interval_folder(staging_url, model.name, start, end)
    _remove(folder)
    manifest = Manifest(model.name, start.isoformat(), end.isoformat(), folder)
    quarantine = _ParquetSink(f"{folder}/{QUARANTINE}", batch.QUARANTINE_SCHEMA)
    try:
        _extract_predictions(model, start, end, folder, quarantine, manifest)
        _extract_feedback(model, start, end, folder, quarantine, manifest)
    finally:
        quarantine.close()
    fs, path = fsspec.core.url_to_fs(f"{folder}/{MANIFEST}")
    with fs.open(path, "w") as handle:
        json.dump(manifest.to_dict(), handle, indent=2)
    log.info(
        "%s %s..%s: read %d, kept %d, quarantined %d, duplicates %d, labels %d",
        model.name, start, end, manifest.rows_read, manifest.rows_valid,
        manifest.rows_quarantined, manifest.duplicates_dropped, manifest.labels_kept,
    )
    return manifest


def _extract_predictions(model, start, end, folder, quarantine, manifest) -> None:
    schema = batch.prediction_schema(model)
    content = [n for n in schema.names if n not in ("source_file", "line_number")]
    candidates_url = f"{folder}/_candidates_predictions.parquet"
    candidates = _ParquetSink(candidates_url, _candidate_schema(schema))
    stats = logs.ReadStats()
    quarantined_before = quarantine.rows
    try:
        for day, chunk in logs.iter_partition_chunks(model, "predictions", logs.partition_days(start, end), stats):
            normalized = logs.normalize_predictions(chunk, model, day, start, end)
            candidates.write(_with_row_and_hash(normalized.rows, candidates.rows, content))
            quarantine.write(normalized.quarantined)
            stats.outside_interval += normalized.outside_interval
    finally:
        candidates.close()
    predictions = _ParquetSink(f"{folder}/{PREDICTIONS}", schema)
    try:
        manifest.duplicates_dropped, conflicts = _dedupe_predictions(candidates_url, predictions, quarantine)
    finally:
        predictions.close()
    _remove(candidates_url)
    manifest.rows_read = stats.records_read
    manifest.rows_valid = predictions.rows
    manifest.rows_quarantined = quarantine.rows - quarantined_before
    manifest.conflicting_duplicates = conflicts
    manifest.rows_outside_interval = stats.outside_interval
    manifest.files_read = len(stats.files_read)
    manifest.damaged_files = [{"file": d.source_file, "error": d.error} for d in stats.damaged_files]
    manifest.missing_partitions = stats.missing_partitions
    manifest.empty_partitions = stats.empty_partitions
    manifest.ignored_files = stats.ignored_files


def _extract_feedback(model, start, end, folder, quarantine, manifest) -> None:
    window_start = label_window_start(model, start)
    manifest.label_window_start = window_start.isoformat()
    candidates_url = f"{folder}/_candidates_feedback.parquet"
    candidates = _ParquetSink(candidates_url, _candidate_schema(batch.FEEDBACK_SCHEMA))
    stats = logs.ReadStats()
    quarantined_before = quarantine.rows
    try:
        for day, chunk in logs.iter_partition_chunks(model, "feedback", logs.partition_days(window_start, end), stats):
            normalized = logs.normalize_feedback(chunk, day, start, end, known_before=end)
            candidates.write(_with_row_and_hash(normalized.rows, candidates.rows, ["request_id"]))
            quarantine.write(normalized.quarantined)
    finally:
        candidates.close()
    feedback = _ParquetSink(f"{folder}/{FEEDBACK}", batch.FEEDBACK_SCHEMA)
    try:
        manifest.label_corrections = _latest_labels(candidates_url, feedback)
    finally:
        feedback.close()
    _remove(candidates_url)
    manifest.labels_read = stats.records_read
    manifest.labels_kept = feedback.rows
    manifest.labels_quarantined = quarantine.rows - quarantined_before
    manifest.damaged_files += [{"file": d.source_file, "error": d.error} for d in stats.damaged_files]
    manifest.files_read += len(stats.files_read)


def read_manifest(folder: str) -> Manifest:
    fs, path = fsspec.core.url_to_fs(f"{folder}/{MANIFEST}")
    with fs.open(path) as handle:
        return Manifest(**json.load(handle))


_NULLABLE_BOOLEAN = {pa.bool_(): pd.BooleanDtype()}
_EXHAUSTED = object()


def prefetched(items: Iterable[T]) -> Iterator[T]:
    """Yield from `items`, producing the next item in a background thread meanwhile.

    Parquet decoding releases the GIL, so reading the next chunk overlaps the
    work on the current one. At most two items are alive at a time; an
    exception raised while producing an item is raised here.
    """
    iterator = iter(items)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelwatch-prefetch") as pool:
        pending = pool.submit(next, iterator, _EXHAUSTED)
        while (item := pending.result()) is not _EXHAUSTED:
            pending = pool.submit(next, iterator, _EXHAUSTED)
            yield item


def iter_staged(
    folder: str, name: str, columns: list[str] | None = None, rows: int = 500_000
) -> Iterator[pd.DataFrame]:
    """Stream a staged file as pandas chunks of at most `rows` rows, reading ahead.

    Booleans arrive as pandas' nullable ``boolean``, not as ``object`` columns
    of Python values, so that a chunk with null flags stays vectorised.
    """

    def chunks() -> Iterator[pd.DataFrame]:
        fs, path = fsspec.core.url_to_fs(f"{folder}/{name}")
        with fs.open(path, "rb") as handle:
            for record_batch in batch.streaming_parquet(handle).iter_batches(batch_size=rows, columns=columns):
                yield record_batch.to_pandas(types_mapper=_NULLABLE_BOOLEAN.get)

    yield from prefetched(chunks())


LOW_CARDINALITY = ("model_version", "status", "error", "prediction", "label")


def read_staged(folder: str, name: str, columns: list[str] | None = None) -> pd.DataFrame:
    """A whole staged file as one pandas frame.

    Columns with few distinct values (versions, statuses, error types, class
    labels, categorical features, segment keys) arrive as pandas categoricals,
    which keeps a 10M-row interval's frame small; booleans arrive as nullable
    ``boolean``, as in `iter_staged`.
    """
    fs, path = fsspec.core.url_to_fs(f"{folder}/{name}")
    with fs.open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        names = columns if columns is not None else parquet.schema_arrow.names
        dictionary = [
            n for n in names
            if n in LOW_CARDINALITY or (n.startswith((batch.CONTEXT_PREFIX, batch.FEATURE_PREFIX))
            and pa.types.is_string(parquet.schema_arrow.field(n).type))
        ]
    with fs.open(path, "rb") as handle:
        table = pq.read_table(handle, columns=columns, read_dictionary=dictionary, pre_buffer=False)
    # Each Arrow column is released as soon as it is converted.
    return table.to_pandas(split_blocks=True, self_destruct=True, types_mapper=_NULLABLE_BOOLEAN.get)

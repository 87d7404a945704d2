"""Extract one interval's logs into a staged batch (see `modelwatch.staging`).

Memory stays flat however many files a day holds:

1. every block of every file is checked (`logs.stage_predictions`); answered
   rows go straight to the staged file, errors to a scratch file, and a hash
   of each request id is kept;
2. errors are appended after the answered rows. Only when a request id
   repeats is the day written again from the candidates: identical copies are
   kept once, conflicting ones are all quarantined (contents are compared for
   the repeated ids only). Feedback keeps the latest label per request id.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from modelwatch import batch, columnar, logs, staging
from modelwatch.config import ModelConfig
from modelwatch.staging import ParquetSink, StagedBatch

log = logging.getLogger(__name__)

_ROW = "_row"
_CANDIDATE_ANSWERED = "_candidates_answered.parquet"
_CANDIDATE_ERRORS = "_candidates_errors.arrow"
_CANDIDATE_FEEDBACK = "_candidates_feedback.arrow"


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


def _id_hashes(table: pa.Table) -> np.ndarray:
    """A 64-bit hash of each row's request id."""
    return columnar.text_hashes(table["request_id"])


def _batches_with_rows(staged: StagedBatch) -> Iterator[tuple[np.ndarray, pa.Table]]:
    """Each batch of the candidates (answered ones, then errors) and the candidate row numbers it holds."""
    first = 0
    for name in (_CANDIDATE_ANSWERED, _CANDIDATE_ERRORS):
        for record_batch in staged.iter_batches(name):
            yield np.arange(first, first + record_batch.num_rows), pa.Table.from_batches([record_batch])
            first += record_batch.num_rows


def _content_hashes(staged: StagedBatch, rows: np.ndarray, total: int, content: list[str]) -> np.ndarray:
    """A hash of the content (everything but where it was read) of each given candidate row, aligned with `rows`.

    Only rows whose request id occurs more than once are hashed: a day's
    duplicates are few, and hashing every record would cost more than reading it.
    """
    wanted = np.zeros(total, dtype=bool)
    wanted[rows] = True
    found, hashes = [], []
    for numbers, table in _batches_with_rows(staged):
        picked = wanted[numbers]
        if picked.any():
            texts = [json.dumps(r, default=str, sort_keys=True)
                     for r in table.filter(pa.array(picked)).select(content).to_pylist()]
            found.append(numbers[picked])
            hashes.append(pd.util.hash_array(np.asarray(texts, dtype=object), categorize=False))
    found_rows, found_hashes = np.concatenate(found), np.concatenate(hashes)
    return found_hashes[np.searchsorted(found_rows, rows)]


def _duplicate_masks(
    staged: StagedBatch, ids: np.ndarray, content: list[str]
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Which candidate rows to keep and which to quarantine, from request-id hashes and, for repeated
    ids only, content hashes.

    Rows are grouped by request-id hash: a group with one content hash keeps its
    first row (the rest are identical copies); a group with several content hashes
    is a conflict and every row of it is quarantined. Working on hashes keeps a
    10M-row day to a few hundred MB. Two different request ids sharing a 64-bit
    hash would be quarantined as a conflict, never silently merged.
    """
    rows = np.argsort(ids, kind="stable")
    ids = ids[rows]
    hashes = np.zeros(len(rows), dtype=np.uint64)
    repeated = np.zeros(len(rows), dtype=bool)
    repeated[1:] = ids[1:] == ids[:-1]
    repeated[:-1] |= repeated[1:]
    if repeated.any():
        hashes[repeated] = _content_hashes(staged, rows[repeated], len(rows), content)
        order = np.lexsort((rows, hashes, ids))
        ids, rows, hashes = ids[order], rows[order], hashes[order]
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


def _dedupe_predictions(staged: StagedBatch, ids: np.ndarray, out: ParquetSink,
                        quarantine: ParquetSink) -> tuple[int, int]:
    """Keep identical copies once; quarantine every copy of a conflicting request id.

    The candidates hold answered rows first, then errors, as the staged file must (see `modelwatch.batch`).
    """
    keep, conflicting, dropped, conflicts = _duplicate_masks(staged, ids, _content(out.schema))
    for numbers, table in _batches_with_rows(staged):
        out.write(table.filter(pa.array(keep[numbers])))
        _quarantine_conflicts(table.filter(pa.array(conflicting[numbers])), quarantine)
    return dropped, conflicts


def _repeats(ids: np.ndarray) -> bool:
    """Whether any request-id hash occurs twice."""
    ordered = np.sort(ids)
    return bool(len(ordered) > 1 and (ordered[1:] == ordered[:-1]).any())


def _content(schema: pa.Schema) -> list[str]:
    """The columns that make two records of one request id copies of each other: all but where they were read."""
    return [n for n in schema.names if n not in ("source_file", "line_number")]


def _quarantine_conflicts(bad: pa.Table, quarantine: ParquetSink) -> None:
    if not bad.num_rows:
        return
    quarantine.write(
        pd.DataFrame(
            {
                "kind": "predictions",
                "source_file": bad["source_file"].to_pylist(),
                "line_number": bad["line_number"].to_pylist(),
                "reason": "conflicting_duplicate",
                "raw": [
                    logs.reference_text(json.dumps(r, default=str, sort_keys=True))
                    for r in bad.select(_content(bad.schema)).to_pylist()
                ],
            }
        )
    )


def _latest_labels(staged: StagedBatch, out: ParquetSink) -> int:
    """Keep the latest label per request id (later files win ties); return corrections."""
    table = staged.read_scratch(_CANDIDATE_FEEDBACK)
    if table.num_rows == 0:
        return 0
    table = table.append_column(_ROW, pa.array(np.arange(table.num_rows)))
    ordered = table.sort_by([("request_id", "ascending"), ("label_timestamp", "ascending"), (_ROW, "ascending")])
    ids = ordered["request_id"].combine_chunks()
    is_last = np.ones(len(ids), dtype=bool)
    if len(ids) > 1:
        is_last[:-1] = pc.not_equal(ids.slice(0, len(ids) - 1), ids.slice(1)).to_numpy(zero_copy_only=False)
    latest = ordered.filter(pa.array(is_last))
    out.write(latest.select(out.schema.names).cast(out.schema))
    return table.num_rows - latest.num_rows


def label_window_start(model: ModelConfig, start: datetime) -> datetime:
    """Labels for the interval and the K earlier ones it recomputes may sit this far back."""
    return start - model.interval_length * model.label_maturity_intervals


def extract_interval(
    model: ModelConfig, start: datetime, end: datetime, staging_url: str, attempt: str | None = None
) -> Manifest:
    """Stage the interval's predictions, feedback and quarantine; publish them; return the manifest.

    Predictions are those with `start <= timestamp < end`. Feedback covers labels
    known before `end` from partitions back to `label_window_start`, so that the
    interval's metrics and those of the K intervals before it can be recomputed.
    Each call stages into a new attempt folder (`attempt` names it, see
    `staging.attempt_name`) and publishes it once every file is complete.
    """
    staged = StagedBatch.create(staging_url, model.name, start, end, attempt)
    manifest = Manifest(model.name, start.isoformat(), end.isoformat(), staged.folder)
    with staged.sink(staging.QUARANTINE, batch.QUARANTINE_SCHEMA) as quarantine:
        _extract_predictions(model, start, end, staged, quarantine, manifest)
        _extract_feedback(model, start, end, staged, quarantine, manifest)
    staged.write_json(staging.MANIFEST, manifest.to_dict())
    staged.publish()
    log.info(
        "%s %s..%s: read %d, kept %d, quarantined %d, duplicates %d, labels %d, staged in %s",
        model.name, start, end, manifest.rows_read, manifest.rows_valid,
        manifest.rows_quarantined, manifest.duplicates_dropped, manifest.labels_kept, staged.folder,
    )
    return manifest


def _extract_predictions(model, start, end, staged: StagedBatch, quarantine: ParquetSink, manifest) -> None:
    schema = batch.prediction_schema(model)
    stats = logs.ReadStats()
    quarantined_before = quarantine.rows
    ids: dict[bool, list[np.ndarray]] = {True: [], False: []}
    # Answered rows go straight to the staged file; only a day with a repeated request id writes it again.
    predictions = staged.sink(staging.PREDICTIONS, schema)
    try:
        with staged.scratch_sink(_CANDIDATE_ERRORS, schema) as errors:
            for day, block in logs.iter_partition_blocks(model, "predictions", logs.partition_days(start, end), stats):
                normalized = logs.stage_predictions(block, model, day, start, end)
                answered = pc.equal(normalized.rows["status"], "ok")
                for is_ok, sink in ((True, predictions), (False, errors)):
                    rows = normalized.rows.filter(answered if is_ok else pc.invert(answered))
                    sink.write(rows)
                    ids[is_ok].append(_id_hashes(rows))
                quarantine.write(normalized.quarantined)
                stats.outside_interval += normalized.outside_interval
        every_id = np.concatenate([*ids[True], *ids[False], np.zeros(0, dtype=np.uint64)])
        conflicts = 0
        if not _repeats(every_id):
            for record_batch in staged.iter_batches(_CANDIDATE_ERRORS):
                predictions.write(pa.Table.from_batches([record_batch]))
            predictions.close()
        else:
            predictions.close(staged.url(_CANDIDATE_ANSWERED))
            with staged.sink(staging.PREDICTIONS, schema) as predictions:
                manifest.duplicates_dropped, conflicts = _dedupe_predictions(staged, every_id, predictions, quarantine)
            staged.remove(_CANDIDATE_ANSWERED)
    except BaseException:
        predictions.discard()
        raise
    staged.remove(_CANDIDATE_ERRORS)
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


def _extract_feedback(model, start, end, staged: StagedBatch, quarantine: ParquetSink, manifest) -> None:
    window_start = label_window_start(model, start)
    manifest.label_window_start = window_start.isoformat()
    stats = logs.ReadStats()
    quarantined_before = quarantine.rows
    with staged.scratch_sink(_CANDIDATE_FEEDBACK, batch.FEEDBACK_SCHEMA) as candidates:
        for day, block in logs.iter_partition_blocks(model, "feedback", logs.partition_days(window_start, end), stats):
            normalized = logs.stage_feedback(block, day, start, end, known_before=end)
            candidates.write(normalized.rows)
            quarantine.write(normalized.quarantined)
    with staged.sink(staging.FEEDBACK, batch.FEEDBACK_SCHEMA) as feedback:
        manifest.label_corrections = _latest_labels(staged, feedback)
    staged.remove(_CANDIDATE_FEEDBACK)
    manifest.labels_read = stats.records_read
    manifest.labels_kept = feedback.rows
    manifest.labels_quarantined = quarantine.rows - quarantined_before
    manifest.damaged_files += [{"file": d.source_file, "error": d.error} for d in stats.damaged_files]
    manifest.files_read += len(stats.files_read)


def read_manifest(staged: StagedBatch) -> Manifest:
    """The manifest an extract wrote into a staged folder."""
    return Manifest(**staged.read_json(staging.MANIFEST))


def staged_counts(manifest: Manifest) -> dict[str, int]:
    """Rows each staged file must hold, by the manifest's counts."""
    return {
        staging.PREDICTIONS: manifest.rows_valid,
        staging.FEEDBACK: manifest.labels_kept,
        staging.QUARANTINE: manifest.rows_quarantined + manifest.labels_quarantined,
    }

"""A data-quality break: a known number of bad records of each kind, written on one day.

Kinds and where they go:

- in regular files, changed in place on answered requests (disjoint rows):
  `nulls`, `out_of_range`, `new_category` (the model saw the bad input),
  `model_name_mismatch`, `score_out_of_range` (classification only),
  `negative_latency`;
- in the day's first plain `.jsonl` file (else `.jsonl.gz`): `wrong_type` (a
  number written as a JSON string) and `malformed_json` (a line cut in half);
- in the day's first Parquet file: `non_finite_latency` (NaN);
- in an extra `…-resend` file: `duplicates` (identical copies of records) and
  `conflicting_duplicates` (same request_id, different latency and output);
- in an extra `…-late` file: `wrong_partition` (records from 23:00-24:00 of
  the previous day);
- an extra `…-cut.jsonl.gz` file of `truncated_gz` records whose compressed
  bytes stop at 60 %.

A kind that does not apply (no categorical feature, a regression model, a
format not written) gets zero records. The counts actually written are in
`QualityBreak.report`.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelwatch.config import FeatureConfig, ModelConfig
from modelwatch.simulation.incidents import QUALITY_BREAK_COUNTS, Incident, IncidentError
from modelwatch.simulation.records import Batch

INPUT_KINDS = ("nulls", "out_of_range", "new_category")
OUTPUT_KINDS = ("model_name_mismatch", "score_out_of_range", "negative_latency")
LINE_KINDS = ("wrong_type", "malformed_json")
COPY_KINDS = ("duplicates", "conflicting_duplicates")
LATE_BLOCK, CUT_BLOCK = 98, 97
CUT_AT = 0.6


def _first(features: list[FeatureConfig], wanted) -> str | None:
    return next((f.name for f in features if wanted(f)), None)


def break_features(incident: Incident, model: ModelConfig) -> dict[str, str | None]:
    """The feature each in-record kind damages: the incident's choice, else a suitable one."""
    features = model.features
    numeric = [f for f in features if f.type == "numeric"]
    chosen = {
        "nulls": incident.param("null_feature") or (numeric or features)[0].name,
        "out_of_range": incident.param("range_feature")
        or _first(numeric, lambda f: f.min is not None or f.max is not None),
        "new_category": incident.param("category_feature")
        or _first(features, lambda f: f.type == "categorical"),
        "wrong_type": incident.param("type_feature")
        or (numeric[-1].name if numeric else _first(features, lambda f: f.type == "boolean")),
    }
    rules = {
        "out_of_range": lambda f: f.type == "numeric" and (f.min is not None or f.max is not None),
        "new_category": lambda f: f.type == "categorical",
        "wrong_type": lambda f: f.type != "categorical",
    }
    for kind, rule in rules.items():
        if chosen[kind] is not None and not rule(model.feature(chosen[kind])):
            raise IncidentError(f"{incident.spec()}: feature {chosen[kind]!r} cannot carry {kind}")
    return chosen


def out_of_range_value(feature: FeatureConfig) -> float:
    """A value well outside the configured range (above max when there is one)."""
    low = feature.min if feature.min is not None else 0.0
    if feature.max is not None:
        return float(np.round(feature.max + max(1.0, 0.5 * abs(feature.max - low))))
    return float(np.round(feature.min - max(1.0, 0.5 * abs(feature.min))))


def truncate(data: bytes) -> tuple[bytes, int]:
    """Cut gzip bytes at `CUT_AT` of their length; also return the complete lines still readable."""
    cut = data[: int(len(data) * CUT_AT)]
    readable = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(cut)
    return cut, readable.count(b"\n")


@dataclass
class QualityBreak:
    """The plan of one day's break: which block carries which bad records, and what was written."""

    model: ModelConfig
    incident: Incident
    features: dict[str, str | None]
    assignment: dict[int, dict[str, int]]
    extra: dict[str, int]
    report: dict[str, int] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    @classmethod
    def plan(
        cls, incident: Incident, model: ModelConfig, block_formats: dict[int, str]
    ) -> QualityBreak:
        """Assign each kind's records to the blocks of the day (formats by block index)."""
        features = break_features(incident, model)
        wanted = {kind: int(incident.param(kind)) for kind in QUALITY_BREAK_COUNTS}
        for kind in ("out_of_range", "new_category", "wrong_type"):
            if features[kind] is None:
                wanted[kind] = 0
        if model.task != "binary_classification":
            wanted["score_out_of_range"] = 0
        blocks = sorted(block_formats)
        json_block = next(
            (b for fmt in ("jsonl", "jsonl.gz") for b in blocks if block_formats[b] == fmt), None
        )
        parquet_block = next((b for b in blocks if block_formats[b] == "parquet"), None)
        assignment: dict[int, dict[str, int]] = {b: {} for b in blocks}
        for i, kind in enumerate(INPUT_KINDS + OUTPUT_KINDS):
            assignment[blocks[i % len(blocks)]][kind] = wanted[kind]
        for kind in COPY_KINDS:
            assignment[blocks[-1]][kind] = wanted[kind]
        if json_block is not None:
            assignment[json_block].update({kind: wanted[kind] for kind in LINE_KINDS})
        if parquet_block is not None:
            assignment[parquet_block]["non_finite_latency"] = wanted["non_finite_latency"]
        extra = {
            "wrong_partition": wanted["wrong_partition"],
            "truncated_gz": wanted["truncated_gz"] if "jsonl.gz" in block_formats.values() else 0,
        }
        report = {kind: 0 for kind in QUALITY_BREAK_COUNTS}
        return cls(model, incident, features, assignment, extra, report)

    def for_block(self, index: int, rng: np.random.Generator) -> BlockBreak | None:
        wanted = {kind: n for kind, n in self.assignment.get(index, {}).items() if n > 0}
        return BlockBreak(self, wanted, rng) if wanted else None

    def record(self, kind: str, count: int) -> None:
        self.report[kind] += count

    def summary(self) -> dict[str, Any]:
        """Counts per kind, the damaged feature per kind and the extra files written."""
        return {
            "records": dict(self.report),
            "features": dict(self.features),
            "files": dict(self.files),
        }


@dataclass
class BlockBreak:
    """The bad records of one block: rows chosen among answered requests, disjoint per kind."""

    owner: QualityBreak
    wanted: dict[str, int]
    rng: np.random.Generator
    rows: dict[str, np.ndarray] = field(default_factory=dict)

    def _choose(self, batch: Batch) -> None:
        candidates = self.rng.permutation(np.flatnonzero(batch.ok))
        used = 0
        for kind in sorted(self.wanted):
            taken = candidates[used : used + self.wanted[kind]]
            used += len(taken)
            self.rows[kind] = np.sort(taken)
            self.owner.record(kind, len(taken))

    def inputs(self, batch: Batch) -> None:
        """Damage what the model receives: nulls, out-of-range values, an unseen category."""
        self._choose(batch)
        model, features = self.owner.model, self.owner.features
        if "nulls" in self.rows:
            name = features["nulls"]
            column = batch.features[name]
            if model.feature(name).type == "numeric":
                column[self.rows["nulls"]] = np.nan
            else:
                column = column.astype(object)
                column[self.rows["nulls"]] = None
                batch.features[name] = column
        if "out_of_range" in self.rows:
            name = features["out_of_range"]
            batch.features[name][self.rows["out_of_range"]] = out_of_range_value(
                model.feature(name)
            )
        if "new_category" in self.rows:
            name = features["new_category"]
            batch.features[name][self.rows["new_category"]] = f"{name}_new"

    def outputs(self, batch: Batch) -> None:
        """Damage what is logged about the answer: model name, score, latency."""
        rows = self.rows
        if "model_name_mismatch" in rows:
            batch.model_name[rows["model_name_mismatch"]] = f"{self.owner.model.name}_shadow"
        if "score_out_of_range" in rows and batch.score is not None:
            chosen = rows["score_out_of_range"]
            batch.score[chosen] = np.where(np.arange(len(chosen)) % 2 == 0, 1.25, -0.2)
        if "negative_latency" in rows:
            chosen = rows["negative_latency"]
            batch.latency[chosen] = -np.round(1 + 20 * self.rng.random(len(chosen)), 2)
        if "non_finite_latency" in rows:
            batch.latency[rows["non_finite_latency"]] = np.nan

    def edit_lines(self, lines: pa.Array) -> pa.Array:
        """Damage JSON text: a number written as a string, a line cut in half."""
        edits: dict[int, str] = {}
        name = self.owner.features["wrong_type"]
        pattern = re.compile(rf'("{name}": )([^,}}]+)') if name else None
        for row in self.rows.get("wrong_type", []):
            edits[int(row)] = pattern.sub(r'\1"\2"', lines[int(row)].as_py(), count=1)
        for row in self.rows.get("malformed_json", []):
            text = lines[int(row)].as_py()
            edits[int(row)] = text[: len(text) // 2] + "\n"
        if not edits:
            return lines
        mask = np.zeros(len(lines), dtype=bool)
        mask[list(edits)] = True
        return pc.replace_with_mask(
            lines, pa.array(mask), pa.array([edits[i] for i in sorted(edits)])
        )

    def copies(self, batch: Batch) -> list[Batch]:
        """Re-sent records: identical copies, and copies whose content differs."""
        found = []
        if len(self.rows.get("duplicates", [])):
            found.append(batch.take(self.rows["duplicates"]))
        if len(self.rows.get("conflicting_duplicates", [])):
            changed = batch.take(self.rows["conflicting_duplicates"])
            changed.latency = np.round(changed.latency + 17.5, 2)
            if changed.score is not None:
                changed.score = np.round(np.clip(1.0 - changed.score, 0, 1), 6)
                changed.prediction = (changed.score >= 0.5).astype(float)
            else:
                changed.prediction = np.round(changed.prediction + 7.5, 2)
            found.append(changed)
        return found

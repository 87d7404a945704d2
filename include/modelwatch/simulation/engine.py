"""The simulation loop: every model, every day, block by block, then its labels.

A run owns the partitions of its period: for each simulated model and day the
`predictions/dt=…` and `feedback/dt=…` folders are emptied first, so re-running
the same period replaces its logs instead of adding to them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from modelwatch import registry, settings
from modelwatch.config import ModelConfig, ProjectConfig
from modelwatch.simulation import traffic
from modelwatch.simulation.feedback import Answered, by_partition, day_labels
from modelwatch.simulation.formats import FORMATS, encode, json_lines
from modelwatch.simulation.incidents import (
    DEFAULT_SCHEDULE,
    DayEffects,
    Incident,
    check_for_model,
    day_effects,
)
from modelwatch.simulation.quality import CUT_BLOCK, LATE_BLOCK, QualityBreak, truncate
from modelwatch.simulation.records import Batch, feedback_table, prediction_table
from modelwatch.simulation.serving import ModelRun, serve_block
from modelwatch.simulation.training import ServedModel, ensure_version, write_reference
from modelwatch.simulation.worlds import world_for

log = logging.getLogger(__name__)

BLOCK_ROWS = 250_000
MAX_BLOCKS = 90
DAY_STREAM, FEEDBACK_STREAM, QUALITY_STREAM = 0xDA7, 0xFEED, 0xBAD
LOG_KINDS = ("predictions", "feedback")


@dataclass
class DaySummary:
    """What one model's day wrote: `labels` and `files` count that day's partitions."""

    model: str
    day: date
    version: str
    requests: int = 0
    errors: int = 0
    labels: int = 0
    files: int = 0
    incidents: list[str] = field(default_factory=list)


@dataclass
class ModelSummary:
    """Registry facts of one simulated model."""

    name: str
    root: str
    baseline_version: str
    champion_version: str
    trained: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    quality_breaks: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class SimulationSummary:
    """The result of `simulate`: per model and day, and per model in total."""

    start: date
    days: int
    seed: int
    formats: tuple[str, ...]
    day_rows: list[DaySummary] = field(default_factory=list)
    models: dict[str, ModelSummary] = field(default_factory=dict)
    skipped_incidents: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def totals(self) -> dict[str, dict[str, int]]:
        """Requests, errors, labels and files per model over the whole period."""
        totals: dict[str, dict[str, int]] = {}
        for row in self.day_rows:
            entry = totals.setdefault(
                row.model, {"requests": 0, "errors": 0, "labels": 0, "files": 0}
            )
            for key in entry:
                entry[key] += getattr(row, key)
        return totals

    def incidents_of(self, model: str) -> list[str]:
        """`date kind` for each incident active on some day of `model`, in order of first day."""
        seen: dict[str, str] = {}
        for row in self.day_rows:
            if row.model == model:
                for spec in row.incidents:
                    seen.setdefault(spec, f"{row.day} {spec.split('@')[0]}")
        return list(seen.values())

    def table(self) -> str:
        """A readable summary: one line per model, then its incidents and versions."""
        header = (
            f"{'model':<16} {'days':>4} {'requests':>11} {'errors':>8} {'labels':>10} "
            f"{'files':>6}  champion"
        )
        lines = [header, "-" * len(header)]
        for name, total in self.totals().items():
            model = self.models[name]
            lines.append(
                f"{name:<16} {self.days:>4} {total['requests']:>11,} {total['errors']:>8,} "
                f"{total['labels']:>10,} {total['files']:>6}  v{model.champion_version}"
            )
        for name, model in self.models.items():
            lines.append(f"\n{name}: logs in {model.root}")
            trained, reused = model.trained or "-", model.reused or "-"
            lines.append(f"  versions trained: {trained}; reused from the registry: {reused}")
            lines += [f"  incident from {entry}" for entry in self.incidents_of(name)]
            for day, report in model.quality_breaks.items():
                written = ", ".join(f"{k}={v}" for k, v in report["records"].items() if v)
                lines.append(f"  data-quality break {day}: {written}")
        if self.skipped_incidents:
            lines.append(
                f"\nincidents for models not simulated: {', '.join(self.skipped_incidents)}"
            )
        lines.append(f"\n{self.days} day(s) from {self.start} simulated in {self.seconds:.1f} s")
        return "\n".join(lines)


class LogSink:
    """Writes log files under one root URL through fsspec."""

    def __init__(self, root: str):
        import fsspec

        self.root = root.rstrip("/")
        self.fs, self.base = fsspec.core.url_to_fs(self.root)

    def folder(self, model: str, kind: str, day: date) -> str:
        return f"{self.base.rstrip('/')}/{model}/{kind}/dt={day.isoformat()}"

    def clear(self, model: str, day: date) -> None:
        for kind in LOG_KINDS:
            folder = self.folder(model, kind, day)
            if self.fs.exists(folder):
                self.fs.rm(folder, recursive=True)

    def write(self, model: str, kind: str, day: date, name: str, data: bytes) -> None:
        folder = self.folder(model, kind, day)
        self.fs.makedirs(folder, exist_ok=True)
        self.fs.pipe_file(f"{folder}/{name}", data)


@dataclass
class Period:
    """The simulated days and how their files are written."""

    start: date
    days: int
    requests_per_day: int
    formats: tuple[str, ...]
    block_rows: int

    @property
    def first_ms(self) -> int:
        return traffic.day_start_ms(self.start)

    def day(self, index: int) -> date:
        return self.start + timedelta(days=index)


def _check(period: Period, seed: int) -> None:
    """Reject arguments that cannot produce a valid simulation, saying what was expected."""
    if period.days < 1:
        raise ValueError(f"days must be at least 1 (got {period.days})")
    if period.requests_per_day < 0:
        raise ValueError(f"requests_per_day must be 0 or more (got {period.requests_per_day})")
    if period.block_rows < 1000:
        raise ValueError(f"block_rows must be at least 1000 (got {period.block_rows})")
    if period.requests_per_day * 1.2 > period.block_rows * MAX_BLOCKS:
        raise ValueError(
            f"at most {MAX_BLOCKS} blocks a day: raise block_rows above "
            f"{int(period.requests_per_day * 1.2 / MAX_BLOCKS)}"
        )
    unknown = [f for f in period.formats if f not in FORMATS]
    if unknown or not period.formats:
        raise ValueError(
            f"formats must be a non-empty subset of {list(FORMATS)} (got {list(period.formats)})"
        )
    if seed < 0:
        raise ValueError(f"seed must be 0 or more (got {seed})")


def _write_predictions(
    sink: LogSink, model: ModelConfig, day: date, filename: str, batches: Iterable[Batch]
) -> None:
    """Write whole batches (no damaged lines) as one predictions file."""
    fmt = filename.split(".", 1)[1]
    table = pa.concat_tables([prediction_table(model, batch) for batch in batches])
    sink.write(model.name, "predictions", day, filename, encode(table, fmt))


@dataclass
class DayOutput:
    """What serving one day produced besides its files."""

    answered: Answered
    quality: dict[str, Any] | None


def _serve_day(
    run: ModelRun,
    sink: LogSink,
    period: Period,
    index: int,
    effects: DayEffects,
    served: ServedModel,
    row: DaySummary,
) -> DayOutput:
    """Serve and write one day's blocks, plus the bad files of a quality break."""
    model, day = run.model, period.day(index)
    rng = run.stream(day, DAY_STREAM)
    blocks = traffic.plan_blocks(
        rng, traffic.day_volume(rng, period.requests_per_day, day), period.block_rows
    )
    fmt_of = {b.index: period.formats[(b.index + index) % len(period.formats)] for b in blocks}
    plan = (
        QualityBreak.plan(effects.quality_break, model, fmt_of) if effects.quality_break else None
    )
    answered: list[Answered] = []
    for block in blocks:
        corruption = (
            plan.for_block(block.index, run.stream(day, block.index, QUALITY_STREAM))
            if plan
            else None
        )
        batch = serve_block(run, day, block, effects, served, corruption)
        table = prediction_table(model, batch)
        fmt = fmt_of[block.index]
        lines = (
            corruption.edit_lines(json_lines(table)) if corruption and fmt != "parquet" else None
        )
        name = f"part-{block.index:02d}-{block.first_minute // 60:02d}{block.first_minute % 60:02d}"
        sink.write(model.name, "predictions", day, f"{name}.{fmt}", encode(table, fmt, lines))
        row.files += 1
        if corruption:
            copies = corruption.copies(batch)
            if copies:
                plan.files["resend"] = f"{name}-resend.{fmt}"
                _write_predictions(sink, model, day, plan.files["resend"], copies)
                row.files += 1
        row.requests += len(batch)
        row.errors += int((~batch.ok).sum())
        rows = np.flatnonzero(batch.ok)
        answered.append(
            Answered(np.full(len(rows), block.index), rows, batch.time_ms[rows], batch.truth[rows])
        )
    if plan:
        row.files += _write_quality_extras(run, sink, period, index, effects, served, plan)
    return DayOutput(Answered.join(answered), plan.summary() if plan else None)


def _write_quality_extras(
    run: ModelRun,
    sink: LogSink,
    period: Period,
    index: int,
    effects: DayEffects,
    served: ServedModel,
    plan: QualityBreak,
) -> int:
    """Records filed under the wrong day, and a truncated .jsonl.gz file; returns files written."""
    day, written = period.day(index), 0
    late = plan.extra["wrong_partition"]
    if late:
        block = traffic.Block(LATE_BLOCK, 23 * 60, traffic.MINUTES_PER_DAY, late)
        batch = serve_block(run, day - timedelta(days=1), block, effects, served)
        plan.files["late"] = f"part-{LATE_BLOCK}-late.{period.formats[0]}"
        _write_predictions(sink, run.model, day, plan.files["late"], [batch])
        plan.record("wrong_partition", late)
        written += 1
    cut = plan.extra["truncated_gz"]
    if cut:
        block = traffic.Block(CUT_BLOCK, 12 * 60, 13 * 60, cut)
        batch = serve_block(run, day, block, effects, served)
        data, readable = truncate(encode(prediction_table(run.model, batch), "jsonl.gz"))
        sink.write(run.model.name, "predictions", day, f"part-{CUT_BLOCK}-cut.jsonl.gz", data)
        plan.record("truncated_gz", cut)
        plan.files["cut"] = f"part-{CUT_BLOCK}-cut.jsonl.gz"
        plan.report["truncated_gz_readable"] = readable
        written += 1
    return written


def _write_feedback(
    run: ModelRun,
    sink: LogSink,
    period: Period,
    index: int,
    effects: DayEffects,
    answered: Answered,
    rows: list[DaySummary],
) -> None:
    """Write the labels caused by one day's answers into the partitions of their arrival day."""
    day = period.day(index)
    labels = day_labels(
        run.stream(day, FEEDBACK_STREAM),
        traffic.day_start_ms(day),
        answered,
        run.model.task,
        effects.label_delay_factor,
    )
    for target, group in by_partition(labels, period.first_ms, period.days).items():
        for k, first in enumerate(range(0, len(group), period.block_rows)):
            chunk = group.take(np.arange(first, min(first + period.block_rows, len(group))))
            fmt = period.formats[(index + target + k) % len(period.formats)]
            table = feedback_table(chunk.request_ids(day), chunk.label, chunk.time_ms)
            sink.write(
                run.model.name,
                "feedback",
                period.day(target),
                f"labels-{day:%Y%m%d}-{k:02d}.{fmt}",
                encode(table, fmt),
            )
            rows[target].labels += len(chunk)
            rows[target].files += 1


class _Versions:
    """The served versions of one model: the baseline and any bad versions, loaded once."""

    def __init__(self, run: ModelRun):
        self.run = run
        self.baseline = self._ensure("baseline", None)
        self.bad: dict[Incident, ServedModel] = {}

    def _ensure(self, role: str, params: dict[str, Any] | None) -> ServedModel:
        return ensure_version(self.run.model, self.run.world, self.run.seed, role, params)

    def serving(self, incident: Incident | None) -> ServedModel:
        if incident is None:
            return self.baseline
        if incident not in self.bad:
            self.bad[incident] = self._ensure("bad_version", incident.params)
        return self.bad[incident]

    def all(self) -> list[ServedModel]:
        return [self.baseline, *self.bad.values()]


def simulate_model(
    model: ModelConfig,
    incidents: list[Incident],
    period: Period,
    seed: int,
    sink: LogSink,
    progress: Callable[[str], None],
) -> tuple[ModelSummary, list[DaySummary]]:
    """Simulate one model over the period; returns its registry facts and its day rows."""
    run = ModelRun(model, world_for(model, seed), seed)
    versions = _Versions(run)
    champion = versions.baseline.version
    registry.set_champion(model.registry_name, champion)
    if model.reference.dataset:
        url = settings.resolve_root(model.reference.dataset)
        rows = write_reference(model, run.world, seed, versions.baseline.pipeline, url)
        progress(f"{model.name}: drift reference of {rows:,} requests written to {url}")
    summary = ModelSummary(model.name, sink.root, versions.baseline.version, champion)
    for index in range(period.days):
        sink.clear(model.name, period.day(index))
    effects = [day_effects(incidents, i, period.start, period.days) for i in range(period.days)]
    rows = [
        DaySummary(model.name, period.day(i), "", incidents=[x.spec() for x in effects[i].active])
        for i in range(period.days)
    ]
    for index, today in enumerate(effects):
        served = versions.serving(today.bad_version)
        if served.version != champion:
            champion = served.version
            registry.set_champion(model.registry_name, champion)
        rows[index].version = served.version
        output = _serve_day(run, sink, period, index, today, served, rows[index])
        if output.quality is not None:
            summary.quality_breaks[period.day(index).isoformat()] = output.quality
        _write_feedback(run, sink, period, index, today, output.answered, rows)
        progress(
            f"{model.name} {period.day(index)}: {rows[index].requests:,} requests, "
            f"{rows[index].errors:,} errors, version {served.version}"
        )
    summary.champion_version = champion
    summary.trained = [v.version for v in versions.all() if not v.reused]
    summary.reused = [v.version for v in versions.all() if v.reused]
    return summary, rows


def simulate(
    config: ProjectConfig,
    *,
    start: date,
    days: int,
    requests_per_day: int = 20_000,
    seed: int = 7,
    incidents: list[Incident] | None = DEFAULT_SCHEDULE,
    models: list[str] | None = None,
    formats: Iterable[str] = FORMATS,
    root: str | None = None,
    block_rows: int = BLOCK_ROWS,
    progress: Callable[[str], None] | None = None,
) -> SimulationSummary:
    """Write `days` days of inference logs and labels for the configured models.

    Parameters
    ----------
    config:
        The models file; every model in it (or those named in `models`) is simulated.
    start, days:
        The first simulated UTC day and how many days follow.
    requests_per_day:
        Average requests per model and day (shaped by weekday and a little noise).
    seed:
        Same seed, same arguments and same registry: byte-identical files.
    incidents:
        Scheduled incidents; None or [] for clean logs. Incidents naming a model
        that is not simulated are skipped and listed in the summary.
    models:
        Names of the models to simulate (default: all configured).
    formats:
        File formats to rotate through within each day.
    root:
        Log root URL for every model (default: each model's configured `log_url`).
    block_rows:
        About how many requests are generated, held in memory and written per file.
    progress:
        Called with one line per simulated model and day.

    Returns
    -------
    A SimulationSummary with per-day rows and per-model registry facts.
    """
    began = time.perf_counter()
    period = Period(start, days, requests_per_day, tuple(formats), block_rows)
    _check(period, seed)
    selected = [config.model(name) for name in models] if models else list(config.models)
    scheduled = list(incidents or [])
    names = {model.name for model in selected}
    summary = SimulationSummary(start, days, seed, period.formats)
    summary.skipped_incidents = [
        i.spec() for i in scheduled if i.model is not None and i.model not in names
    ]
    own = {
        model.name: [i for i in scheduled if i.model in (None, model.name)] for model in selected
    }
    for model in selected:
        for incident in own[model.name]:
            check_for_model(incident, model)
    sinks: dict[str, LogSink] = {}
    for model in selected:
        url = root or model.log_url
        sink = sinks.setdefault(url, LogSink(url))
        model_summary, rows = simulate_model(
            model, own[model.name], period, seed, sink, progress or log.info
        )
        summary.models[model.name] = model_summary
        summary.day_rows += rows
    summary.seconds = time.perf_counter() - began
    return summary

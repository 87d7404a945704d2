"""What each task of `monitor_<model>` does, as plain functions of (model, interval).

Tasks pass only small dictionaries (folder URLs, counts, verdicts) between
each other; data moves through the staged folder and the warehouse.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from modelwatch import batch, logs, settings, staging
from modelwatch import extract as extract_module
from modelwatch.config import ModelConfig, ProjectConfig, load_config
from modelwatch.staging import StagedBatch

log = logging.getLogger(__name__)


class HistoryIncomplete(RuntimeError):
    """Earlier intervals that this interval's results depend on are still being processed."""

PROFILE_COLUMN_GROUP = 4
DRIFT_SAMPLE_ROWS = 1_000_000
# Extract streams blocks: freed pages are worth keeping for reuse a second (see `batch.return_freed_memory`).
EXTRACT_FREED_MEMORY_MS = 1000


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"interval bound {moment} has no time zone; expected an aware datetime")
    return datetime.fromtimestamp(moment.timestamp(), tz=UTC)


def _model(name: str, config: ProjectConfig | None = None,
           label_refresh: int | None = None) -> tuple[ProjectConfig, ModelConfig]:
    """The project config and the named model; `label_refresh` overrides its `label_maturity_intervals`.

    A run asked to refresh the labels of more (or fewer) earlier intervals than
    configured reads their labels, recomputes their metrics, and waits for them
    as history, exactly as if the model were configured so.
    """
    config = config or load_config()
    return config, _with_label_refresh(config.model(name), label_refresh)


def _with_label_refresh(model: ModelConfig, label_refresh: int | None) -> ModelConfig:
    if label_refresh is None or label_refresh == model.label_maturity_intervals:
        return model
    return model.model_copy(update={"label_maturity_intervals": label_refresh})


def history_intervals(model: ModelConfig, label_refresh: int | None = None) -> int:
    """How many earlier intervals an interval's results may depend on.

    Validation compares the volume with recent runs, drift may compare with the
    trailing intervals' profiles, and measure recomputes earlier intervals'
    quality metrics as their labels mature (`label_refresh` of them, if given).
    """
    model = _with_label_refresh(model, label_refresh)
    return max(
        model.data_quality.volume_history_intervals,
        model.reference.trailing_intervals or 0,
        model.label_maturity_intervals,
    )


def pending_history(model_name: str, start: datetime, config: ProjectConfig | None = None,
                    warehouse_url: str | None = None, label_refresh: int | None = None) -> list[datetime]:
    """Earlier intervals within `history_intervals` whose run has started and not yet ended."""
    from modelwatch.warehouse import load

    _, model = _model(model_name, config, label_refresh)
    start = _utc(start)
    since = start - model.interval_length * history_intervals(model)
    return load.unfinished_runs(warehouse_engine(warehouse_url), model.name, since, start)


def await_history(model_name: str, start: datetime, timeout_s: float, poll_s: float = 1.0,
                  config: ProjectConfig | None = None, warehouse_url: str | None = None) -> None:
    """Wait until no earlier interval this one depends on is still being processed.

    Runs of different intervals at once then give the warehouse that the same
    runs give in order. Under Airflow the `wait_for_history` sensor does this
    waiting without holding a worker slot.

    Raises
    ------
    HistoryIncomplete
        Still pending after `timeout_s` seconds, naming the intervals.
    """
    deadline = time.monotonic() + timeout_s
    while pending := pending_history(model_name, start, config, warehouse_url):
        if time.monotonic() >= deadline:
            raise HistoryIncomplete(_describe_pending(model_name, start, pending, timeout_s))
        time.sleep(poll_s)


def _describe_pending(model_name: str, start: datetime, pending: list[datetime], waited_s: float) -> str:
    shown = ", ".join(moment.isoformat() for moment in pending)
    return (
        f"{model_name} {start.isoformat()}: earlier intervals still being processed after {waited_s:.0f} s: "
        f"{shown}; their results are part of this interval's history"
    )


def missing_partitions(model_name: str, start: datetime, end: datetime) -> list[str]:
    """Prediction partitions of the interval that have not arrived yet."""
    _, model = _model(model_name)
    return logs.missing_prediction_partitions(model, _utc(start), _utc(end))


def extract(model_name: str, start: datetime, end: datetime, config: ProjectConfig | None = None,
            attempt: str | None = None, label_refresh: int | None = None) -> dict:
    """Stage the interval's batch in a new attempt folder; returns the manifest as a small dictionary.

    `attempt` labels the folder (Airflow passes the run id and try number).
    `label_refresh` (the DAG's Param `label_refresh_intervals`) stages the
    labels of that many earlier intervals instead of `label_maturity_intervals`;
    `measure` then recomputes as many.
    """
    batch.return_freed_memory(within_ms=EXTRACT_FREED_MEMORY_MS)
    config, model = _model(model_name, config, label_refresh)
    manifest = extract_module.extract_interval(model, _utc(start), _utc(end), config.staging_url, attempt)
    return manifest.to_dict()


# ---------------------------------------------------------------- warehouse access

_ENGINES: dict[str, object] = {}


def warehouse_engine(url: str | None = None):
    """The process's one engine on the warehouse, migrated to the latest schema on first use.

    One engine (and connection pool) per URL and process: tasks that run in one
    process, as under `dag.test()`, share it instead of leaving pools behind.
    """
    from modelwatch.warehouse import engine as warehouse

    resolved = warehouse.warehouse_url(url)
    if resolved not in _ENGINES:
        engine = warehouse.get_engine(resolved)
        warehouse.migrate(engine)
        _ENGINES[resolved] = engine
    return _ENGINES[resolved]


# ---------------------------------------------------------------- validate


def validate(model_name: str, folder: str, start: datetime, end: datetime,
             config: ProjectConfig | None = None, warehouse_url: str | None = None) -> dict:
    """Run the model's data-quality suite over the staged batch, chunk by chunk."""
    from modelwatch import validation
    from modelwatch.warehouse import load

    batch.return_freed_memory()
    _, model = _model(model_name, config)
    start, end = _utc(start), _utc(end)
    staged = StagedBatch(folder)
    volumes = load.recent_volumes(
        warehouse_engine(warehouse_url), model.name, start, model.data_quality.volume_history_intervals
    )
    outcome = validation.validate_batch(
        staged.iter_chunks(staging.PREDICTIONS, rows=model.data_quality.chunk_rows),
        model, interval_start=start, interval_end=end, recent_volumes=volumes,
    )
    staged.write_frame(staging.DATA_QUALITY, outcome.rows)
    failed = outcome.rows.loc[~outcome.rows["success"].astype(bool)]
    log.info("%s", outcome.summary)
    result = {
        "volume_history": len(volumes),
        "critical_failure": bool(outcome.critical_failure),
        "failed": failed["expectation"].tolist(),
        "failed_critical": failed.loc[failed["severity"] == "critical", "expectation"].tolist(),
        "summary": outcome.summary,
    }
    staged.write_json(staging.VALIDATE, result)
    return result


# ---------------------------------------------------------------- measure


def _earlier_intervals(model: ModelConfig, start: datetime) -> list[tuple[datetime, datetime]]:
    """The intervals whose quality metrics this interval's run recomputes, newest first."""
    step = model.interval_length
    return [(start - step * k, start - step * (k - 1)) for k in range(1, model.label_maturity_intervals + 1)]


def _quality_for(model, staged: StagedBatch, start, end, feedback, label_ids) -> tuple[pd.DataFrame, int, np.ndarray]:
    """Quality metrics of one staged interval; returns rows, labels joined, matched label mask."""
    from modelwatch import metrics

    columns = list(dict.fromkeys(["request_id", *metrics.quality_columns(model)]))
    predictions = staged.read(staging.PREDICTIONS, columns=columns)
    labeled, _ = metrics.join_labels(predictions, feedback)
    del predictions
    # The join already found each label's prediction: the few labeled ids say which labels matched.
    has_label = labeled["label"].notna()
    joined_ids = pa.array(labeled.loc[has_label, "request_id"], type=label_ids.type)
    matched = pc.is_in(label_ids, value_set=joined_ids).to_numpy(zero_copy_only=False)
    labeled = labeled.drop(columns="request_id")
    joined = int(has_label.sum())
    return metrics.quality_metrics(labeled, model, start, end), joined, matched


def _profiles_and_sample(
    model: ModelConfig, staged: StagedBatch, start: datetime, end: datetime, max_rows: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Exact per-feature profiles over every row, and a systematic sample of at most
    `max_rows` rows for the drift tests, from one read of a few columns at a time."""
    from modelwatch import drift

    step = max(1, -(-staged.num_rows(staging.PREDICTIONS) // max_rows))
    items = list(drift.monitored_columns(model).items())
    groups = [items[i : i + PROFILE_COLUMN_GROUP] for i in range(0, len(items), PROFILE_COLUMN_GROUP)]
    reads = (
        staged.read(staging.PREDICTIONS, columns=["status", *(column for _, column in group)])
        for group in groups
    )
    profiles, sampled = [], {}
    for group, chunk in zip(groups, staging.prefetched(reads), strict=True):
        profiles.append(drift.profile_features(chunk, model, start, end, features=[n for n, _ in group]))
        # A strided slice is a view: copied, it no longer keeps every row in memory.
        picked = (chunk if step == 1 else chunk.iloc[::step].copy()).reset_index(drop=True)
        sampled.update({column: picked[column] for column in picked.columns})
        del chunk, picked
    return pd.concat(profiles, ignore_index=True), pd.DataFrame(sampled)


def _reference(model: ModelConfig, start: datetime, engine):
    """The drift reference: the configured dataset, or profiles of the trailing intervals."""
    from modelwatch import drift
    from modelwatch.warehouse import load

    if model.reference.dataset:
        fs, path = fsspec.core.url_to_fs(settings.resolve_root(model.reference.dataset))
        with fs.open(path, "rb") as handle:
            frame = pd.read_parquet(handle)
        return drift.reference_from_frame(frame, model), model.reference.dataset
    n = model.reference.trailing_intervals
    profiles = load.previous_profiles(engine, model.name, start, n)
    found = profiles["interval_start"].nunique() if len(profiles) else 0
    return drift.reference_from_profiles(profiles), f"trailing {found} of {n} intervals"


def measure(model_name: str, folder: str, start: datetime, end: datetime,
            config: ProjectConfig | None = None, warehouse_url: str | None = None) -> dict:
    """Quality metrics (this interval and the K before it), system KPIs, profiles and drift.

    K is as far back as the staged feedback reaches: the model's
    `label_maturity_intervals`, or the `label_refresh` its extract was given.
    """
    from modelwatch import drift, metrics

    batch.return_freed_memory()
    start, end = _utc(start), _utc(end)
    staged = StagedBatch(folder)
    config, model = _model(model_name, config)
    label_window = datetime.fromisoformat(extract_module.read_manifest(staged).label_window_start)
    model = _with_label_refresh(model, (start - label_window) // model.interval_length)
    engine = warehouse_engine(warehouse_url)
    feedback = staged.read(staging.FEEDBACK)
    label_ids = pa.array(feedback["request_id"].astype(str))
    fresh = (feedback["label_timestamp"] >= pd.Timestamp(start)).to_numpy()

    quality, labels_joined, matched = _quality_for(model, staged, start, end, feedback, label_ids)
    metric_frames = [quality]
    recomputed, not_staged = [], []
    for earlier_start, earlier_end in _earlier_intervals(model, start):
        earlier = staging.published(config.staging_url, model.name, earlier_start, earlier_end)
        if earlier is None:
            not_staged.append(earlier_start.isoformat())
            continue
        rows, _, earlier_matched = _quality_for(model, earlier, earlier_start, earlier_end, feedback, label_ids)
        metric_frames.append(rows)
        matched |= earlier_matched
        recomputed.append(earlier_start.isoformat())
    if not_staged:
        log.info("label metrics not recomputed for %s: no staged batch", ", ".join(not_staged))

    system = staged.read(staging.PREDICTIONS, columns=metrics.system_columns(model))
    metric_frames.append(
        metrics.system_kpis(system, model.name, start, end, segments=metrics.segment_columns(model))
    )
    del system
    profiles, sample = _profiles_and_sample(model, staged, start, end, DRIFT_SAMPLE_ROWS)
    reference, reference_label = _reference(model, start, engine)
    drift_rows, verdict = drift.detect_drift(sample, reference, model, start, end, reference_label)

    all_metrics = pd.concat(metric_frames, ignore_index=True)
    all_metrics["labels_as_of"] = pd.Timestamp(end)
    staged.write_frame(staging.METRICS, all_metrics)
    staged.write_frame(staging.PROFILES, profiles)
    staged.write_frame(staging.DRIFT, drift_rows)
    result = {
        "labels_joined": labels_joined,
        # Orphans are only knowable when every interval a label could belong to is staged.
        "orphan_labels": None if not_staged else int((fresh & ~matched).sum()),
        "recomputed_intervals": recomputed,
        "drift_detected": bool(verdict.drifted),
        "drifted_features": list(verdict.drifted_features),
        "prediction_drift": bool(verdict.prediction_drift),
        "drift_summary": verdict.summary,
        "reference": reference_label,
        "not_staged_intervals": not_staged,
    }
    staged.write_json(staging.MEASURE, result)
    log.info("%s: %s", model.name, verdict.summary)
    return result


# ---------------------------------------------------------------- load


def load(model_name: str, folder: str, start: datetime, end: datetime, run_id: str,
         config: ProjectConfig | None = None, warehouse_url: str | None = None) -> dict:
    """Write everything staged for the interval to the warehouse in one transaction."""
    from modelwatch.warehouse import load as warehouse_load

    _, model = _model(model_name, config)
    start, end = _utc(start), _utc(end)
    staged = StagedBatch(folder)
    manifest = extract_module.read_manifest(staged)
    if (manifest.model_name, manifest.interval_start, manifest.interval_end) != (
        model.name, start.isoformat(), end.isoformat()
    ):
        raise staging.StagingError(
            f"{staged.folder} holds {manifest.model_name} {manifest.interval_start}..{manifest.interval_end}, "
            f"not {model.name} {start.isoformat()}..{end.isoformat()}"
        )
    staged.check_counts(extract_module.staged_counts(manifest))
    measured = staged.read_json(staging.MEASURE)
    validated = staged.read_json(staging.VALIDATE)
    quality = staged.read_frame(staging.DATA_QUALITY)
    critical = validated["critical_failure"]
    quarantine = staged.read(staging.QUARANTINE)
    engine = warehouse_engine(warehouse_url)
    bundle = warehouse_load.RunBundle(
        model_name=model.name,
        interval_start=start,
        interval_end=end,
        run_id=run_id,
        run={
            "status": "halted" if critical else "success",
            "finished_at": None,  # set once the interval is judged and decided
            "rows_read": manifest.rows_read,
            "rows_valid": manifest.rows_valid,
            "rows_quarantined": manifest.rows_quarantined + manifest.labels_quarantined,
            "duplicates_dropped": manifest.duplicates_dropped,
            "labels_read": manifest.labels_read,
            "labels_joined": measured["labels_joined"],
            "orphan_labels": measured["orphan_labels"],
            "damaged_files": manifest.damaged_files,
            "missing_partitions": manifest.missing_partitions,
            "critical_failure": critical,
            "drift_detected": measured["drift_detected"],
            "drifted_features": len(measured["drifted_features"]),
            "history": {
                "volume_intervals": validated["volume_history"],
                "drift_reference": measured["reference"],
                "recomputed_intervals": measured["recomputed_intervals"],
                "not_staged_intervals": measured["not_staged_intervals"],
            },
        },
        model_metrics=staged.read_frame(staging.METRICS),
        labels_as_of=end,
        feature_drift=staged.read_frame(staging.DRIFT),
        feature_profiles=staged.read_frame(staging.PROFILES),
        data_quality_results=quality,
        quarantined_records=quarantine,
    )
    counts = warehouse_load.load_run(engine, bundle)
    log.info("%s %s..%s loaded: %s", model.name, start, end, counts)
    return {
        "status": bundle.run["status"],
        "rows": counts,
        "critical_failure": critical,
        "failed_critical": validated["failed_critical"],
        "drifted_features": measured["drifted_features"],
        "recomputed_intervals": measured["recomputed_intervals"],
        "quality_measured": quality_measured(bundle.model_metrics, [start, *map(
            datetime.fromisoformat, measured["recomputed_intervals"])]),
    }


def quality_measured(metrics: pd.DataFrame, starts: list[datetime]) -> dict[str, dict[str, list]]:
    """The overall quality metrics a run measured, per interval start (ISO) it measured them for.

    The warehouse keeps the values made from the latest labels; a re-run of an
    older interval is judged on these instead, the labels known at its end,
    as its first run was.

    Returns
    -------
    dict
        ``{interval_start: {metric: [value, sample_size]}}``, every one of
        `starts` present; non-finite values are left out.
    """
    from modelwatch.batch import ALL

    measured: dict[str, dict[str, list]] = {start.isoformat(): {} for start in starts}
    overall = metrics[(metrics["kind"] == "quality") & (metrics["model_version"] == ALL) & (metrics["segment"] == ALL)]
    for row in overall.itertuples():
        value = float(row.value) if pd.notna(row.value) else None
        if value is not None and np.isfinite(value):
            measured[pd.Timestamp(row.interval_start).isoformat()][row.metric] = [value, int(row.sample_size)]
    return measured


def mark_failed(model_name: str, start: datetime, end: datetime, run_id: str, reason: str,
                warehouse_url: str | None = None) -> None:
    """Record a run that failed before its load, so the interval never looks silently missing."""
    from modelwatch.warehouse import load as warehouse_load

    warehouse_load.mark_run_failed(
        warehouse_engine(warehouse_url), model_name, _utc(start), _utc(end), run_id, reason
    )


def mark_retrying(model_name: str, start: datetime, end: datetime, run_id: str, reason: str,
                  warehouse_url: str | None = None) -> None:
    """Record that a task of the run failed and will be tried again, and why."""
    from modelwatch.warehouse import load as warehouse_load

    warehouse_load.mark_run_retrying(
        warehouse_engine(warehouse_url), model_name, _utc(start), _utc(end), run_id, reason
    )


def mark_finished(model_name: str, start: datetime, run_id: str, warehouse_url: str | None = None) -> None:
    """Record that the run of the interval ended (a no-op when it already has): later intervals stop waiting."""
    from modelwatch.warehouse import load as warehouse_load

    warehouse_load.mark_run_finished(warehouse_engine(warehouse_url), model_name, _utc(start), run_id)


def mark_started(model_name: str, start: datetime, end: datetime, run_id: str,
                 warehouse_url: str | None = None) -> None:
    """Record that the run began, so an interval in progress is visible to analysts."""
    from modelwatch.warehouse import load as warehouse_load

    warehouse_load.mark_run_started(warehouse_engine(warehouse_url), model_name, _utc(start), _utc(end), run_id)


# ---------------------------------------------------------------- check, decide, act, notify

def _judged_span(model: ModelConfig, start: datetime, refreshed: list[datetime]) -> datetime:
    """The earliest interval start whose values the checks of this run may read."""
    earliest = min([start, *refreshed])
    return earliest - model.interval_length * (model.checks.history_intervals + model.checks.sustained_intervals)


def check(model_name: str, start: datetime, end: datetime, run_id: str, loaded: dict,
          config: ProjectConfig | None = None, warehouse_url: str | None = None) -> dict:
    """Judge the interval, and the earlier intervals whose labels this run refreshed; store the check rows.

    Returns
    -------
    dict
        ``rows``: every check row as a JSON-ready dict (`checks.rows.to_message`).
    """
    from modelwatch import checks
    from modelwatch.checks.rows import to_message
    from modelwatch.warehouse import load as warehouse_load
    from modelwatch.warehouse import queries

    _, model = _model(model_name, config)
    start, end = _utc(start), _utc(end)
    engine = warehouse_engine(warehouse_url)
    step = model.interval_length
    refreshed = [datetime.fromisoformat(moment) for moment in loaded["recomputed_intervals"]]
    since = _judged_span(model, start, refreshed)
    values = queries.interval_values(engine, model.name, since, start)
    history = checks.History(as_measured(values, loaded["quality_measured"]))
    stored = queries.check_history(engine, model.name, since, start)
    rows = checks.judge(
        model, start, end, history, stored, _champion_reference(model),
        refreshed=[(moment, moment + step) for moment in refreshed],
    )
    warehouse_load.write_check_results(engine, model.name, start, run_id, [row.to_dict() for row in rows])
    for row in rows:
        if row.breached:
            log.warning("%s %s %s (%s): %s", model.name, row.interval_start.date(), row.check_name,
                        "alerting" if row.alerting else f"breach {row.streak} of {row.consecutive}", row.reason)
    log.info("%s %s: %d checks, %d breached, %d alerting", model.name, start.date(), len(rows),
             sum(row.breached for row in rows), sum(row.alerting for row in rows))
    return {"rows": [to_message(row) for row in rows]}


def as_measured(values: pd.DataFrame, measured: dict[str, dict[str, list]]) -> pd.DataFrame:
    """`values` (`queries.interval_values`) with the quality metrics of the measured intervals replaced
    by the run's own (`quality_measured`): a re-run judges on the labels its interval knew, never later ones."""
    from modelwatch import catalogue

    starts = pd.to_datetime(list(measured), utc=True)
    interval_start = pd.to_datetime(values["interval_start"], utc=True)
    replaced = interval_start.isin(starts) & values["metric"].isin(catalogue.names("quality"))
    runs = values.assign(interval_start=interval_start).drop_duplicates("interval_start").set_index("interval_start")
    own = [
        {"interval_start": stamp, "interval_end": runs.at[stamp, "interval_end"], "metric": metric, "value": value,
         "sample_size": size, "run_status": runs.at[stamp, "run_status"]}
        for stamp, metrics in zip(starts, measured.values(), strict=True) if stamp in runs.index
        for metric, (value, size) in metrics.items()
    ]
    kept = values.loc[~replaced].assign(interval_start=interval_start[~replaced])
    if not own:
        return kept
    return pd.concat([kept, pd.DataFrame(own, columns=values.columns)], ignore_index=True).sort_values(
        ["interval_start", "metric"], ignore_index=True)


def _champion_reference(model: ModelConfig) -> dict[str, float]:
    """The champion's holdout metrics, when a threshold is relative to them."""
    if not any(rule.relative_to == "champion" for rule in model.thresholds.values()):
        return {}
    from modelwatch import registry

    champion = registry.champion_version(model.registry_name)
    return registry.version_metrics(model.registry_name, champion) if champion else {}


def decide(model_name: str, start: datetime, end: datetime, run_id: str, loaded: dict, checked: dict,
           mode: str = "on", config: ProjectConfig | None = None, warehouse_url: str | None = None) -> dict:
    """Decide what the interval calls for and record it in `model_actions`; returns the decision as a dict."""
    from modelwatch import decision as rules
    from modelwatch import facts as run_facts
    from modelwatch.checks.rows import from_message
    from modelwatch.warehouse import load as warehouse_load
    from modelwatch.warehouse import queries
    from modelwatch.warehouse.schema import ACTION_MODES

    if mode not in ACTION_MODES:
        raise ValueError(f"actions: expected one of {list(ACTION_MODES)} (got {mode!r})")
    config, model = _model(model_name, config)
    start, end = _utc(start), _utc(end)
    engine = warehouse_engine(warehouse_url)
    rows = [from_message(values) for values in checked["rows"]]
    facts = run_facts.gather(model, engine, config.staging_url, start, end, loaded, rows)
    decided = rules.decide(rows, facts)
    # What an earlier run of this interval told people: a re-run does not tell them again.
    earlier = queries.decision(engine, model.name, start, mode) or {}
    told_here = (earlier.get("condition") or {}).get("notified") if earlier.get("notified") else None
    warehouse_load.record_decision(engine, {
        "model_name": model.name, "interval_start": start, "interval_end": end, "mode": mode,
        "decision": decided.action, "severity": decided.severity, "reason": decided.reason,
        "checks": decided.checks, "run_id": run_id, "outcome": "decided", "detail": None,
        "from_version": facts.champion, "to_version": facts.champion, "served_version": facts.served_version,
        "notified": False, "notification": None,
        "condition": {"open": rules.condition_of(rows, decided), "notified": None, "told_here": told_here},
        "facts": _facts_record(facts),
    })
    log.info("%s %s: %s (%s): %s", model.name, start.date(), decided.action, mode, decided.reason)
    return decided.to_dict() | {"mode": mode}


def _facts_record(facts) -> dict:
    """The run facts as stored with the decision (times as ISO text)."""
    from dataclasses import asdict

    record = asdict(facts)
    if record["switch"] is not None:
        record["switch"]["live_since"] = record["switch"]["live_since"].isoformat()
    if record["champion_set_at"] is not None:
        record["champion_set_at"] = record["champion_set_at"].isoformat()
    return record


def act(model_name: str, action: str, start: datetime, end: datetime, run_id: str, mode: str = "on",
        config: ProjectConfig | None = None, warehouse_url: str | None = None) -> dict:
    """Carry out the recorded decision of the interval (the branch task of `action` calls this).

    ``retrain`` and ``rollback`` change the registry (unless `mode` is
    ``dry_run``); ``alert``, ``halt`` and ``healthy`` change nothing and leave
    the telling to `notify`. The outcome is stored on the decision's row.
    """
    from modelwatch.actions import ActionOutcome
    from modelwatch.warehouse import load as warehouse_load
    from modelwatch.warehouse import queries

    config, model = _model(model_name, config)
    start, end = _utc(start), _utc(end)
    engine = warehouse_engine(warehouse_url)
    recorded = queries.decision(engine, model.name, start, mode)
    if recorded is None or recorded["decision"] != action:
        raise RuntimeError(
            f"{model.name} {start.isoformat()}: the recorded decision ({mode}) is "
            f"{None if recorded is None else recorded['decision']!r}, not {action!r}; re-run `decide`"
        )
    if not warehouse_load.claim_decision(engine, model.name, start, mode, run_id):
        # Another run of the interval decided since: it acts on the decision, so this one must not act twice.
        deferred = ActionOutcome("deferred", f"run {_owner(engine, model, start, mode)} of the interval decided "
                                 f"since and acts on it; run {run_id} did nothing")
        log.info("%s %s %s: %s", model.name, start.date(), action, deferred.detail)
        return deferred.to_dict()
    dry_run = mode == "dry_run"
    champion = recorded["from_version"]
    if action == "retrain":
        from modelwatch.actions import retrain

        outcome = retrain.retrain(model, staging_url=config.staging_url, interval_start=start, interval_end=end,
                                  run_id=run_id, dry_run=dry_run)
    elif action == "rollback":
        from modelwatch.actions import rollback

        switch = (recorded["facts"] or {}).get("switch") or {}
        outcome = rollback.rollback(model, from_version=switch.get("version") or champion,
                                    to_version=switch.get("previous"), dry_run=dry_run, reason=recorded["reason"])
    else:
        words = {"alert": "alerted", "halt": "halted", "healthy": "none"}
        outcome = ActionOutcome(words[action], "no registry change", champion, champion)
    # An action that could not touch the registry leaves the champion the decision saw.
    warehouse_load.update_decision(
        engine, model.name, start, mode, outcome=outcome.outcome, detail=outcome.detail,
        from_version=outcome.from_version or champion, to_version=outcome.to_version or champion,
        facts=(recorded["facts"] or {}) | {"action": outcome.facts},
    )
    log.info("%s %s %s: %s: %s", model.name, start.date(), action, outcome.outcome, outcome.detail)
    return outcome.to_dict()


def _owner(engine, model: ModelConfig, start: datetime, mode: str) -> str | None:
    """The run that recorded the interval's decision last."""
    from modelwatch.warehouse import queries

    recorded = queries.decision(engine, model.name, start, mode)
    return None if recorded is None else recorded["run_id"]


# Outcomes that changed the registry or need a person whatever was notified before.
ALWAYS_TOLD = ("promoted", "kept_champion", "rolled_back", "refused", "not_possible", "disabled")


def notify(model_name: str, start: datetime, end: datetime, run_id: str, send, mode: str = "on",
           links: dict[str, str] | None = None, config: ProjectConfig | None = None,
           warehouse_url: str | None = None) -> dict:
    """Tell people about the interval's decision, unless it is healthy or an open condition already told.

    An open condition is told again only when a check joins it, one of its
    checks turns critical or gets worse (`decision.notification_due`); the
    outcome of a retrain or rollback is always told. A re-run of an older
    interval (a backfill over processed days) does not tell what the runs of
    later intervals had already told. A dry run tells no one and only logs.
    The run ends here: `monitoring_runs.finished_at` is set.

    Parameters
    ----------
    send : callable
        ``send(notification, emails=..., smtp_conn_id=..., webhook_conn_id=...)``
        returning a `NotificationReport` (the Airflow notifiers' `send`).
    """
    from modelwatch import decision as rules
    from modelwatch.warehouse import load as warehouse_load
    from modelwatch.warehouse import queries

    _, model = _model(model_name, config)
    start, end = _utc(start), _utc(end)
    engine = warehouse_engine(warehouse_url)
    recorded = queries.decision(engine, model.name, start, mode)
    if recorded is None:
        raise RuntimeError(f"{model.name} {start.isoformat()}: no decision recorded ({mode}); re-run `decide`")
    if recorded["run_id"] != run_id:
        told = f"not notified by run {run_id}: run {recorded['run_id']} of the interval decided since and tells"
        mark_finished(model.name, start, run_id, warehouse_url)
        log.info("%s %s: %s", model.name, start.date(), told)
        return {"notified": False, "notification": told}
    condition = recorded["condition"] or {"open": {}, "notified": None}
    previous = queries.decision(engine, model.name, start - model.interval_length, mode)
    previous_condition = (previous or {}).get("condition") or {}
    due, why = rules.notification_due(
        condition["open"], previous_condition.get("open"), previous_condition.get("notified")
    )
    repeated = (recorded["facts"] or {}).get("action") or {}
    # A repeated action found the registry as an earlier run of the interval left it: nothing new happened.
    outcome_told = recorded["outcome"] in ALWAYS_TOLD and not (
        repeated.get("repeat") and not repeated.get("finished_promotion"))
    if outcome_told:
        due, why = True, f"action outcome {recorded['outcome']}"
    told_here = condition.get("told_here")
    if due and told_here and not rules.notification_due(condition["open"], told_here, told_here)[0]:
        due, why = False, "already notified by an earlier run of this interval"
    elif due and not outcome_told:
        # A re-run of an older interval, e.g. a backfill: what its earlier runs and the next interval's had told.
        later = queries.decision(engine, model.name, start + model.interval_length, mode) or {}
        told_later = (later.get("condition") or {}).get("notified")
        told_so_far = {**(told_here or {}), **(told_later or {})}
        if told_later and not rules.notification_due(condition["open"], told_so_far, told_so_far)[0]:
            due, why = False, "already told by the runs of later intervals"
    if recorded["decision"] == "healthy":
        due, why = False, "healthy"
    told_before = previous_condition.get("notified") if condition["open"] else None
    sent, told_now = False, False
    if due and mode == "on":
        report = send(
            _notification(model, recorded, start, end, run_id, links or {}),
            emails=model.alerts.emails, smtp_conn_id=model.alerts.smtp_connection,
            webhook_conn_id=model.alerts.webhook_connection,
        )
        told = f"{why}: {report.describe()}"
        sent = bool(report.deliveries) and not report.failed
        # A failed delivery is tried again next interval: the condition does not count as told.
        told_now = not report.failed
    else:
        told = f"not notified ({'dry run' if mode == 'dry_run' and due else why})"
    notified = condition["open"] if told_now else told_before
    warehouse_load.update_decision(
        engine, model.name, start, mode, notified=sent or bool(told_here and not due), notification=told,
        condition={"open": condition["open"], "notified": notified or told_here, "told_here": told_here},
    )
    mark_finished(model.name, start, run_id, warehouse_url)
    log.info("%s %s %s: %s", model.name, start.date(), recorded["decision"], told)
    return {"notified": sent, "notification": told}


def _notification(model: ModelConfig, recorded: dict, start: datetime, end: datetime, run_id: str,
                  links: dict[str, str]):
    from modelwatch.actions.notify import Notification

    titles = {
        "halt": "data problem: no model decision on bad data",
        "rollback": "quality dropped after a new version: rolling back",
        "retrain": "quality dropped with drift: retraining",
        "alert": "needs attention",
    }
    conditions = [
        {"check_name": name, "severity": values["severity"], "excess": round(values["excess"], 3)}
        for name, values in (recorded["condition"] or {}).get("open", {}).items()
    ]
    outcome = f" Outcome: {recorded['outcome']}: {recorded['detail']}" if recorded["detail"] else ""
    return Notification(
        model_name=model.name, interval_start=start, interval_end=end, decision=recorded["decision"],
        severity=recorded["severity"] or "warning",
        title=f"{start.date().isoformat()}: {titles[recorded['decision']]}",
        reason=recorded["reason"] + outcome, conditions=conditions, links=links, run_id=run_id,
    )


# ---------------------------------------------------------------- publish


def publish_metrics(model_name: str, start: datetime, end: datetime, config: ProjectConfig | None = None,
                    warehouse_url: str | None = None) -> dict:
    """Push the interval's findings to the configured Pushgateway (`pushgateway.publish`); a no-op without one.

    Runs after the decision, in either `actions` mode: the push is what the
    warehouse holds for the interval, each decision labelled with its mode.
    A failed push is logged as a warning and never fails the run.

    Returns
    -------
    dict
        ``pushed``, ``detail`` and ``series`` (`pushgateway.Publication`).
    """
    config, model = _model(model_name, config)
    url = config.pushgateway_url
    if url is None:
        return {"pushed": False, "detail": "no Pushgateway configured", "series": 0}
    # Only now: without a gateway, prometheus_client is never imported.
    from modelwatch import pushgateway

    publication = pushgateway.publish(warehouse_engine(warehouse_url), model, _utc(start), _utc(end), url,
                                      timeout_s=config.pushgateway.timeout_seconds)
    return publication.to_dict()

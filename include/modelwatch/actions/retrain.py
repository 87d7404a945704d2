"""Retrain: fit a challenger on recent labeled logs, and promote it only if it beats the champion.

The challenger is a `sklearn.base.clone` of the champion's pipeline (same
steps and settings, unfitted), fitted on the labeled predictions of the
training window: the `retrain.training_window_intervals` intervals ending at
the run's interval end. Its most recent `retrain.holdout_intervals` labeled
intervals are a time-based holdout, never trained on, on which challenger
and champion are scored with the model's retrain metric. An interval counts
as labeled when it holds at least `checks.min_labels` labels, the bar below
which quality checks do not judge an interval either; the holdout runs from
the first of those intervals to the window's end, so the few labels of the
latest intervals are held out rather than trained on.

The challenger is registered whatever the comparison says, with its holdout
metrics, the champion's (``champion_<metric>``) and its lineage as tags
(`TAGS`); the `champion` alias moves to it only if it is better by more than
`retrain.min_improvement` in the metric's better direction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from modelwatch import catalogue, logs, registry
from modelwatch.actions import ActionOutcome
from modelwatch.actions.labeled import (
    LabeledRows,
    count_labeled,
    first_served,
    intervals_ending_at,
    read_labeled,
)
from modelwatch.config import ModelConfig

log = logging.getLogger(__name__)

ROLE_TAG = "modelwatch.role"
CHALLENGER = "challenger"
SOURCE_INTERVAL_TAG = "modelwatch.source_interval"
"""The start of the interval whose run trained the version (ISO): the key that makes a re-run register nothing."""
SOURCE_INTERVAL_END_TAG = "modelwatch.source_interval_end"
SOURCE_RUN_TAG = "modelwatch.source_run_id"
PARENT_TAG = "modelwatch.parent_version"
TRAINING_WINDOW_START_TAG = "modelwatch.training_window_start"
TRAINING_WINDOW_END_TAG = "modelwatch.training_window_end"
"""Where a version's training data ends (ISO); newer labels count as new for it (`new_labels_since_champion`)."""
HOLDOUT_WINDOW_START_TAG = "modelwatch.holdout_window_start"
HOLDOUT_WINDOW_END_TAG = "modelwatch.holdout_window_end"
TRAINING_ROWS_TAG = "modelwatch.training_rows"
HOLDOUT_ROWS_TAG = "modelwatch.holdout_rows"
METRIC_TAG = "modelwatch.metric"
DECISION_TAG = "modelwatch.decision"
"""``promoted`` or ``kept_champion``: what the run that registered the challenger decided."""
DETAIL_TAG = "modelwatch.decision_detail"
PROMOTED_AT_TAG = "modelwatch.promoted_at"
"""Set once the `champion` alias points at the challenger."""

TAGS = (
    ROLE_TAG, SOURCE_INTERVAL_TAG, SOURCE_INTERVAL_END_TAG, SOURCE_RUN_TAG, PARENT_TAG,
    TRAINING_WINDOW_START_TAG, TRAINING_WINDOW_END_TAG, HOLDOUT_WINDOW_START_TAG, HOLDOUT_WINDOW_END_TAG,
    TRAINING_ROWS_TAG, HOLDOUT_ROWS_TAG, METRIC_TAG, DECISION_TAG, DETAIL_TAG, PROMOTED_AT_TAG,
)
"""Every tag retraining sets on the versions it registers."""

PROMOTED = "promoted"
KEPT_CHAMPION = "kept_champion"
CHAMPION_PREFIX = "champion_"
"""Run metrics of a challenger named ``champion_<metric>`` hold the champion's value on the same holdout."""


def retrain(
    model: ModelConfig,
    *,
    staging_url: str,
    interval_start: datetime,
    interval_end: datetime,
    run_id: str,
    dry_run: bool,
) -> ActionOutcome:
    """Train a challenger for the interval, register it, and promote it if it beats the champion.

    A re-run of the same interval (same model and `interval_start`, any run)
    registers nothing: it finds the challenger the first run registered (tag
    `SOURCE_INTERVAL_TAG`) and reports that run's recorded decision, with its
    `from_version` (the champion it was compared with) and `to_version` (the
    champion that run left). The one thing it still does is finish a
    promotion the first run decided but did not complete (no `PROMOTED_AT_TAG`
    yet), provided the champion is still that run's champion or the
    challenger itself; a champion moved since (say, by a rollback) is left alone.

    Parameters
    ----------
    model : ModelConfig
        The model; `retrain`, `retrain_metric`, `checks.min_labels`, `registry_name` apply.
    staging_url : str
        The staging area holding the published batches of past intervals.
    interval_start, interval_end : datetime
        The run's data interval; the training window ends at `interval_end`.
    run_id : str
        The Airflow run, recorded as the challenger's source.
    dry_run : bool
        Train and compare, but register nothing and move nothing.

    Returns
    -------
    ActionOutcome
        ``outcome`` is one of ``promoted`` (registered, now champion),
        ``kept_champion`` (registered, not better enough), ``refused``
        (``facts["reason"]``: ``not_enough_labels``), ``not_possible`` (no
        champion, or one that cannot be cloned and refitted), ``disabled``
        (`retrain.enabled` is false) or ``dry_run``. `from_version` and
        `to_version` are the champion before and after.
    """
    name = model.registry_name
    champion = registry.champion_version(name)
    if not model.retrain.enabled:
        return ActionOutcome(
            "disabled",
            f"retraining {model.name} is switched off (retrain.enabled: false in the models file); "
            f"the champion stays {_shown(champion)}",
            champion, champion,
        )
    if champion is None:
        return _no_champion(model)
    earlier = registry.find_versions(name, SOURCE_INTERVAL_TAG, _stamp(interval_start))
    if earlier:
        return _repeated(model, earlier[-1], champion, dry_run)
    metric = model.retrain_metric
    if catalogue.metric(metric).better == "neither":
        return ActionOutcome(
            "not_possible",
            f"{model.name}: retrain.metric {metric!r} has no better direction, so no challenger can beat the "
            "champion on it; choose another quality metric of the task",
            champion, champion, {"reason": "metric_without_direction", "metric": metric},
        )
    split = _split(model, staging_url, interval_end)
    if isinstance(split, ActionOutcome):
        return ActionOutcome(split.outcome, split.detail, champion, champion, split.facts)
    champion_pipeline = _load_refittable(model, champion)
    if isinstance(champion_pipeline, ActionOutcome):
        return champion_pipeline
    trial = _Trial.run(model, champion, champion_pipeline, split)
    if dry_run:
        would = "promote it" if trial.promote else f"keep champion v{champion}"
        return ActionOutcome(
            "dry_run",
            f"dry run: would register the challenger and {would}; {trial.detail}; nothing registered or moved",
            champion, champion, {**trial.facts, "would": trial.decision},
        )
    version = _register(model, trial, split, interval_start, interval_end, run_id)
    facts = {**trial.facts, "challenger_version": version}
    log.info("%s: registered challenger v%s (%s): %s", model.name, version, trial.decision, trial.detail)
    if not trial.promote:
        return ActionOutcome(
            KEPT_CHAMPION,
            f"kept champion v{champion}, registered challenger v{version} for the record: {trial.detail}",
            champion, champion, facts,
        )
    _promote(name, version)
    return ActionOutcome(
        PROMOTED, f"champion moved from v{champion} to v{version}: {trial.detail}", champion, version, facts
    )


def new_labels_since_champion(
    model: ModelConfig, *, staging_url: str, interval_end: datetime, since: datetime | None = None
) -> int:
    """Labeled predictions of the training window that the champion cannot have been trained on.

    Counts the answered predictions of the `retrain.training_window_intervals`
    intervals ending at `interval_end` that carry a label known by
    `interval_end` (the rows `read_labeled` returns) and whose request
    ``timestamp`` is at or after the champion's training cutoff:

    - for a version retraining registered, the end of its training window
      (`TRAINING_WINDOW_END_TAG`);
    - for any other, the earlier of the time it was registered and the first
      request it answered in the window: no version is trained on the labels
      of requests it served itself, which matters when a registry is filled
      after the logs it is judged on (backfills, the simulator's backdated logs).

    and, when `since` is given (the end of the last interval that decided to
    retrain), at or after it too: a challenger that did not win is not tried
    again on the same labels.

    Without a champion every labeled prediction of the window counts
    (retraining then reports that it is not possible).
    """
    window = intervals_ending_at(model, interval_end, model.retrain.training_window_intervals)
    champion = registry.champion_version(model.registry_name)
    cutoff = None
    if champion is not None:
        cutoff = _trained_until(model, staging_url, window, registry.get_version(model.registry_name, champion))
    if since is not None:
        cutoff = since if cutoff is None else max(cutoff, since)
    return count_labeled(model, staging_url, window, interval_end, served_since=cutoff)


def holdout_metrics(model: ModelConfig, pipeline: Any, rows: LabeledRows) -> dict[str, float]:
    """Every comparable quality metric of the task for `pipeline` replayed on `rows`.

    Computed with `sklearn.metrics` as `modelwatch.metrics` documents them:
    classification scores are the probability of `model.positive_label`;
    ``mape`` leaves out rows with label 0; a metric undefined on the rows
    (AUC with one class, precision without predicted positives) is NaN.
    ``positive_rate`` is left out: no direction of it is better.
    """
    scorers = _scorers(model.task)
    if not len(rows):
        return {name: float("nan") for name in scorers}
    if model.task == catalogue.CLASSIFICATION:
        positive = positive_column(model, pipeline)
        score = pipeline.predict_proba(rows.inputs)[:, positive]
        predicted = (pipeline.predict(rows.inputs) == pipeline.classes_[positive]).astype(np.int64)
    else:
        predicted, score = pipeline.predict(rows.inputs), None
    return {name: float(scorer(rows.labels, predicted, score)) for name, scorer in scorers.items()}


def improvement(metric: str, candidate: float, reference: float) -> float:
    """How far `candidate` is on the better side of `reference` for `metric` (negative: worse; NaN: undefined)."""
    return catalogue.metric(metric).worse(reference, candidate)


def positive_column(model: ModelConfig, pipeline: Any) -> int:
    """The column of `predict_proba` that holds `model.positive_label`'s probability.

    Raises
    ------
    ValueError
        The pipeline is not a binary classifier with that class (its classes compared as text).
    """
    classes = list(logs.canonical_text(pd.Series(list(getattr(pipeline, "classes_", [])), dtype=object)))
    if len(classes) != 2 or model.positive_label not in classes:
        raise ValueError(
            f"expected a binary classifier with the positive class {model.positive_label!r}; "
            f"its classes are {classes}"
        )
    return classes.index(model.positive_label)


# ---------------------------------------------------------------- the steps


def _no_champion(model: ModelConfig) -> ActionOutcome:
    versions = [info.version for info in registry.list_versions(model.registry_name)]
    known = (
        f"registered model {model.registry_name!r} has versions {', '.join(versions)} but no alias `champion`"
        if versions
        else f"the registry knows no model {model.registry_name!r}"
    )
    return ActionOutcome(
        "not_possible",
        f"{model.name} has no `champion` in the MLflow registry ({known}): retrain not possible; "
        "register the served scikit-learn pipeline and point `champion` at it (modelwatch.registry.register_model, "
        "set_champion), or set retrain.enabled: false for a model monitored from its logs only",
        None, None, {"reason": "no_champion", "registered_versions": versions},
    )


def _repeated(model: ModelConfig, earlier: registry.VersionInfo, champion: str, dry_run: bool) -> ActionOutcome:
    """The recorded result of the challenger an earlier run registered for this interval (see `retrain`)."""
    name, tags = model.registry_name, earlier.tags
    decision, parent, metric = tags.get(DECISION_TAG, KEPT_CHAMPION), tags.get(PARENT_TAG), tags.get(METRIC_TAG, "")
    left = earlier.version if decision == PROMOTED else parent  # the champion the first run left
    unfinished = decision == PROMOTED and PROMOTED_AT_TAG not in tags and champion in (parent, earlier.version)
    recorded = registry.version_metrics(name, earlier.version)
    facts = {
        "repeat": True,
        "finished_promotion": unfinished and not dry_run,
        "challenger_version": earlier.version,
        "source_run_id": tags.get(SOURCE_RUN_TAG),
        "recorded_decision": decision,
        "champion_now": champion,
        "metric": metric,
        "challenger_value": recorded.get(metric),
        "champion_value": recorded.get(CHAMPION_PREFIX + metric),
    }
    first = f"challenger v{earlier.version} was registered for this interval by run {tags.get(SOURCE_RUN_TAG)}"
    if dry_run:
        action = "would finish its promotion" if unfinished else "would register and move nothing"
        return ActionOutcome("dry_run", f"dry run: {first} ({decision}); a run now {action}", champion, champion,
                             facts)
    if unfinished:
        _promote(name, earlier.version)
        champion = earlier.version
    notes = ["nothing new registered"]
    if unfinished:
        notes.append("finished the promotion it decided")
    if champion != left:
        notes.append(f"the champion has moved since and is now v{champion}")
    return ActionOutcome(
        decision, f"{first}; {'; '.join(notes)}; recorded: {tags.get(DETAIL_TAG, decision)}", parent, left, facts
    )


@dataclass(frozen=True)
class _Split:
    """The labeled rows a challenger is trained on and those it is compared on."""

    training: LabeledRows
    holdout: LabeledRows
    training_window: tuple[datetime, datetime]
    holdout_window: tuple[datetime, datetime]

    def windows(self) -> dict[str, str]:
        return {
            "training_window_start": _stamp(self.training_window[0]),
            "training_window_end": _stamp(self.training_window[1]),
            "holdout_window_start": _stamp(self.holdout_window[0]),
            "holdout_window_end": _stamp(self.holdout_window[1]),
        }


def _split(model: ModelConfig, staging_url: str, interval_end: datetime) -> _Split | ActionOutcome:
    """The training and holdout rows of the window ending at `interval_end`; or a refusal naming the labels missing."""
    policy = model.retrain
    window = intervals_ending_at(model, interval_end, policy.training_window_intervals)
    rows = read_labeled(model, staging_url, window, interval_end)
    labeled = [p for p, count in enumerate(rows.labels_per_interval()) if count >= model.checks.min_labels]
    facts = {
        "reason": "not_enough_labels",
        "labels": len(rows),
        "labeled_intervals": len(labeled),
        "holdout_intervals": policy.holdout_intervals,
        "min_labels_per_interval": model.checks.min_labels,
        "min_training_labels": policy.min_training_labels,
        "unpublished_intervals": [_stamp(start) for start, _ in rows.unpublished],
    }
    if len(labeled) < policy.holdout_intervals:
        return ActionOutcome(
            "refused",
            f"not enough labels to retrain {model.name}: {len(labeled)} of the {len(window)} intervals up to "
            f"{_stamp(interval_end)} hold {model.checks.min_labels} labels (checks.min_labels), and the holdout "
            f"needs {policy.holdout_intervals} such intervals (retrain.holdout_intervals)",
            facts=facts,
        )
    holdout_from = labeled[-policy.holdout_intervals]
    held_out = rows.interval_positions >= holdout_from
    training, holdout = rows.take(~held_out), rows.take(held_out)
    if len(training) > policy.max_training_rows:
        # The most recent rows: after a drift they are the ones like what the model will see.
        recent = np.zeros(len(training), dtype=bool)
        recent[-policy.max_training_rows:] = True
        log.info("%s: training on the latest %d of %d labeled predictions (retrain.max_training_rows)",
                 model.name, policy.max_training_rows, len(training))
        training = training.take(recent)
    facts["training_labels"] = len(training)
    if len(training) < policy.min_training_labels:
        return ActionOutcome(
            "refused",
            f"not enough labels to retrain {model.name}: {len(training):,} labeled predictions before the holdout, "
            f"{policy.min_training_labels:,} needed (retrain.min_training_labels)",
            facts=facts,
        )
    if model.task == catalogue.CLASSIFICATION:
        for part, part_rows in (("training", training), ("holdout", holdout)):
            if len(np.unique(part_rows.labels)) < 2:
                return ActionOutcome(
                    "refused",
                    f"not enough labels to retrain {model.name}: the {part} labels hold one class only",
                    facts={**facts, "one_class": part},
                )
    holdout_start = window[holdout_from][0]
    return _Split(training, holdout, (window[0][0], holdout_start), (holdout_start, interval_end))


def _load_refittable(model: ModelConfig, version: str) -> Any:
    """The champion's pipeline, or a `not_possible` outcome saying why it cannot be cloned and refitted."""
    from mlflow.exceptions import MlflowException

    def impossible(why: str) -> ActionOutcome:
        return ActionOutcome(
            "not_possible",
            f"{model.name}: champion v{version} {why}: retrain not possible; the challenger is a clone of the "
            "champion's scikit-learn pipeline, refitted on the logs",
            version, version, {"reason": "champion_not_refittable"},
        )

    try:
        pipeline = registry.load_model(model.registry_name, version)
    except MlflowException as exc:
        return impossible(f"cannot be loaded as a scikit-learn pipeline ({exc.message})")
    if model.task == catalogue.CLASSIFICATION:
        try:
            positive_column(model, pipeline)
        except ValueError as exc:
            return impossible(f"is not usable: {exc}")
    return pipeline


def _fit_challenger(model: ModelConfig, champion: Any, training: LabeledRows) -> Any:
    """An unfitted clone of the champion, fitted on the training rows with the champion's class values."""
    from sklearn.base import clone

    target = training.labels
    if model.task == catalogue.CLASSIFICATION:
        # Fitted on the champion's own class values, so the challenger answers in the same form.
        positive = positive_column(model, champion)
        target = np.where(training.labels == 1, champion.classes_[positive], champion.classes_[1 - positive])
    return clone(champion).fit(training.inputs, target)


@dataclass(frozen=True)
class _Trial:
    """A challenger fitted on the training rows, and how it and the champion did on the holdout."""

    challenger: Any
    challenger_metrics: dict[str, float]
    champion_metrics: dict[str, float]
    promote: bool
    detail: str
    facts: dict[str, Any]

    @classmethod
    def run(cls, model: ModelConfig, champion: str, champion_pipeline: Any, split: _Split) -> _Trial:
        log.info("%s: fitting a clone of champion v%s on %d labeled predictions of %s",
                 model.name, champion, len(split.training), _span(split.training_window))
        challenger = _fit_challenger(model, champion_pipeline, split.training)
        challenger_metrics = holdout_metrics(model, challenger, split.holdout)
        champion_metrics = holdout_metrics(model, champion_pipeline, split.holdout)
        metric, floor = model.retrain_metric, model.retrain.min_improvement
        challenger_value, champion_value = challenger_metrics[metric], champion_metrics[metric]
        gain = improvement(metric, challenger_value, champion_value)
        promote = bool(gain > floor)  # NaN (a metric undefined on the holdout) never promotes
        if promote:
            verdict = f"challenger better by {gain:.4f} (more than min_improvement {floor})"
        elif np.isfinite(gain):
            side = "better" if gain >= 0 else "worse"
            verdict = f"challenger not better by more than min_improvement {floor} ({side} by {abs(gain):.4f})"
        else:
            verdict = f"{metric} is undefined on the holdout"
        detail = (
            f"{verdict}: {metric} {challenger_value:.4f} (challenger) vs {champion_value:.4f} (champion v{champion}) "
            f"on {len(split.holdout):,} holdout labels of {_span(split.holdout_window)}, after training on "
            f"{len(split.training):,} labels of {_span(split.training_window)}"
        )
        facts = {
            "metric": metric,
            "challenger_value": _number(challenger_value),
            "champion_value": _number(champion_value),
            "improvement": _number(gain),
            "min_improvement": floor,
            "champion_version": champion,
            "training_rows": len(split.training),
            "holdout_rows": len(split.holdout),
            **split.windows(),
            "unpublished_intervals": [_stamp(start) for start, _ in split.training.unpublished],
        }
        return cls(challenger, challenger_metrics, champion_metrics, promote, detail, facts)

    @property
    def decision(self) -> str:
        return PROMOTED if self.promote else KEPT_CHAMPION


def _register(
    model: ModelConfig, trial: _Trial, split: _Split, interval_start: datetime, interval_end: datetime, run_id: str
) -> str:
    """Register the challenger with its holdout metrics, the champion's, its lineage and the decision."""
    facts = trial.facts
    return registry.register_model(
        model.registry_name,
        trial.challenger,
        training_frame_info={
            "rows": len(split.training),
            "holdout_rows": len(split.holdout),
            "features": [f.name for f in model.features],
            "source": f"modelwatch retrain of {model.name}",
            "source_run_id": run_id,
            "data_interval": [_stamp(interval_start), _stamp(interval_end)],
            "parent_version": facts["champion_version"],
            **split.windows(),
            "unpublished_intervals": facts["unpublished_intervals"],
        },
        metrics={
            **_defined(trial.challenger_metrics),
            **{CHAMPION_PREFIX + key: value for key, value in _defined(trial.champion_metrics).items()},
        },
        tags={
            ROLE_TAG: CHALLENGER,
            SOURCE_INTERVAL_TAG: _stamp(interval_start),
            SOURCE_INTERVAL_END_TAG: _stamp(interval_end),
            SOURCE_RUN_TAG: run_id,
            PARENT_TAG: facts["champion_version"],
            TRAINING_WINDOW_START_TAG: _stamp(split.training_window[0]),
            TRAINING_WINDOW_END_TAG: _stamp(split.training_window[1]),
            HOLDOUT_WINDOW_START_TAG: _stamp(split.holdout_window[0]),
            HOLDOUT_WINDOW_END_TAG: _stamp(split.holdout_window[1]),
            TRAINING_ROWS_TAG: str(len(split.training)),
            HOLDOUT_ROWS_TAG: str(len(split.holdout)),
            METRIC_TAG: facts["metric"],
            DECISION_TAG: trial.decision,
            DETAIL_TAG: trial.detail,
        },
    )


def _promote(name: str, version: str) -> None:
    registry.set_champion(name, version)
    registry.set_version_tags(name, version, {PROMOTED_AT_TAG: datetime.now(UTC).isoformat()})


def _trained_until(
    model: ModelConfig, staging_url: str, window: list[tuple[datetime, datetime]], info: registry.VersionInfo
) -> datetime | None:
    """A version's training cutoff, as `new_labels_since_champion` defines it."""
    if TRAINING_WINDOW_END_TAG in info.tags:
        return datetime.fromisoformat(info.tags[TRAINING_WINDOW_END_TAG])
    registered = None if info.created_at_ms is None else datetime.fromtimestamp(info.created_at_ms / 1000, tz=UTC)
    moments = [m for m in (registered, first_served(model, staging_url, window, info.version)) if m is not None]
    return min(moments, default=None)


# ---------------------------------------------------------------- metrics


def _scorers(task: str) -> dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray | None], float]]:
    """Metric name -> f(labels, predicted, score); the quality metrics of `task` that have a better direction."""
    from sklearn import metrics as sk

    def both_classes(f):
        return lambda y, hard, soft: float(f(y, hard, soft)) if len(np.unique(y)) == 2 else float("nan")

    if task == catalogue.CLASSIFICATION:
        scorers = {
            "accuracy": lambda y, hard, soft: sk.accuracy_score(y, hard),
            "precision": lambda y, hard, soft: sk.precision_score(y, hard, zero_division=np.nan),
            "recall": lambda y, hard, soft: sk.recall_score(y, hard, zero_division=np.nan),
            "f1": lambda y, hard, soft: sk.f1_score(y, hard, zero_division=np.nan),
            "auc_roc": both_classes(lambda y, hard, soft: sk.roc_auc_score(y, soft)),
            "log_loss": lambda y, hard, soft: sk.log_loss(y, soft, labels=[0, 1]),
            "brier_score": lambda y, hard, soft: sk.brier_score_loss(y, soft, pos_label=1),
            "calibration_error": lambda y, hard, soft: _calibration_error(y, soft),
        }
    else:
        scorers = {
            "mae": lambda y, hard, soft: sk.mean_absolute_error(y, hard),
            "rmse": lambda y, hard, soft: sk.root_mean_squared_error(y, hard),
            "mape": lambda y, hard, soft: (
                sk.mean_absolute_percentage_error(y[y != 0], hard[y != 0]) if np.any(y != 0) else float("nan")
            ),
            "r2": lambda y, hard, soft: sk.r2_score(y, hard, force_finite=False) if len(y) > 1 else float("nan"),
        }
    return scorers


def _calibration_error(labels: np.ndarray, score: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over the uniform bins of `sklearn.calibration.calibration_curve`."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    codes = np.searchsorted(edges[1:-1], score)  # the binning calibration_curve uses
    rows = np.bincount(codes, minlength=bins)
    gaps = np.abs(np.bincount(codes, labels, bins) - np.bincount(codes, score, bins))
    return float(gaps.sum() / rows.sum())


# ---------------------------------------------------------------- wording


def _stamp(moment: datetime) -> str:
    """An interval bound as tags and facts record it: ISO 8601 in UTC."""
    return moment.astimezone(UTC).isoformat()


def _defined(values: dict[str, float]) -> dict[str, float]:
    return {key: value for key, value in values.items() if np.isfinite(value)}


def _number(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _shown(version: str | None) -> str:
    return f"v{version}" if version is not None else "unset"


def _span(window: tuple[datetime, datetime]) -> str:
    return f"{_stamp(window[0])} .. {_stamp(window[1])}"

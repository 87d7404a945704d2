"""The models file: what to watch and how, validated at the boundary.

A bad file raises `ConfigError` whose message names the model, the field and
what was expected, e.g.::

    models[credit_risk].features[2].type: Input should be 'numeric',
    'categorical' or 'boolean' (got 'text')

The whole file is validated at once and every problem goes into that one
error. The DAG file raises it, so Airflow shows one import error naming every
problem instead of quietly dropping the DAGs of the broken models.
"""

from __future__ import annotations

import difflib
import os
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from croniter import CroniterBadDateError, CroniterError, croniter
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from modelwatch import catalogue, settings

TaskKind = Literal["binary_classification", "regression"]
FeatureType = Literal["numeric", "categorical", "boolean"]
Severity = Literal["critical", "warning"]

SCHEDULE_PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
}
_SCHEDULE_EXPECTED = f"expected a 5-field cron expression or one of {sorted(SCHEDULE_PRESETS)}"
# Schedules are checked over three years from here: every calendar date three times, and a 29 February.
_CALENDAR_START = datetime(2027, 1, 1)
_CALENDAR_SPAN = timedelta(days=3 * 365 + 1)
# A rule on weekdays alone repeats every week, so two weeks show every interval it makes.
_WEEKDAY_SPAN = timedelta(days=15)
_MINUTES_PER_DAY = 24 * 60

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

PUSHGATEWAY_URL_ENV = "MODELWATCH_PUSHGATEWAY_URL"


def _name(value: str) -> str:
    # fullmatch: `$` would also accept a trailing newline
    if not _NAME.fullmatch(value):
        raise ValueError("expected a name of letters, digits and '_', not starting with a digit")
    return value


def _inside_data_dir(url: str) -> str:
    if settings.leaves_data_dir(url):
        raise ValueError(
            "expected a URL, an absolute path or a relative path inside the data folder "
            "(MODELWATCH_DATA_DIR); its '..' leads out of it"
        )
    return url


def _http_url(value: str) -> str:
    """A Pushgateway URL: http(s), a host, a valid port if any, no credentials; returned without a trailing '/'."""
    parts = urlsplit(value)
    try:
        port_valid = parts.port != 0
    except ValueError:  # not a number, or out of range
        port_valid = False
    # Credentials in the URL would be written into every log line that names it.
    if (parts.scheme not in ("http", "https") or not parts.hostname or not port_valid or "@" in parts.netloc
            or parts.query or parts.fragment):
        raise ValueError("expected an http:// or https:// URL with a host and no credentials, "
                         "e.g. 'http://pushgateway:9091'")
    return value.rstrip("/")


Name = Annotated[str, AfterValidator(_name)]
Root = Annotated[str, AfterValidator(_inside_data_dir)]


def _repeated(names: list[str]) -> list[str]:
    return sorted(name for name, count in Counter(names).items() if count > 1)


def _require_unique(what: str, names: list[str]) -> None:
    """Raise naming the repeated entries when `names` holds one twice."""
    repeated = _repeated(names)
    if repeated:
        raise ValueError(f"{what} must be unique (repeated: {repeated})")


def _as_utc(text: str) -> datetime:
    """Read an ISO date or date-time as an aware UTC datetime.

    Parameters
    ----------
    text : str
        ``2026-03-01``, ``2026-03-01T06:00:00`` or with an offset, ``2026-03-01T06:00:00+02:00``.
        A date, or a time without offset, is taken as UTC.

    Returns
    -------
    datetime
        The moment, with ``tzinfo=UTC``.

    Raises
    ------
    ValueError
        ``text`` is not an ISO date or date-time.
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("expected an ISO date or date-time, e.g. '2026-03-01' or '2026-03-01T06:00:00Z'") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _interval_lengths(cron: str) -> list[timedelta]:
    """The distinct lengths of the intervals between consecutive runs of a cron, shortest first.

    A cron runs at the same times of day (its minute and hour fields) on every
    day its day fields allow. So the intervals are the gaps between those times
    within a day, plus, from each allowed day to the next, the gap from the last
    time of the one to the first time of the other. Only the days are found by
    stepping croniter, and the usual schedules need a few steps at most: this
    runs at every parse of the DAG file.

    Parameters
    ----------
    cron : str
        A 5-field cron expression, read in UTC.

    Returns
    -------
    list of timedelta
        One length for a schedule whose intervals are all alike.

    Raises
    ------
    ValueError
        ``cron`` is not a 5-field expression croniter accepts, or it runs on
        fewer than two days in three years.
    """
    if len(cron.split()) != 5:
        raise ValueError(_SCHEDULE_EXPECTED)
    try:
        minutes, hours, *day_fields = croniter(cron).expanded
    except CroniterError as exc:
        raise ValueError(f"{_SCHEDULE_EXPECTED} ({exc})") from None
    times = sorted({60 * hour + minute for hour in _spelt_out(hours, 24) for minute in _spelt_out(minutes, 60)})
    gaps = {later - earlier for earlier, later in pairwise(times)}
    gaps |= {days * _MINUTES_PER_DAY + times[0] - times[-1] for days in _day_steps(cron, day_fields)}
    return [timedelta(minutes=gap) for gap in sorted(gaps)]


def _spelt_out(values: list[Any], size: int) -> list[int]:
    """A croniter field's values, with ``*`` (which may come with others, as in ``*,5``) written out."""
    return list(range(size)) if "*" in values else values


def _day_steps(cron: str, day_fields: list[list[Any]]) -> set[int]:
    """The distinct numbers of days from one day the cron runs on to the next."""
    day_of_month, month, day_of_week = day_fields
    if "*" in day_of_month and "*" in month and "*" in day_of_week:
        return {1}
    # croniter keeps '#' (nth weekday) and 'L' out of the expanded values; both tie weekdays to months.
    weekly = "*" in day_of_month and "*" in month and not re.search(r"[#lL]", cron.split()[4])
    end = _CALENDAR_START + (_WEEKDAY_SPAN if weekly else _CALENDAR_SPAN)
    midnights = croniter("0 0 " + " ".join(cron.split()[2:]), _CALENDAR_START - timedelta(minutes=1))
    days: list[datetime] = []
    try:
        for midnight in midnights.all_next(datetime):
            if midnight >= end:
                break
            days.append(midnight)
    except CroniterBadDateError:
        pass  # croniter found no further day at all (e.g. 30 February)
    if len(days) < 2:
        raise ValueError("expected a schedule that runs on at least two days in three years")
    return {(later - earlier).days for earlier, later in pairwise(days)}


def _duration(length: timedelta) -> str:
    """``15 minutes``, ``6 hours``, ``184 days 1 hour``: a whole number of minutes in words."""
    days, minutes = divmod(round(length.total_seconds() / 60), _MINUTES_PER_DAY)
    hours, minutes = divmod(minutes, 60)
    counts = (("day", days), ("hour", hours), ("minute", minutes))
    return " ".join(f"{count} {unit}" + ("" if count == 1 else "s") for unit, count in counts if count)


class ConfigError(ValueError):
    """The models file is missing, unreadable or does not match the schema."""


class _Strict(BaseModel):
    # NaN passes every bound check and infinity makes none; neither is a setting.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class FeatureConfig(_Strict):
    """One model input as the serving system logs it under `features`."""

    name: Name
    type: FeatureType
    min: float | None = None
    max: float | None = None
    allowed_values: list[str] | None = None
    max_null_fraction: float = Field(0.0, ge=0.0, le=1.0)
    drift_threshold: float | None = Field(
        None, gt=0, description="PSI above which this feature counts as drifted"
    )

    @model_validator(mode="after")
    def _fits_type(self) -> FeatureConfig:
        if self.type != "numeric" and (self.min is not None or self.max is not None):
            raise ValueError(f"min/max apply to numeric features only (type is {self.type!r})")
        if self.type != "categorical" and self.allowed_values is not None:
            raise ValueError("allowed_values applies to categorical features only")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class ReferenceConfig(_Strict):
    """What 'normal' looks like: a dataset, or the trailing intervals."""

    dataset: Root | None = Field(None, description="fsspec URL of a Parquet file of features")
    trailing_intervals: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> ReferenceConfig:
        if (self.dataset is None) == (self.trailing_intervals is None):
            raise ValueError("expected exactly one of 'dataset' or 'trailing_intervals'")
        return self


class DriftConfig(_Strict):
    psi_threshold: float = Field(0.2, gt=0)
    p_value: float = Field(0.01, gt=0, lt=1, description="family-wise level, Benjamini-Hochberg")
    bins: int = Field(10, ge=2, le=100)
    min_drifted_features: int = Field(1, ge=1)


class DataQualityConfig(_Strict):
    severities: dict[str, Severity] = Field(
        default_factory=dict,
        description="expectation name -> severity, overriding the built-in default",
    )
    volume_tolerance: float = Field(
        0.5, gt=0, description="allowed relative deviation from the recent median volume"
    )
    volume_history_intervals: int = Field(7, ge=1)
    freshness_max_lag_minutes: float = Field(
        120, gt=0, description="latest record may be at most this far before the interval end"
    )
    chunk_rows: int = Field(500_000, ge=1_000)


class MetricThreshold(_Strict):
    """A rule on one metric of the catalogue, judged on the interval's overall value.

    Absolute bounds (`min`, `max`), a bound relative to a baseline
    (`relative_to` with `max_worse`), or both.
    """

    min: float | None = None
    max: float | None = None
    relative_to: Literal["champion", "trailing_median"] | None = Field(
        None,
        description="champion: the champion's holdout value in the registry; "
        "trailing_median: the median of the model's recent intervals",
    )
    max_worse: float | None = Field(
        None, gt=0, description="largest change for the worse allowed, as a fraction of the baseline"
    )
    severity: Severity = "warning"
    consecutive: int = Field(1, ge=1, description="breaches in a row before the check alerts")

    @model_validator(mode="after")
    def _one_rule(self) -> MetricThreshold:
        if self.min is None and self.max is None and self.relative_to is None:
            raise ValueError("expected at least one of min, max or relative_to")
        if (self.relative_to is None) != (self.max_worse is None):
            raise ValueError("relative_to and max_worse go together")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class IsolationForestConfig(_Strict):
    """IsolationForest over the trailing history of each interval's vector of monitored metrics."""

    enabled: bool = True
    contamination: float = Field(
        0.02, gt=0, le=0.5, description="share of the history the forest treats as anomalous"
    )
    min_history: int = Field(14, ge=5, description="past intervals needed before the forest judges")
    consecutive: int = Field(2, ge=1, description="anomalous intervals in a row before the check alerts")
    severity: Severity = "warning"


class ChecksConfig(_Strict):
    """Control limits and anomaly detection on each model's own history."""

    metrics: list[str] | None = Field(
        None, description="metrics judged on their history; default: the catalogue's monitored metrics"
    )
    history_intervals: int = Field(30, ge=3, description="past intervals the limits and the forest learn from")
    min_history: int = Field(7, ge=3, description="past intervals needed before control limits judge")
    control_limit_sigma: float = Field(
        3.5, gt=0, description="one interval breaches beyond this many standard errors from its history"
    )
    sustained_intervals: int = Field(
        2, ge=1, description="the latest intervals pooled to catch a small sustained shift (1: off)"
    )
    sustained_sigma: float = Field(
        3.0, gt=0, description="the pooled intervals breach beyond this many standard errors"
    )
    min_labels: int = Field(200, ge=1, description="fewer labels than this: quality checks say insufficient_labels")
    control_limit_severity: Severity = "warning"
    control_limit_consecutive: int = Field(1, ge=1)
    isolation_forest: IsolationForestConfig = IsolationForestConfig()


class RetrainConfig(_Strict):
    enabled: bool = True
    min_new_labels: int = Field(1000, ge=0, description="labels since the champion was trained")
    training_window_intervals: int = Field(14, ge=1)
    holdout_intervals: int = Field(1, ge=1, description="the most recent labeled intervals kept for comparison")
    min_training_labels: int = Field(500, ge=1)
    max_training_rows: int = Field(
        50_000, ge=1, description="the latest labeled predictions of the window a challenger trains on at most"
    )
    metric: str | None = Field(None, description="compared on the holdout; default: the task's primary metric")
    min_improvement: float = Field(0.0, ge=0, description="in the metric's units, in its better direction")


class RollbackConfig(_Strict):
    enabled: bool = True
    window_intervals: int = Field(3, ge=1, description="intervals after a version went live that it can be undone")


class AlertConfig(_Strict):
    """Where notifications go; addresses and URLs live in Airflow connections."""

    emails: list[str] = Field(default_factory=list)
    smtp_connection: str = Field("smtp_default", description="Airflow connection of the SMTP server")
    webhook_connection: str | None = Field(
        None, description="Airflow connection holding a Slack-compatible webhook URL (docs/notifications.md)"
    )


class TimeoutsConfig(_Strict):
    """How long one try of each task of `monitor_<model>` may run, in minutes."""

    wait_for_logs: float = Field(10, gt=0, description="per poke: the sensor frees its slot between pokes")
    extract: float = Field(60, gt=0)
    # Named `validate` in the file; as a field name it would shadow `BaseModel.validate`.
    validate_: float = Field(60, gt=0, alias="validate")
    measure: float = Field(60, gt=0)
    load: float = Field(30, gt=0)
    check: float = Field(30, gt=0)
    decide: float = Field(30, gt=0)
    act: float = Field(120, gt=0, description="each branch after decide; a retrain trains a model")
    notify: float = Field(10, gt=0)
    publish_metrics: float = Field(5, gt=0, description="pushing the findings to the Pushgateway, if configured")


class ModelConfig(_Strict):
    """One deployed model and everything its `monitor_<name>` DAG needs."""

    name: Name
    task: TaskKind
    log_root: Root = "logs"
    schedule: str = "@daily"
    start_date: str = "2026-01-01"
    owner: str = "ml-platform"
    positive_label: str = "1"
    log_wait_minutes: float = Field(
        360, ge=0, description="how long after the interval ends to wait for missing partitions"
    )
    features: Annotated[list[FeatureConfig], Field(min_length=1)]
    # Before `segments`, whose check reads it.
    context: list[Name] = Field(
        default_factory=list, description="keys of the records' `context` the serving system logs"
    )
    segments: list[Name] = Field(default_factory=list)
    reference: ReferenceConfig = ReferenceConfig(trailing_intervals=7)
    label_maturity_intervals: int = Field(
        7, ge=0, description="earlier intervals whose label metrics each run recomputes"
    )
    thresholds: dict[str, MetricThreshold] = Field(default_factory=dict)
    data_quality: DataQualityConfig = DataQualityConfig()
    drift: DriftConfig = DriftConfig()
    checks: ChecksConfig = ChecksConfig()
    retrain: RetrainConfig = RetrainConfig()
    rollback: RollbackConfig = RollbackConfig()
    alerts: AlertConfig = AlertConfig()
    timeouts: TimeoutsConfig = TimeoutsConfig()
    registered_model: str | None = Field(None, description="MLflow name; defaults to `name`")

    @field_validator("schedule")
    @classmethod
    def _one_interval_length(cls, value: str) -> str:
        lengths = [_duration(length) for length in _interval_lengths(SCHEDULE_PRESETS.get(value, value))]
        if len(lengths) > 1:
            raise ValueError(
                f"expected intervals of one length, found intervals of {', '.join(lengths[:-1])} and {lengths[-1]}"
            )
        return value

    @field_validator("start_date")
    @classmethod
    def _iso_start(cls, value: str) -> str:
        _as_utc(value)
        return value

    @field_validator("features")
    @classmethod
    def _unique_features(cls, features: list[FeatureConfig]) -> list[FeatureConfig]:
        _require_unique("feature names", [f.name for f in features])
        return features

    @field_validator("context")
    @classmethod
    def _distinct_context(cls, keys: list[str], info: ValidationInfo) -> list[str]:
        _require_unique("context keys", keys)
        # A segment named like both would be ambiguous.
        shadowed = sorted(set(keys) & {f.name for f in info.data.get("features", [])})
        if shadowed:
            raise ValueError(f"context keys must differ from feature names (both: {shadowed})")
        return keys

    @field_validator("segments")
    @classmethod
    def _known_segments(cls, segments: list[str], info: ValidationInfo) -> list[str]:
        if "features" not in info.data or "context" not in info.data:
            return segments  # their own errors are reported; without them no segment can be judged
        features = {f.name: f for f in info.data["features"]}
        context = info.data["context"]
        groupable = sorted([name for name, f in features.items() if f.type != "numeric"] + context)
        problems = []
        repeated = _repeated(segments)
        if repeated:
            problems.append(f"segment keys must be unique (repeated: {repeated})")
        for key in dict.fromkeys(segments):
            if key in features and features[key].type == "numeric":
                problems.append(f"segment {key!r} is a numeric feature, and continuous values make no segments")
            elif key not in features and key not in context:
                close = difflib.get_close_matches(key, groupable, n=1)
                problems.append(
                    f"segment {key!r} is neither a feature nor a `context` key"
                    + (f" (did you mean {close[0]!r}?)" if close else "")
                )
        if problems:
            raise ValueError(
                "; ".join(problems) + "; expected a categorical or boolean feature or a key listed in `context`"
                f" ({', '.join(groupable) or 'none'})"
            )
        return segments

    @field_validator("thresholds")
    @classmethod
    def _known_threshold_metrics(cls, thresholds: dict[str, MetricThreshold], info: ValidationInfo):
        if "task" not in info.data:
            return thresholds
        problems = []
        for name, rule in thresholds.items():
            try:
                catalogue.check_metric_for_task(name, info.data["task"])
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
                continue
            if rule.relative_to == "champion" and catalogue.metric(name).kind != "quality":
                problems.append(f"{name}: relative_to 'champion' applies to quality metrics only")
        if problems:
            raise ValueError("; ".join(problems))
        return thresholds

    @model_validator(mode="after")
    def _known_checked_metrics(self) -> ModelConfig:
        named = {"checks.metrics": self.checks.metrics or [], "retrain.metric": [self.retrain.metric or ""]}
        problems = []
        for field_name, metrics in named.items():
            for name in filter(None, metrics):
                try:
                    catalogue.check_metric_for_task(name, self.task)
                except ValueError as exc:
                    problems.append(f"{field_name}: {name}: {exc}")
        if self.retrain.metric and self.retrain.metric in catalogue.CATALOGUE and (
            catalogue.metric(self.retrain.metric).kind != "quality"
        ):
            problems.append(f"retrain.metric: {self.retrain.metric!r} is not a quality metric")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def checked_metrics(self) -> list[str]:
        """The metrics judged on their history: `checks.metrics`, or the task's monitored ones."""
        return list(self.checks.metrics or catalogue.monitored(self.task))

    @property
    def retrain_metric(self) -> str:
        """The metric challenger and champion are compared on."""
        return self.retrain.metric or catalogue.primary(self.task)

    @property
    def cron(self) -> str:
        return SCHEDULE_PRESETS.get(self.schedule, self.schedule)

    @property
    def start(self) -> datetime:
        """`start_date` as an aware UTC datetime; a date, or a time without offset, is UTC."""
        return _as_utc(self.start_date)

    @property
    def interval_length(self) -> timedelta:
        """Length of one interval: the time between consecutive runs, alike for all (checked on reading)."""
        (length,) = _interval_lengths(self.cron)
        return length

    def execution_timeout(self, task_name: str) -> timedelta:
        """How long one try of a task may run; for `wait_for_logs`, one poke.

        Parameters
        ----------
        task_name : str
            A task of `monitor_<model>`: ``wait_for_logs``, ``extract``, ``validate``, ``measure``,
            ``load``, ``check``, ``decide``, ``act`` (every branch after decide), ``notify`` or
            ``publish_metrics``.

        Returns
        -------
        timedelta
            The task's entry in `timeouts`.

        Raises
        ------
        KeyError
            The DAG has no task of that name.
        """
        minutes = self.timeouts.model_dump(by_alias=True)
        if task_name not in minutes:
            raise KeyError(f"no task named {task_name!r}; expected one of {list(minutes)}")
        return timedelta(minutes=minutes[task_name])

    @property
    def log_url(self) -> str:
        return settings.resolve_root(self.log_root)

    @property
    def registry_name(self) -> str:
        return self.registered_model or self.name

    def feature(self, name: str) -> FeatureConfig:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(f"model {self.name!r} has no feature {name!r}")


class PushgatewayConfig(_Strict):
    """Where every run pushes its findings as Prometheus gauges (docs/prometheus.md)."""

    url: Annotated[str, AfterValidator(_http_url)] | None = Field(
        None, description=f"the Pushgateway; {PUSHGATEWAY_URL_ENV} overrides it; none: nothing is pushed"
    )
    timeout_seconds: float = Field(10, gt=0, le=300, description="each connect and read of a push; then it is given up")


class ProjectConfig(_Strict):
    """The whole models file."""

    staging_root: Root = "staging"
    pushgateway: PushgatewayConfig = PushgatewayConfig()
    models: Annotated[list[ModelConfig], Field(min_length=1)]

    # A field validator, not a model one, so the error's location reads `models`.
    @field_validator("models")
    @classmethod
    def _unique_models(cls, models: list[ModelConfig]) -> list[ModelConfig]:
        _require_unique("model names", [m.name for m in models])
        return models

    @property
    def staging_url(self) -> str:
        return settings.resolve_root(self.staging_root)

    @property
    def pushgateway_url(self) -> str | None:
        """The Pushgateway runs push to: `MODELWATCH_PUSHGATEWAY_URL` unless unset or empty, else `pushgateway.url`.

        Returns
        -------
        str or None
            None when neither names one: nothing is pushed.

        Raises
        ------
        ConfigError
            The variable holds no http(s) URL; the models file's own value was checked when it was read.
        """
        overridden = os.environ.get(PUSHGATEWAY_URL_ENV)
        if not overridden:
            return self.pushgateway.url
        try:
            return _http_url(overridden)
        except ValueError as exc:
            raise ConfigError(f"{PUSHGATEWAY_URL_ENV}: {exc} (got {overridden!r})") from None

    def model(self, name: str) -> ModelConfig:
        for model in self.models:
            if model.name == name:
                return model
        raise ConfigError(f"no model named {name!r}; configured: {[m.name for m in self.models]}")


def _location(raw: dict[str, Any], loc: tuple[Any, ...]) -> str:
    """Render a pydantic error location, naming models by their name, not index."""
    parts: list[str] = []
    for i, key in enumerate(loc):
        if i == 1 and loc[0] == "models" and isinstance(key, int):
            models = raw.get("models") or []
            name = models[key].get("name") if key < len(models) and isinstance(models[key], dict) else None
            # An invalid name (say, with a newline) would garble the location; its own error shows it.
            parts[-1] = f"models[{name if isinstance(name, str) and _NAME.fullmatch(name) else key}]"
        elif isinstance(key, int):
            parts[-1] = f"{parts[-1]}[{key}]"
        else:
            parts.append(str(key))
    return ".".join(parts)


def parse_config(raw: Any, source: str = "<config>") -> ProjectConfig:
    """Validate an already-loaded mapping; errors name model, field and expectation."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with a 'models' list at the top")
    try:
        return ProjectConfig.model_validate(raw)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            got = error.get("input")
            shown = "" if isinstance(got, dict | list) else f" (got {got!r})"
            lines.append(f"  {_location(raw, error['loc'])}: {error['msg']}{shown}")
        raise ConfigError(f"{source} is not a valid models file:\n" + "\n".join(lines)) from None


def load_config(path: str | Path | None = None) -> ProjectConfig:
    """Read and validate the models file (default: `MODELWATCH_CONFIG`)."""
    file = Path(path) if path is not None else settings.config_path()
    try:
        raw = yaml.safe_load(file.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read models file {file}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file} is not valid YAML: {exc}") from None
    return parse_config(raw, str(file))

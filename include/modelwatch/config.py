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
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal

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

from modelwatch import settings

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


Name = Annotated[str, AfterValidator(_name)]
Root = Annotated[str, AfterValidator(_inside_data_dir)]


def _repeated(names: list[str]) -> list[str]:
    return sorted(name for name, count in Counter(names).items() if count > 1)


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
    stepping croniter, and the usual schedules need no step at all: this runs at
    every parse of the DAG file.

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
    """``15 minutes``, ``6 hours``, ``1 day``: the length in its largest whole unit."""
    minutes = round(length.total_seconds() / 60)
    unit, size = next((u, s) for u, s in (("day", _MINUTES_PER_DAY), ("hour", 60), ("minute", 1)) if minutes % s == 0)
    count = minutes // size
    return f"{count} {unit}" + ("" if count == 1 else "s")


class ConfigError(ValueError):
    """The models file is missing, unreadable or does not match the schema."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureConfig(_Strict):
    """One model input as the serving system logs it under `features`."""

    name: str
    type: FeatureType
    min: float | None = None
    max: float | None = None
    allowed_values: list[str] | None = None
    max_null_fraction: float = Field(0.0, ge=0.0, le=1.0)
    drift_threshold: float | None = Field(
        None, gt=0, description="PSI above which this feature counts as drifted"
    )

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"expected a name of letters, digits and '_' (got {value!r})")
        return value

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

    dataset: str | None = Field(None, description="fsspec URL of a Parquet file of features")
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
    min: float | None = None
    max: float | None = None
    severity: Severity = "warning"


class ChecksConfig(_Strict):
    history_intervals: int = Field(30, ge=3)
    control_limit_sigma: float = Field(3.0, gt=0)
    isolation_forest_contamination: float = Field(0.05, gt=0, lt=0.5)
    min_history: int = Field(7, ge=3)


class RetrainConfig(_Strict):
    enabled: bool = True
    min_new_labels: int = Field(1000, ge=0)
    training_window_intervals: int = Field(14, ge=1)
    min_improvement: float = Field(0.0, ge=0)


class RollbackConfig(_Strict):
    enabled: bool = True
    window_intervals: int = Field(3, ge=1)


class AlertConfig(_Strict):
    emails: list[str] = Field(default_factory=list)
    webhook_url: str | None = None


class ModelConfig(_Strict):
    """One deployed model and everything its `monitor_<name>` DAG needs."""

    name: str
    task: TaskKind
    log_root: str = "logs"
    schedule: str = "@daily"
    start_date: str = "2026-01-01"
    owner: str = "ml-platform"
    positive_label: str = "1"
    log_wait_minutes: float = Field(
        360, ge=0, description="how long after the interval ends to wait for missing partitions"
    )
    features: Annotated[list[FeatureConfig], Field(min_length=1)]
    segments: list[str] = Field(default_factory=list)
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
    registered_model: str | None = Field(None, description="MLflow name; defaults to `name`")

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"expected a name of letters, digits and '_' (got {value!r})")
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        cron = SCHEDULE_PRESETS.get(value, value)
        if len(cron.split()) != 5:
            raise ValueError(
                f"expected a 5-field cron expression or one of {sorted(SCHEDULE_PRESETS)} "
                f"(got {value!r})"
            )
        return value

    @model_validator(mode="after")
    def _unique_features(self) -> ModelConfig:
        names = [f.name for f in self.features]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"feature names must be unique (repeated: {duplicated})")
        return self

    @property
    def cron(self) -> str:
        return SCHEDULE_PRESETS.get(self.schedule, self.schedule)

    @property
    def interval_length(self) -> timedelta:
        """Nominal length of one interval, used to size trailing windows."""
        _minute, hour, _day_of_month, _, day_of_week = self.cron.split()
        if hour == "*":
            return timedelta(hours=1)
        if day_of_week != "*":
            return timedelta(weeks=1)
        return timedelta(days=1)

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


class ProjectConfig(_Strict):
    """The whole models file."""

    staging_root: str = "staging"
    models: Annotated[list[ModelConfig], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_models(self) -> ProjectConfig:
        names = [m.name for m in self.models]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"model names must be unique (repeated: {duplicated})")
        return self

    @property
    def staging_url(self) -> str:
        return settings.resolve_root(self.staging_root)

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
            parts[-1] = f"models[{name or key}]"
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

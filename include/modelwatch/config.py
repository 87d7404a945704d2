"""The models file: what to watch and how, validated at the boundary.

A bad file raises `ConfigError` whose message names the model, the field and
what was expected, e.g.::

    models[credit_risk].features[2].type: Input should be 'numeric',
    'categorical' or 'boolean' (got 'text')
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
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
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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

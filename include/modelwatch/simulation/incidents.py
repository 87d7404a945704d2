"""Incidents: scheduled trouble the simulator writes into the logs.

An incident has a kind, a first day (a day offset from the simulation start,
or a date), a model (None: every simulated model), a duration in days (None:
until the end of the period) and parameters. On the command line::

    kind@start[:model][,key=value]...
    sudden_drift@5:credit_risk,feature=income,factor=1.8
    error_burst@2026-03-06,rate=0.2,duration=2
    bad_version@9:credit_risk,mode=dropped_features,drop=debt_ratio|income

(`duration` sets `duration_days`; `|` separates list items.) In a YAML file,
a list of mappings with the keys `kind`, `start`, `model`, `duration_days` and
`params`, either at the top level or under `incidents:`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from modelwatch.config import ModelConfig

BASE_ERROR_RATE = 0.02

#: quality-break record kinds and how many records of each a break writes by default
QUALITY_BREAK_COUNTS = {
    "nulls": 20,
    "out_of_range": 12,
    "new_category": 15,
    "wrong_type": 8,
    "malformed_json": 5,
    "truncated_gz": 40,
    "duplicates": 12,
    "conflicting_duplicates": 6,
    "wrong_partition": 10,
    "model_name_mismatch": 7,
    "score_out_of_range": 6,
    "negative_latency": 9,
    "non_finite_latency": 4,
}
QUALITY_BREAK_FEATURES = {
    "null_feature": None,
    "range_feature": None,
    "category_feature": None,
    "type_feature": None,
}

#: parameters of each kind with their defaults (None: chosen per model)
PARAMETERS: dict[str, dict[str, Any]] = {
    "gradual_drift": {
        "feature": None,
        "factor": 1.5,
        "shift": 0.0,
        "value": None,
        "share": 0.5,
        "ramp_days": None,
    },
    "sudden_drift": {"feature": None, "factor": 1.8, "shift": 0.0, "value": None, "share": 0.5},
    "concept_drift": {"strength": 0.6},
    "latency_spike": {"factor": 6.0},
    "error_burst": {"rate": 0.15, "error": "UpstreamError"},
    "data_quality_break": {**QUALITY_BREAK_COUNTS, **QUALITY_BREAK_FEATURES},
    "bad_version": {"mode": "dropped_features", "drop": None, "noise": 0.5, "rows": 5000},
    "label_delay": {"factor": 4.0},
}
KINDS = tuple(PARAMETERS)
BAD_VERSION_MODES = ("dropped_features", "corrupted_labels")
_DURATION_KEYS = ("duration", "duration_days", "days")


class IncidentError(ValueError):
    """An incident spec or file that cannot be understood."""


@dataclass(frozen=True, eq=True)
class Incident:
    """One scheduled incident; see the module docstring for the spec grammar."""

    kind: str
    start: int | date
    model: str | None = None
    duration_days: int | None = None
    params: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.kind not in PARAMETERS:
            raise IncidentError(
                f"unknown incident kind {self.kind!r}; expected one of {list(KINDS)}"
            )
        if isinstance(self.start, bool) or not isinstance(self.start, int | date):
            raise IncidentError(
                f"{self.kind}: start must be a day offset or a date (got {self.start!r})"
            )
        if self.duration_days is not None and self.duration_days < 1:
            raise IncidentError(
                f"{self.kind}: duration_days must be at least 1 (got {self.duration_days})"
            )
        unknown = sorted(set(self.params) - set(PARAMETERS[self.kind]))
        if unknown:
            raise IncidentError(
                f"{self.kind}: unknown parameter(s) {unknown}; "
                f"expected some of {sorted(PARAMETERS[self.kind])}"
            )
        if self.kind == "bad_version" and self.param("mode") not in BAD_VERSION_MODES:
            raise IncidentError(f"bad_version: mode must be one of {list(BAD_VERSION_MODES)}")

    def param(self, name: str) -> Any:
        """A parameter's value, or the kind's default."""
        return self.params.get(name, PARAMETERS[self.kind][name])

    def offset(self, period_start: date) -> int:
        """The first day as an offset from the simulation start."""
        return self.start if isinstance(self.start, int) else (self.start - period_start).days

    def active_on(self, day_index: int, period_start: date) -> bool:
        first = self.offset(period_start)
        return day_index >= first and (
            self.duration_days is None or day_index < first + self.duration_days
        )

    def spec(self) -> str:
        """The incident in command-line form."""
        text = f"{self.kind}@{self.start}" + (f":{self.model}" if self.model else "")
        items = [f"duration={self.duration_days}"] if self.duration_days else []
        items += [f"{key}={_render(value)}" for key, value in sorted(self.params.items())]
        return ",".join([text, *items])


def _render(value: Any) -> str:
    return "|".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def _value(text: str) -> Any:
    """A parameter value from the command line: int, float, bool, list (a|b) or str."""
    if "|" in text:
        return [_value(part) for part in text.split("|") if part]
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _start(text: str) -> int | date:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise IncidentError(f"start must be a day offset or YYYY-MM-DD (got {text!r})") from None


def parse_incident(spec: str) -> Incident:
    """Parse `kind@start[:model][,key=value]...` into an Incident."""
    head, *items = [part.strip() for part in spec.split(",")]
    if "@" not in head:
        raise IncidentError(f"{spec!r}: expected kind@start[:model][,key=value]...")
    kind, _, when = head.partition("@")
    when, _, model = when.partition(":")
    params: dict[str, Any] = {}
    duration = None
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise IncidentError(f"{spec!r}: expected key=value after a comma (got {item!r})")
        if key in _DURATION_KEYS:
            duration = int(raw)
        else:
            params[key] = _value(raw)
    return Incident(kind.strip(), _start(when.strip()), model.strip() or None, duration, params)


def incident_from_mapping(raw: Any, where: str) -> Incident:
    """An Incident from one YAML mapping."""
    if not isinstance(raw, dict):
        raise IncidentError(f"{where}: expected a mapping with kind and start (got {raw!r})")
    unknown = sorted(set(raw) - {"kind", "start", "model", "duration_days", "params"})
    if unknown or "kind" not in raw or "start" not in raw:
        raise IncidentError(
            f"{where}: expected keys kind, start and optionally model, duration_days, params"
            + (f" (unknown: {unknown})" if unknown else "")
        )
    start = raw["start"] if isinstance(raw["start"], int | date) else _start(str(raw["start"]))
    try:
        return Incident(
            raw["kind"],
            start,
            raw.get("model"),
            raw.get("duration_days"),
            dict(raw.get("params") or {}),
        )
    except IncidentError as exc:
        raise IncidentError(f"{where}: {exc}") from None


def load_incidents(path: str | Path) -> list[Incident]:
    """Read incidents from a YAML file (a list, or a mapping with an `incidents` list)."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise IncidentError(f"cannot read incidents file {path}: {exc}") from None
    if isinstance(raw, dict):
        raw = raw.get("incidents")
    if not isinstance(raw, list):
        raise IncidentError(f"{path}: expected a list of incidents (or `incidents:` with a list)")
    return [incident_from_mapping(item, f"{path}: incident {i}") for i, item in enumerate(raw)]


#: the schedule of `make demo`: 14 days, each kind once, see docs/simulator.md
DEFAULT_SCHEDULE: list[Incident] = [
    Incident("data_quality_break", 2, "credit_risk", 1),
    Incident("latency_spike", 3, "delivery_time", 1, {"factor": 6.0}),
    Incident("label_delay", 4, "delivery_time", 3, {"factor": 4.0}),
    Incident("error_burst", 5, "credit_risk", 1, {"rate": 0.15}),
    Incident("gradual_drift", 6, "delivery_time", None, {"feature": "distance_km", "factor": 1.6}),
    Incident(
        "sudden_drift", 7, "credit_risk", None, {"feature": "country", "value": "PL", "share": 0.4}
    ),
    Incident("concept_drift", 10, "delivery_time", None, {"strength": 0.6}),
    Incident("bad_version", 11, "credit_risk", None, {"mode": "dropped_features"}),
]


def check_for_model(incident: Incident, model: ModelConfig) -> None:
    """Raise IncidentError when an incident names features the model does not have."""
    names = {f.name for f in model.features}
    named = [incident.params.get(key) for key in ("feature", *QUALITY_BREAK_FEATURES)]
    named += list(incident.params.get("drop") or [])
    missing = sorted({str(n) for n in named if n is not None and n not in names})
    if missing:
        raise IncidentError(f"{incident.spec()}: model {model.name!r} has no feature(s) {missing}")
    feature = incident.params.get("feature")
    if (
        incident.params.get("value") is not None
        and feature
        and model.feature(feature).type == "numeric"
    ):
        raise IncidentError(
            f"{incident.spec()}: `value` applies to categorical or boolean features"
        )


@dataclass
class DayEffects:
    """What the active incidents change on one day of one model."""

    active: list[Incident] = field(default_factory=list)
    drifts: list[tuple[Incident, float]] = field(default_factory=list)
    concept: float = 0.0
    latency_factor: float = 1.0
    error_rate: float = BASE_ERROR_RATE
    burst_error: str | None = None
    label_delay_factor: float = 1.0
    quality_break: Incident | None = None
    bad_version: Incident | None = None


def _ramp(incident: Incident, day_index: int, period_start: date, days: int) -> float:
    """Drift level on a day: 1 for sudden drift, a linear ramp to 1 for gradual drift."""
    if incident.kind == "sudden_drift":
        return 1.0
    first = incident.offset(period_start)
    window = incident.duration_days or max(1, days - first)
    ramp = incident.param("ramp_days") or window
    return min(1.0, (day_index - first + 1) / ramp)


def day_effects(
    incidents: list[Incident], day_index: int, period_start: date, days: int
) -> DayEffects:
    """Combine the incidents active on `day_index` into one DayEffects."""
    effects = DayEffects()
    for incident in sorted(incidents, key=lambda i: i.offset(period_start)):
        if not incident.active_on(day_index, period_start):
            continue
        effects.active.append(incident)
        kind = incident.kind
        if kind in ("gradual_drift", "sudden_drift"):
            effects.drifts.append((incident, _ramp(incident, day_index, period_start, days)))
        elif kind == "concept_drift":
            effects.concept = min(1.0, effects.concept + float(incident.param("strength")))
        elif kind == "latency_spike":
            effects.latency_factor *= float(incident.param("factor"))
        elif kind == "error_burst":
            effects.error_rate = max(effects.error_rate, float(incident.param("rate")))
            effects.burst_error = str(incident.param("error"))
        elif kind == "label_delay":
            effects.label_delay_factor *= float(incident.param("factor"))
        elif kind == "data_quality_break":
            effects.quality_break = incident
        else:
            effects.bad_version = incident
    return effects


def apply_drift(
    model: ModelConfig,
    features: dict[str, np.ndarray],
    incident: Incident,
    level: float,
    default_feature: str,
    rng: np.random.Generator,
) -> None:
    """Move one feature in place: numbers scaled and shifted, categories or flags replaced."""
    name = incident.param("feature") or default_feature
    feature = model.feature(name)
    values = features[name]
    if feature.type == "numeric":
        factor = 1 + (float(incident.param("factor")) - 1) * level
        moved = values * factor + float(incident.param("shift")) * level
        low = -np.inf if feature.min is None else feature.min
        high = np.inf if feature.max is None else feature.max
        features[name] = np.clip(moved, low, high)
        return
    chosen = rng.random(len(values)) < float(incident.param("share")) * level
    value = incident.param("value")
    if feature.type == "boolean":
        features[name] = np.where(chosen, True if value is None else bool(value), values)
    else:
        default = (feature.allowed_values or sorted(set(values.tolist())) or ["other"])[-1]
        features[name] = np.where(chosen, default if value is None else str(value), values).astype(
            object
        )

"""What each task of `monitor_<model>` does, as plain functions of (model, interval).

Tasks pass only small dictionaries (folder URLs, counts, verdicts) between
each other; data moves through the staged folder and the warehouse.
"""

from __future__ import annotations

from datetime import datetime, timezone

from modelwatch import extract as extract_module
from modelwatch import logs
from modelwatch.config import ModelConfig, ProjectConfig, load_config


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"interval bound {moment} has no time zone; expected an aware datetime")
    return datetime.fromtimestamp(moment.timestamp(), tz=timezone.utc)


def _model(name: str, config: ProjectConfig | None = None) -> tuple[ProjectConfig, ModelConfig]:
    config = config or load_config()
    return config, config.model(name)


def missing_partitions(model_name: str, start: datetime, end: datetime) -> list[str]:
    """Prediction partitions of the interval that have not arrived yet."""
    _, model = _model(model_name)
    return logs.missing_prediction_partitions(model, _utc(start), _utc(end))


def extract(model_name: str, start: datetime, end: datetime, config: ProjectConfig | None = None) -> dict:
    """Stage the interval's batch; returns the manifest as a small dictionary."""
    config, model = _model(model_name, config)
    manifest = extract_module.extract_interval(model, _utc(start), _utc(end), config.staging_url)
    return manifest.to_dict()

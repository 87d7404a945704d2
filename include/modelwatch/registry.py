"""The model registry: MLflow, with the served version under the alias `champion`.

The tracking and registry store is `settings.default_mlflow_uri()` unless
`configure` is given another URI: by default an SQLite file in the data folder.
Model artifacts go to a folder next to that SQLite file (or to the data
folder for other database URIs), never to the current directory. A remote
tracking server (`http://`, `https://`, `databricks`) keeps its own artifact
location.

MLflow is imported inside the functions (it takes seconds to import), its
logging is kept at WARNING and its telemetry is switched off.

Example::

    from modelwatch import registry

    registry.configure()
    version = registry.register_model(
        "credit_risk", pipeline,
        training_frame_info={"rows": 20000}, metrics={"auc_roc": 0.88}, tags={},
    )
    registry.set_champion("credit_risk", version)
    model = registry.load_model("credit_risk")          # the champion
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from modelwatch import settings

CHAMPION = "champion"
EXPERIMENT = "modelwatch"
ARTIFACT_FOLDER = "mlflow-artifacts"

_QUIET_LOGGERS = ("mlflow", "alembic", "sqlalchemy", "skops")
_REMOTE_SCHEMES = ("http", "https", "databricks", "databricks-uc")

_state: dict[str, str | None] = {"uri": None}


@dataclass(frozen=True)
class VersionInfo:
    """One registered version of a model."""

    name: str
    version: str
    run_id: str | None
    aliases: tuple[str, ...]
    tags: dict[str, str] = field(default_factory=dict)
    created_at_ms: int | None = None


def _mlflow():
    """Import MLflow with telemetry off and its loggers quiet."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    import mlflow

    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return mlflow


def _sqlite_file(uri: str) -> Path | None:
    """The database file of an `sqlite:///…` URI, else None."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    path = uri[len(prefix) :]
    return None if path in ("", ":memory:") else Path(path)


def artifact_location(tracking_uri: str) -> str | None:
    """Where the experiment keeps artifacts for a tracking URI (None: the server decides)."""
    if urlparse(tracking_uri).scheme in _REMOTE_SCHEMES:
        return None
    database = _sqlite_file(tracking_uri)
    folder = database.parent if database is not None else settings.data_dir()
    return (folder / ARTIFACT_FOLDER).resolve().as_uri()


def configure(tracking_uri: str | None = None) -> str:
    """Point MLflow's tracking and registry at `tracking_uri` (default: the project's store).

    Creates the folder of an SQLite store when missing. Returns the URI in use.
    """
    mlflow = _mlflow()
    uri = tracking_uri or settings.default_mlflow_uri()
    database = _sqlite_file(uri)
    if database is not None:
        database.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    _state["uri"] = uri
    return uri


def _client():
    """An MlflowClient on the configured store, configuring the default one on first use."""
    mlflow = _mlflow()
    uri = _state["uri"] or configure()
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _experiment_id(client) -> str:
    """The id of the `modelwatch` experiment, created with an explicit artifact location."""
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(EXPERIMENT, artifact_location=artifact_location(_state["uri"]))


def _ensure_registered(client, name: str) -> None:
    """Create the registered model `name` unless it exists."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name)


def _requirements() -> list[str]:
    """Pinned requirements of a logged pipeline, so MLflow need not infer them."""
    from importlib.metadata import version

    return [f"scikit-learn=={version('scikit-learn')}", f"skops=={version('skops')}"]


def _trusted_types(pipeline: Any) -> list[str]:
    """The types skops must trust to load `pipeline`: exactly those this process created."""
    import skops.io

    return skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))


def _flat_params(info: dict[str, Any]) -> dict[str, str]:
    """Training-frame facts as MLflow params (lists and mappings as JSON text)."""
    return {
        key: value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        for key, value in info.items()
    }


def register_model(
    name: str,
    pipeline: Any,
    *,
    training_frame_info: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str],
) -> str:
    """Log a fitted scikit-learn pipeline in a run and register it as a new version of `name`.

    Parameters
    ----------
    name:
        Registered model name (created on first use).
    pipeline:
        A fitted scikit-learn estimator, stored in the `skops` format. The
        caller vouches for it: the types it contains are recorded as trusted,
        so `load_model` can read it back.
    training_frame_info:
        Facts about the training data (rows, period, seed, features); logged as
        run params and as the artifact `training_frame.json`.
    metrics:
        Holdout metrics of the pipeline, logged on the run.
    tags:
        Set on the run and on the new model version.

    Returns
    -------
    The new version number, as a string.
    """
    mlflow = _mlflow()
    client = _client()
    with mlflow.start_run(experiment_id=_experiment_id(client), run_name=f"train-{name}") as run:
        mlflow.log_params(_flat_params(training_frame_info))
        mlflow.log_dict(training_frame_info, "training_frame.json")
        mlflow.log_metrics({key: float(value) for key, value in metrics.items()})
        mlflow.set_tags(tags)
        logged = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            pip_requirements=_requirements(),
            serialization_format="skops",
            skops_trusted_types=_trusted_types(pipeline),
        )
    _ensure_registered(client, name)
    created = client.create_model_version(
        name,
        source=logged.model_uri,
        run_id=run.info.run_id,
        tags={**{key: str(value) for key, value in tags.items()}, "run_id": run.info.run_id},
        model_id=logged.model_id,
    )
    return str(created.version)


def set_champion(name: str, version: str | int) -> None:
    """Make `version` the served version of `name` (moves the `champion` alias)."""
    _client().set_registered_model_alias(name, CHAMPION, str(version))


def champion_version(name: str) -> str | None:
    """The version the `champion` alias points at, or None (no such model or no alias)."""
    from mlflow.exceptions import MlflowException

    try:
        return str(_client().get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def model_uri(name: str, version_or_alias: str | int = CHAMPION) -> str:
    """`models:/name/3` for a version number, `models:/name@alias` for an alias."""
    text = str(version_or_alias)
    return f"models:/{name}/{text}" if text.isdigit() else f"models:/{name}@{text}"


def load_model(name: str, version_or_alias: str | int = CHAMPION) -> Any:
    """Load a registered scikit-learn pipeline by version number or alias (default: champion)."""
    mlflow = _mlflow()
    _client()
    return mlflow.sklearn.load_model(model_uri(name, version_or_alias))


def _version_info(version, aliases: tuple[str, ...]) -> VersionInfo:
    return VersionInfo(
        name=version.name,
        version=str(version.version),
        run_id=version.run_id,
        aliases=tuple(sorted(aliases)),
        tags=dict(version.tags or {}),
        created_at_ms=version.creation_timestamp,
    )


def list_versions(name: str) -> list[VersionInfo]:
    """Every registered version of `name`, oldest first (empty when the model is unknown)."""
    client = _client()
    versions = client.search_model_versions(f"name = '{name}'")
    if not versions:
        return []
    aliases: dict[str, list[str]] = {}
    for alias, version in client.get_registered_model(name).aliases.items():
        aliases.setdefault(str(version), []).append(alias)
    infos = [_version_info(v, tuple(aliases.get(str(v.version), ()))) for v in versions]
    return sorted(infos, key=lambda info: int(info.version))


def get_version(name: str, version: str | int) -> VersionInfo | None:
    """One registered version of `name`, or None when the model or the version is unknown."""
    from mlflow.exceptions import MlflowException

    try:
        found = _client().get_model_version(name, str(version))
    except MlflowException:
        return None
    return _version_info(found, tuple(found.aliases or ()))


def find_versions(name: str, tag: str, value: str) -> list[VersionInfo]:
    """The versions of `name` whose tag `tag` equals `value`, oldest first."""
    return [info for info in list_versions(name) if info.tags.get(tag) == value]


def set_version_tags(name: str, version: str | int, tags: dict[str, Any]) -> None:
    """Set (or overwrite) tags on one registered version; values are stored as text."""
    client = _client()
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))


def version_metrics(name: str, version: str | int) -> dict[str, float]:
    """The metrics logged on the run that registered a version (empty without a run or metrics).

    Raises
    ------
    KeyError
        `name` has no such version.
    """
    info = get_version(name, version)
    if info is None:
        raise KeyError(f"model {name!r} has no registered version {version!r}")
    if info.run_id is None:
        return {}
    return dict(_client().get_run(info.run_id).data.metrics)

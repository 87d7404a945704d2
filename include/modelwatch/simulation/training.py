"""The served models: real scikit-learn pipelines, trained on a world's data and kept in MLflow.

Every simulated model version carries two tags: its role (`baseline` or
`bad_version`) and a fingerprint of everything that determines it (world,
features, seed, training recipe, scikit-learn version). Re-running the
simulator finds a version with the same fingerprint and loads it instead of
registering another one, so repeated runs serve the same versions and write the
same logs.

Pipeline input: one column per configured feature; numeric and boolean
features as float (booleans 0/1, NaN = missing), categorical features as str
(None = missing). `modelwatch.model_input.model_frame` builds that frame.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib.metadata import version as package_version
from typing import Any

import fsspec
import numpy as np
import pandas as pd

from modelwatch import registry
from modelwatch.config import ModelConfig
from modelwatch.model_input import model_frame
from modelwatch.simulation.traffic import MINUTE_SHARE, MINUTES_PER_DAY
from modelwatch.simulation.worlds import Arrays, World, stable_hash

TRAINING_ROWS = 20_000
REFERENCE_ROWS = 50_000
BAD_VERSION_ROWS = 5_000
HOLDOUT_SHARE = 0.25
THRESHOLD = 0.5
ROLE_TAG = "modelwatch.simulator.role"
FINGERPRINT_TAG = "modelwatch.simulator.fingerprint"
TRAINING_STREAM = 0x7EA1


@dataclass
class ServedModel:
    """A registered version the simulated serving system answers with."""

    version: str
    pipeline: Any
    role: str
    reused: bool
    metrics: dict[str, float] = field(default_factory=dict)


def build_pipeline(model: ModelConfig, used: list[str] | None = None):
    """An unfitted pipeline: scaling and one-hot encoding, then gradient boosting.

    `used` restricts the inputs to some features (the others are ignored).
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    chosen = [f for f in model.features if used is None or f.name in used]
    numeric = [f.name for f in chosen if f.type != "categorical"]
    categorical = [f.name for f in chosen if f.type == "categorical"]
    steps = []
    if numeric:
        scaled = Pipeline(
            [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
        )
        steps.append(("numeric", scaled, numeric))
    if categorical:
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        steps.append(("categorical", encoder, categorical))
    estimator_class = (
        HistGradientBoostingClassifier
        if model.task == "binary_classification"
        else HistGradientBoostingRegressor
    )
    estimator = estimator_class(
        max_iter=100, learning_rate=0.12, early_stopping=False, random_state=0
    )
    return Pipeline([("prepare", ColumnTransformer(steps, remainder="drop")), ("model", estimator)])


def serve(
    model: ModelConfig, pipeline: Any, features: Arrays
) -> tuple[np.ndarray, np.ndarray | None]:
    """Predictions (and scores for classification) of `pipeline` for a block of requests."""
    frame = model_frame(model, features)
    if len(frame) == 0:
        return np.zeros(0), (np.zeros(0) if model.task == "binary_classification" else None)
    if model.task == "binary_classification":
        score = np.round(pipeline.predict_proba(frame)[:, 1], 6)
        return (score >= THRESHOLD).astype(float), score
    return np.round(pipeline.predict(frame), 2), None


def holdout_metrics(
    model: ModelConfig, pipeline: Any, features: Arrays, y: np.ndarray
) -> dict[str, float]:
    """AUC, F1 and accuracy (classification) or MAE and RMSE (regression) on held-out rows."""
    from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, roc_auc_score

    prediction, score = serve(model, pipeline, features)
    if model.task == "binary_classification":
        return {
            "auc_roc": float(roc_auc_score(y, score)),
            "f1": float(f1_score(y, prediction)),
            "accuracy": float(accuracy_score(y, prediction)),
        }
    return {
        "mae": float(mean_absolute_error(y, prediction)),
        "rmse": float(np.sqrt(np.mean((y - prediction) ** 2))),
    }


def training_data(world: World, seed: int, rows: int) -> tuple[Arrays, np.ndarray]:
    """Historical requests of a world (clean, before any incident) with their outcomes."""
    rng = np.random.default_rng([seed, stable_hash(world.model.name), TRAINING_STREAM, rows])
    minutes = np.sort(rng.choice(MINUTES_PER_DAY, size=rows, p=MINUTE_SHARE))
    features = world.sample(rng, minutes)
    context = world.context(rng, features)
    return features, world.target(rng, features, context, 0.0)


def _split(
    features: Arrays, y: np.ndarray, holdout: int
) -> tuple[Arrays, np.ndarray, Arrays, np.ndarray]:
    train = {name: values[holdout:] for name, values in features.items()}
    test = {name: values[:holdout] for name, values in features.items()}
    return train, y[holdout:], test, y[:holdout]


def _corrupt(y: np.ndarray, share: float, seed: int) -> np.ndarray:
    """Shuffle the labels of a random `share` of the rows among themselves."""
    rng = np.random.default_rng([seed, TRAINING_STREAM, 1])
    chosen = np.flatnonzero(rng.random(len(y)) < share)
    corrupted = y.copy()
    corrupted[chosen] = rng.permutation(y[chosen])
    return corrupted


def recipe(world: World, role: str, params: dict[str, Any]) -> dict[str, Any]:
    """The training recipe of a version: rows, features used, label corruption."""
    if role == "baseline":
        return {"rows": TRAINING_ROWS, "drop": [], "label_noise": 0.0}
    mode = params.get("mode", "dropped_features")
    drop = list(params.get("drop") or world.key_features) if mode == "dropped_features" else []
    noise = float(params.get("noise", 0.5)) if mode == "corrupted_labels" else 0.0
    return {"rows": int(params.get("rows", BAD_VERSION_ROWS)), "drop": drop, "label_noise": noise}


def fit(model: ModelConfig, world: World, seed: int, plan: dict[str, Any]):
    """Train a pipeline following `plan` (see `recipe`); returns it with holdout metrics."""
    rows = plan["rows"]
    features, y = training_data(world, seed, rows)
    train, y_train, test, y_test = _split(features, y, int(rows * HOLDOUT_SHARE))
    if plan["label_noise"]:
        y_train = _corrupt(y_train, plan["label_noise"], seed)
    used = [f.name for f in model.features if f.name not in plan["drop"]]
    pipeline = build_pipeline(model, used).fit(model_frame(model, train), y_train)
    return pipeline, holdout_metrics(model, pipeline, test, y_test)


def fingerprint(
    model: ModelConfig, world: World, seed: int, role: str, plan: dict[str, Any]
) -> str:
    """A short hash of everything that determines a simulated version."""
    facts = {
        "role": role,
        "plan": plan,
        "seed": seed,
        "world": type(world).__name__,
        "model": model.model_dump(include={"task", "features"}),
        "scikit-learn": package_version("scikit-learn"),
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _registered(name: str, mark: str) -> str | None:
    """The version of `name` tagged with fingerprint `mark`, if one is registered."""
    for info in registry.list_versions(name):
        if info.tags.get(FINGERPRINT_TAG) == mark:
            return info.version
    return None


def ensure_version(
    model: ModelConfig, world: World, seed: int, role: str, params: dict[str, Any] | None = None
) -> ServedModel:
    """Load the simulated version with this recipe from the registry, or train and register it."""
    plan = recipe(world, role, params or {})
    mark = fingerprint(model, world, seed, role, plan)
    found = _registered(model.registry_name, mark)
    if found is not None:
        return ServedModel(
            found, registry.load_model(model.registry_name, found), role, reused=True
        )
    pipeline, metrics = fit(model, world, seed, plan)
    info = {
        "rows": plan["rows"],
        "holdout_rows": int(plan["rows"] * HOLDOUT_SHARE),
        "features": [f.name for f in model.features if f.name not in plan["drop"]],
        "dropped_features": plan["drop"],
        "label_noise": plan["label_noise"],
        "seed": seed,
        "source": f"modelwatch simulator ({type(world).__name__})",
    }
    tags = {ROLE_TAG: role, FINGERPRINT_TAG: mark}
    version = registry.register_model(
        model.registry_name, pipeline, training_frame_info=info, metrics=metrics, tags=tags
    )
    return ServedModel(version, pipeline, role, reused=False, metrics=metrics)


def write_reference(model: ModelConfig, world: World, seed: int, pipeline: Any, url: str) -> int:
    """Write the model's drift reference: training-like requests answered by `pipeline`.

    One column per feature plus ``prediction`` (and ``score`` for classifiers),
    as `modelwatch.drift.reference_from_frame` reads it. Returns the rows written.
    """
    features, _ = training_data(world, seed, REFERENCE_ROWS)
    prediction, score = serve(model, pipeline, features)
    frame = pd.DataFrame(features)
    if model.task == "binary_classification":
        frame["prediction"] = [str(int(p)) for p in prediction]
        frame["score"] = score
    else:
        frame["prediction"] = prediction
    fs, path = fsspec.core.url_to_fs(url)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "wb") as handle:
        frame.to_parquet(handle, index=False)
    return len(frame)

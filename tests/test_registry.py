"""The MLflow registry wrapper, against a real SQLite-backed MLflow store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelwatch import registry


@pytest.fixture(scope="module")
def frame() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"amount": rng.normal(size=300), "country": rng.choice(["DE", "FR"], 300)})
    return x, (x["amount"] + (x["country"] == "DE") > 0.5).astype(int).to_numpy()


def _pipeline(frame):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    x, y = frame
    prepare = ColumnTransformer(
        [
            ("num", StandardScaler(), ["amount"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["country"]),
        ]
    )
    return Pipeline([("prepare", prepare), ("model", LogisticRegression())]).fit(x, y)


def test_round_trip_register_alias_load_predict(mlflow_store, frame):
    pipeline = _pipeline(frame)
    assert registry.champion_version("loans") is None
    version = registry.register_model(
        "loans",
        pipeline,
        training_frame_info={"rows": 300, "features": ["amount", "country"]},
        metrics={"auc_roc": 0.9},
        tags={"team": "risk"},
    )
    assert version == "1"
    assert registry.champion_version("loans") is None
    registry.set_champion("loans", version)
    assert registry.champion_version("loans") == "1"

    x, _ = frame
    expected = pipeline.predict_proba(x)
    for reference in ("champion", "1", 1):
        loaded = registry.load_model("loans", reference)
        np.testing.assert_array_equal(loaded.predict_proba(x), expected)


def test_alias_moves_and_versions_are_listed(mlflow_store, frame):
    pipeline = _pipeline(frame)
    first = registry.register_model(
        "scores", pipeline, training_frame_info={}, metrics={}, tags={"role": "a"}
    )
    second = registry.register_model(
        "scores", pipeline, training_frame_info={}, metrics={}, tags={"role": "b"}
    )
    registry.set_champion("scores", first)
    registry.set_champion("scores", second)

    versions = registry.list_versions("scores")
    assert [v.version for v in versions] == [first, second]
    assert versions[0].aliases == () and versions[1].aliases == ("champion",)
    assert versions[1].tags["role"] == "b" and versions[1].run_id
    assert registry.champion_version("scores") == second
    assert registry.list_versions("never_registered") == []


def test_artifacts_live_next_to_the_store_not_in_the_working_directory(mlflow_store, frame):
    registry.register_model("placed", _pipeline(frame), training_frame_info={}, metrics={}, tags={})
    artifacts = mlflow_store / registry.ARTIFACT_FOLDER
    assert any(artifacts.rglob("MLmodel"))
    assert not (Path.cwd() / "mlruns").exists()


def test_artifact_location_rules(tmp_path):
    assert registry.artifact_location("http://mlflow.example:5000") is None
    assert registry.artifact_location(f"sqlite:///{tmp_path}/x/mlflow.db") == (
        (tmp_path / "x" / registry.ARTIFACT_FOLDER).as_uri()
    )


def test_model_uri_forms():
    assert registry.model_uri("m") == "models:/m@champion"
    assert registry.model_uri("m", 3) == "models:/m/3"
    assert registry.model_uri("m", "challenger") == "models:/m@challenger"

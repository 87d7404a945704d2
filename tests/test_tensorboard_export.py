"""`python -m modelwatch export-tensorboard`: a real warehouse's history, read back with TensorBoard's own reader."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, select
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from warehouse.builders import DAY, JAN, bundle, drift, load_run, metrics

from modelwatch import airflow_adapter, cli
from modelwatch.warehouse import schema
from modelwatch.warehouse.engine import get_engine, migrate
from modelwatch.warehouse.load import read_frame, record_decision

MODEL = "credit_risk"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Version "1" serves Jan 1-3, version "2" takes over on Jan 3 (both serve that day).
SERVED = {JAN[0]: ["1"], JAN[1]: ["1"], JAN[2]: ["1", "2"], JAN[3]: ["2"]}
DECIDED = {JAN[0]: "healthy", JAN[1]: "alert", JAN[2]: "retrain", JAN[3]: "rollback"}
CODES = {"healthy": 0, "alert": 1, "retrain": 2, "rollback": 3, "halt": 4}


def _interval_metrics(day: int, start: datetime) -> pd.DataFrame:
    """Overall, per-version and per-segment rows of one interval; f1 is undefined on the last day."""
    frames = [
        metrics(start, {"accuracy": 0.90 - day / 100, "auc_roc": 0.85 - day / 50,
                        "f1": None if day == 3 else 0.7}, label_coverage=0.9),
        metrics(start, {"request_count": 1000 + 10 * day, "latency_p95_ms": 120.5 + day}),
        metrics(start, {"accuracy": 0.80 + day / 100}, segment="country=DE", label_coverage=0.5),
    ]
    for version in SERVED[start]:
        offset = int(version) / 10
        frames.append(metrics(start, {"accuracy": 0.6 + offset + day / 100}, model_version=version,
                              label_coverage=0.9))
        frames.append(metrics(start, {"latency_p95_ms": 100.0 * int(version) + day}, model_version=version))
    return pd.concat(frames, ignore_index=True)


def _fill(engine: Engine) -> None:
    """Four daily intervals of `MODEL` over two versions, with drift and decisions, plus another model."""
    for day, start in enumerate(JAN[:4]):
        load_run(engine, bundle(
            MODEL, start,
            model_metrics=_interval_metrics(day, start),
            feature_drift=drift([
                ("age", "psi", 0.1 * (day + 1), day >= 2), ("age", "ks", 0.05 * (day + 1), day >= 2),
                ("income", "psi", 0.02 + day / 1000, False), ("income", "ks", 0.01, False),
            ]),
        ))
        record_decision(engine, {
            "model_name": MODEL, "interval_start": start, "interval_end": start + DAY, "mode": "on",
            "decision": DECIDED[start], "reason": "test", "run_id": f"scheduled__{start:%Y-%m-%d}",
        })
    # A dry run's decision is not a decision the model got.
    record_decision(engine, {
        "model_name": MODEL, "interval_start": JAN[3], "interval_end": JAN[3] + DAY, "mode": "dry_run",
        "decision": "halt", "reason": "dry", "run_id": "manual__dry",
    })
    load_run(engine, bundle("demand", JAN[0], model_metrics=metrics(JAN[0], {"mae": 3.0}, model_version="7")))


@pytest.fixture(scope="module", autouse=True)
def airflow_logging_outside_capsys() -> None:
    """Import Airflow (the CLI's warehouse lookup does) before any test captures output.

    Airflow binds a logging handler to the `sys.stderr` of its first import; under
    `capsys` that stream is closed after the test, and later log calls would fail.
    """
    airflow_adapter.connection_url()


@pytest.fixture
def filled_warehouse(warehouse_url: str, monkeypatch) -> str:
    """A migrated warehouse holding `_fill`'s history; the CLI resolves it through the environment."""
    engine = get_engine(warehouse_url)
    migrate(engine)
    _fill(engine)
    engine.dispose()
    monkeypatch.setenv("MODELWATCH_WAREHOUSE_URL", warehouse_url)
    return warehouse_url


def _expected(warehouse_url: str) -> set[tuple[str, str, int, float, float]]:
    """(run, tag, step, wall time, value) of every point the export should hold, from the warehouse's rows."""
    engine = get_engine(warehouse_url)
    try:
        rows = read_frame(engine, select(schema.model_metrics).where(schema.model_metrics.c.model_name == MODEL))
        tests = read_frame(engine, select(schema.feature_drift).where(schema.feature_drift.c.model_name == MODEL))
        decisions = read_frame(engine, select(schema.model_actions).where(
            schema.model_actions.c.model_name == MODEL, schema.model_actions.c.mode == "on"))
    finally:
        engine.dispose()
    runs = {"all": "all", "1": "v1", "2": "v2"}
    points = []
    for row in rows.itertuples():
        if row.value is None or pd.isna(row.value):
            continue
        tag = ("quality/" if row.kind == "quality" else "kpi/") + row.metric
        if row.segment != "all":
            tag += f"/segment={row.segment}"
        points.append((runs[row.model_version], tag, row.interval_start, row.value))
    for row in tests.itertuples():
        suffix = "" if row.method == "psi" else f"/{row.method}"
        points.append(("all", f"drift/{row.feature}{suffix}", row.interval_start, row.statistic))
    for start, features in tests.groupby("interval_start"):
        verdicts = features.groupby("feature")["drifted"].first().astype(bool)
        points.append(("all", "drift/share_drifted", start, verdicts.mean()))
    for row in decisions.itertuples():
        points.append(("all", "decision/action", row.interval_start, CODES[row.decision]))
    # Steps are days since the epoch (daily intervals); TensorBoard keeps values as 32-bit floats.
    return {
        (run, tag, (pd.Timestamp(start) - EPOCH).days, pd.Timestamp(start).timestamp(), float(np.float32(value)))
        for run, tag, start, value in points
    }


def _read_back(model_dir: Path) -> list[tuple[str, str, int, float, float]]:
    """Every scalar point of every run under `model_dir`, as TensorBoard's reader sees it (duplicates kept)."""
    points = []
    for run_dir in sorted(path for path in model_dir.iterdir() if path.is_dir()):
        accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            points += [(run_dir.name, tag, event.step, event.wall_time, event.value)
                       for event in accumulator.Scalars(tag)]
    return points


def _export(*args: str) -> int:
    return cli.main(["export-tensorboard", MODEL, *args])


def test_every_point_matches_the_warehouse_one_run_per_version(filled_warehouse, tmp_path, capsys):
    out = tmp_path / "tb"
    assert _export("--out", str(out)) == 0

    model_dir = out / MODEL
    assert sorted(path.name for path in model_dir.iterdir()) == ["all", "v1", "v2"]
    points = _read_back(model_dir)
    assert len(points) == len(set(points))
    assert set(points) == _expected(filled_warehouse)

    by_run = pd.DataFrame(points, columns=["run", "tag", "step", "wall_time", "value"])
    days = {run: sorted(set(group["step"])) for run, group in by_run.groupby("run")}
    jan = [(day - EPOCH).days for day in JAN[:4]]
    assert days == {"all": jan, "v1": jan[:3], "v2": jan[2:]}
    assert set(by_run.loc[by_run["run"] == "v2", "tag"]) == {"quality/accuracy", "kpi/latency_p95_ms"}
    v2_accuracy = by_run.query("run == 'v2' and tag == 'quality/accuracy' and step == @jan[3]")["value"]
    assert v2_accuracy.tolist() == [pytest.approx(0.83, abs=1e-6)]
    assert "quality/accuracy/segment=country=DE" in set(by_run["tag"])
    # The undefined f1 of Jan 4 is left out, not written as NaN; the dry run's "halt" is not a decision.
    assert sorted(by_run.query("tag == 'quality/f1'")["step"]) == jan[:3]
    assert by_run.query("tag == 'decision/action'").sort_values("step")["value"].tolist() == [0, 1, 2, 3]
    assert by_run.query("tag == 'drift/share_drifted'").sort_values("step")["value"].tolist() == [0, 0, 0.5, 0.5]

    printed = capsys.readouterr().out
    assert str(model_dir) in printed
    assert f"tensorboard --logdir {out}" in printed


def test_a_tag_carries_the_metric_description(filled_warehouse, tmp_path):
    assert _export("--out", str(tmp_path)) == 0

    accumulator = EventAccumulator(str(tmp_path / MODEL / "all"))
    accumulator.Reload()
    assert accumulator.SummaryMetadata("kpi/latency_p95_ms").summary_description == "95th percentile latency"
    assert "1 alert" in accumulator.SummaryMetadata("decision/action").summary_description


def test_a_reexport_replaces_the_previous_one(filled_warehouse, tmp_path):
    out = tmp_path / "exports" / "tb"
    assert _export("--out", str(out)) == 0
    # A later run recomputes Jan 4 (labels matured): version 2's accuracy changes.
    engine = get_engine(filled_warehouse)
    load_run(engine, bundle(MODEL, JAN[3], model_metrics=pd.concat([
        _interval_metrics(3, JAN[3]).query("model_version != '2' or metric != 'accuracy'"),
        metrics(JAN[3], {"accuracy": 0.5}, model_version="2", label_coverage=1.0),
    ])))
    engine.dispose()

    assert _export("--out", str(out)) == 0

    model_dir = out / MODEL
    points = _read_back(model_dir)
    assert len(points) == len(set(points))
    assert set(points) == _expected(filled_warehouse)
    assert (("v2", "quality/accuracy", (JAN[3] - EPOCH).days, JAN[3].timestamp(), float(np.float32(0.5)))
            in points)
    assert all(len(list(run.glob("events.out.tfevents.*"))) == 1 for run in model_dir.iterdir())
    # Nothing is left of the staging folder beside the log folder.
    assert sorted(path.name for path in out.parent.iterdir()) == ["tb"]
    assert sorted(path.name for path in out.iterdir()) == [MODEL]


def test_days_choose_the_intervals_and_a_version_without_them_has_no_run(filled_warehouse, tmp_path):
    assert _export("--out", str(tmp_path)) == 0
    assert _export("--out", str(tmp_path), "--since", "2026-01-04", "--until", "2026-01-04") == 0

    points = _read_back(tmp_path / MODEL)
    assert sorted(path.name for path in (tmp_path / MODEL).iterdir()) == ["all", "v2"]
    assert {step for _, _, step, _, _ in points} == {(JAN[3] - EPOCH).days}


def test_the_default_folder_is_in_the_data_folder(filled_warehouse, tmp_path, monkeypatch):
    monkeypatch.setenv("MODELWATCH_DATA_DIR", str(tmp_path / "data"))

    assert _export() == 0

    assert sorted(path.name for path in (tmp_path / "data" / "tensorboard" / MODEL).iterdir()) == ["all", "v1", "v2"]


def test_an_unknown_model_is_a_clear_error(filled_warehouse, tmp_path, capsys):
    out = tmp_path / "tb"

    code = cli.main(["export-tensorboard", "credit_rsk", "--out", str(out)])

    assert code != 0
    error = capsys.readouterr().err
    assert error.startswith("error: unknown model 'credit_rsk'")
    assert "did you mean 'credit_risk'?" in error
    assert "Traceback" not in error
    assert not out.exists()


def test_days_without_history_are_a_clear_error(filled_warehouse, tmp_path, capsys):
    out = tmp_path / "tb"

    code = _export("--out", str(out), "--since", "2027-01-01")

    assert code != 0
    assert "error: model 'credit_risk' has no metrics, drift or decisions from 2027-01-01" in capsys.readouterr().err
    assert not out.exists()


def test_a_missing_warehouse_is_a_clear_error_and_stays_missing(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "nowhere" / "warehouse.db"
    monkeypatch.setenv("MODELWATCH_WAREHOUSE_URL", f"sqlite:///{missing}")

    assert _export("--out", str(tmp_path / "tb")) != 0

    assert f"error: no warehouse at {missing}" in capsys.readouterr().err
    assert not missing.parent.exists()


def test_days_in_the_wrong_order_are_a_clear_error(tmp_path, capsys):
    assert _export("--out", str(tmp_path), "--since", "2026-01-05", "--until", "2026-01-01") != 0

    assert "error: since (2026-01-05) is after until (2026-01-01)" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []

"""The demo's last part on a small scale: a real model server serves the champion, then a worse version, and
the previous one again once `monitor_credit_risk` rolled the worse one back.

Real parts only: a `python -m modelwatch serve` process on 127.0.0.1, an MLflow SQLite store and an SQLite
warehouse under tmp_path, and real `dag.test()` runs of the DAG against Airflow's project-local metadata
database (tests/dags/conftest.py migrates it).
"""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from modelwatch import settings

pytestmark = pytest.mark.slow

MODEL = "credit_risk"
SEED = 11
SIMULATED_REQUESTS = 1500
LOOP_REQUESTS = 600
STOP_TIMEOUT_S = 30.0


@pytest.fixture
def no_process_left():
    """Every process the test starts is gone at its end; one still running is stopped by its PID, and the test fails."""
    import psutil

    before = {child.pid for child in psutil.Process().children(recursive=True)}
    yield
    left = [child for child in psutil.Process().children(recursive=True) if child.pid not in before]
    for child in left:
        child.terminate()
    _, alive = psutil.wait_procs(left, timeout=STOP_TIMEOUT_S)
    for child in alive:
        child.kill()
    assert not left, f"processes still running after the test: {left}"


@pytest.fixture
def demo_world(tmp_path, monkeypatch):
    """`credit_risk` alone, with its data folder, warehouse and registry under tmp_path (conftest forgets earlier
    DAG runs)."""
    from modelwatch import registry

    raw = yaml.safe_load(settings.SHIPPED_CONFIG.read_text())
    raw["models"] = [model for model in raw["models"] if model["name"] == MODEL]
    config = tmp_path / "models.yaml"
    config.write_text(yaml.safe_dump(raw))
    for name, value in {
        "MODELWATCH_DATA_DIR": str(tmp_path / "data"),
        "MODELWATCH_CONFIG": str(config),
        "MODELWATCH_WAREHOUSE_URL": f"sqlite:///{tmp_path / 'warehouse.db'}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setitem(registry._state, "uri", registry._state["uri"])
    registry.configure()
    return tmp_path


def test_the_server_serves_the_worse_version_until_the_dag_rolls_it_back(demo_world, no_process_left):
    from modelwatch import demo, demo_loop, registry
    from modelwatch.config import load_config
    from modelwatch.simulation import simulate

    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    config = load_config()
    summary = simulate(config, start=yesterday, days=1, requests_per_day=SIMULATED_REQUESTS, seed=SEED, incidents=[])
    baseline = summary.models[MODEL].baseline_version
    airflow_log = demo_world / "airflow.log"
    state, tasks, _ = demo.run_monitor(MODEL, yesterday, airflow_log)
    assert state == "success", tasks

    result = demo_loop.run(
        config.model(MODEL), period_start=yesterday, incidents=[], seed=SEED, output_folder=demo_world,
        run_monitor=lambda name, day: demo.run_monitor(name, day, airflow_log), requests=LOOP_REQUESTS,
    )

    worse = result.bad_version
    assert worse != baseline
    assert (result.served_before, result.served_during, result.served_after) == (baseline, worse, baseline)
    assert result.answers == {worse: LOOP_REQUESTS} and result.answered_after == baseline
    assert result.failed_requests == 0
    row = result.decision
    assert (row["decision"], row["outcome"], row["served_version"]) == ("rollback", "rolled_back", worse)
    assert (row["champion_before"], row["champion_after"]) == (worse, baseline)
    assert f"roll back to {baseline}" in row["reason"]
    assert registry.champion_version(MODEL) == baseline
    assert result.problems() == []
    # Stopped by its PID: SIGTERM, after which uvicorn re-raises it once the logs are published.
    assert result.server_exit == -signal.SIGTERM
    with pytest.raises(ProcessLookupError):
        os.kill(result.server_pid, 0)

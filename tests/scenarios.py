"""A week of the simulator's incidents for both shipped models, with the decision each day must give.

Shared by the `dag.test()` end-to-end test and the ones under a real scheduler.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import yaml

from modelwatch import settings

START = date(2026, 3, 1)
DAYS = 7
INCIDENTS = [
    ("latency_spike", 1, "delivery_time", 1, {"factor": 6.0}),
    ("concept_drift", 1, "delivery_time", None, {"strength": 0.6}),
    ("data_quality_break", 2, "credit_risk", 1, {}),
    ("error_burst", 3, "credit_risk", 1, {"rate": 0.2}),
    ("sudden_drift", 4, "delivery_time", None, {"feature": "distance_km", "factor": 1.8}),
    ("bad_version", 5, "credit_risk", None, {"mode": "dropped_features"}),
]
# Labels arrive over the following days: a quality drop shows on the run after it starts.
EXPECTED = {
    "credit_risk": ["healthy", "healthy", "halt", "alert", "healthy", "healthy", "rollback"],
    "delivery_time": ["healthy", "alert", "alert", "alert", "retrain", "alert", "alert"],
}
# What a re-run of processed days must leave as it was: the judged tables and the decisions.
JUDGED = ["check_results", "model_metrics", "feature_drift", "data_quality_results", "quarantined_records"]
DECISION_COLUMNS = ["decision", "reason", "severity", "checks", "outcome", "from_version", "to_version"]
ONCALL = "oncall@example.com"
SMTP_CONNECTION, WEBHOOK_CONNECTION = "modelwatch_smtp", "modelwatch_webhook"


def day(offset: int) -> str:
    """The ISO date of the week's `offset`-th day."""
    return datetime(START.year, START.month, START.day + offset, tzinfo=UTC).date().isoformat()


def environment(folder: Path, warehouse_url: str, smtp_connection: str, webhook_url: str) -> dict[str, str]:
    """Where the week's data, warehouse and registry live, and the two notification connections."""
    return {
        "MODELWATCH_DATA_DIR": str(folder / "data"),
        "MODELWATCH_CONFIG": str(folder / "models.yaml"),
        "MODELWATCH_WAREHOUSE_URL": warehouse_url,
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
        f"AIRFLOW_CONN_{SMTP_CONNECTION.upper()}": smtp_connection,
        f"AIRFLOW_CONN_{WEBHOOK_CONNECTION.upper()}": json.dumps({"conn_type": "http", "password": webhook_url}),
    }


def write_config(path: Path, min_history: int | None = None) -> Path:
    """The shipped models file, with labels maturing over 3 days, alerts to the test's servers, patient sensors;
    with `min_history`, control limits judge from that many earlier intervals on (within the week)."""
    raw = yaml.safe_load(settings.SHIPPED_CONFIG.read_text())
    for model in raw["models"]:
        if min_history is not None:
            model["checks"] = {"min_history": min_history}
        # Unpaused under a real scheduler, a DAG also gets a run for yesterday, whose logs never come: it
        # waits for them through the test instead of failing into the warehouse and the inbox.
        model["log_wait_minutes"] = 60 * 24 * 365
        model["label_maturity_intervals"] = 3
        model["retrain"] = {"min_new_labels": 500, "training_window_intervals": 7}
        model["alerts"] = {"emails": [ONCALL], "smtp_connection": SMTP_CONNECTION,
                           "webhook_connection": WEBHOOK_CONNECTION}
    path.write_text(yaml.safe_dump(raw))
    return path


def simulate_week(config_path: Path):
    """Write the week's logs and register both models (the environment must point at the week's folder)."""
    from modelwatch import registry
    from modelwatch.config import load_config
    from modelwatch.simulation import Incident, simulate

    config = load_config(config_path)
    registry.configure()
    return simulate(
        config, start=START, days=DAYS, requests_per_day=3000, seed=5,
        incidents=[Incident(kind, day, model, duration, params) for kind, day, model, duration, params in INCIDENTS],
    )


def _by_model_and_day(url: str, query: str, params: dict | None = None):
    from modelwatch.warehouse.engine import get_engine
    from modelwatch.warehouse.load import read_frame

    engine = get_engine(url)
    try:
        frame = read_frame(engine, query, params or {})
    finally:
        engine.dispose()
    frame["day"] = frame["interval_start"].astype(str).str[:10]
    return frame.set_index(["model_name", "day"])


def decisions(url: str, mode: str = "on"):
    """`model_actions` of one mode, indexed by model and day."""
    return _by_model_and_day(url, "SELECT * FROM model_actions WHERE mode = :mode ORDER BY model_name, "
                                  "interval_start", {"mode": mode})


def monitoring_runs(url: str):
    """`monitoring_runs`, indexed by model and day."""
    return _by_model_and_day(url, "SELECT * FROM monitoring_runs ORDER BY model_name, interval_start")


def registry_state(model: str) -> tuple:
    """Every registered version of `model` (with its aliases and tags) and its champion: what an action changes."""
    from modelwatch import registry

    return registry.list_versions(model), registry.champion_version(model)

"""`make demo`: simulate production, run every monitor DAG over each day, show what was found.

Then, unless skipped, close the monitoring loop with the reference model server (`demo_loop`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from modelwatch import settings
from modelwatch.config import ModelConfig, load_config

HEALTH_COLUMNS = {
    "binary_classification": ["auc_roc", "f1"],
    "regression": ["mae", "rmse"],
}


@contextlib.contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """Send everything written to stdout/stderr (Airflow's task logs included) to a file."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "a") as log_file:
        os.dup2(log_file.fileno(), 1)
        os.dup2(log_file.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def _say(text: str) -> None:
    print(text, flush=True)


def _simulate(days: int, requests_per_day: int, seed: int, incidents: list) -> date:
    from modelwatch.simulation import simulate

    start = datetime.now(UTC).date() - timedelta(days=days)
    summary = simulate(load_config(), start=start, days=days, requests_per_day=requests_per_day, seed=seed,
                       incidents=incidents)
    _say(summary.table())
    return start


def run_monitor(model_name: str, day: date, log_path: Path) -> tuple[str, dict[str, str], float]:
    """Run `monitor_<model>` for `day` with `dag.test()`, its output to `log_path`.

    Returns
    -------
    (str, dict, float)
        The run's state, each task's state, and the seconds it took.
    """
    import pendulum

    from modelwatch import airflow_adapter

    began = time.perf_counter()
    with _output_to(log_path):
        state, tasks = airflow_adapter.run_dag(
            f"monitor_{model_name}", pendulum.datetime(day.year, day.month, day.day, tz="UTC"),
            str(settings.PROJECT_ROOT / "dags"),
        )
    return state, tasks, time.perf_counter() - began


def _run_dags(models: list[ModelConfig], start: date, days: int, log_path: Path) -> list[str]:
    failures = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        for model in models:
            state, tasks, seconds = run_monitor(model.name, day, log_path)
            _say(f"  monitor_{model.name} {day}: {state} in {seconds:.1f} s")
            if state != "success":
                failures.append(f"monitor_{model.name} {day}: {tasks}")
    return failures


def _fmt(value, digits: int = 3) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _report(models: list[ModelConfig]) -> None:
    from modelwatch.pipeline import warehouse_engine
    from modelwatch.warehouse.load import read_frame

    engine = warehouse_engine()
    for model in models:
        quality = HEALTH_COLUMNS[model.task]
        frame = read_frame(
            engine,
            "SELECT * FROM model_health_daily WHERE model_name = :model ORDER BY interval_start",
            {"model": model.name},
        )
        _say(f"\n{model.name} ({model.task})")
        header = ["day", "rows", "quarant.", "dq fail", *quality, "p99 ms", "err rate", "drifted", "label cov."]
        _say("  " + "  ".join(f"{h:>10}" for h in header))
        for row in frame.itertuples():
            cells = [
                str(row.interval_start)[:10], row.rows_read, row.rows_quarantined, row.expectations_failed,
                *(getattr(row, q) for q in quality), row.latency_p99_ms, row.error_rate,
                row.drifted_features, row.label_coverage,
            ]
            _say("  " + "  ".join(f"{_fmt(c):>10}" for c in cells))
        for line in _findings(model, frame):
            _say("  - " + line)
        _timeline(engine, model)


REASON_CHARS = 150


def _timeline(engine, model: ModelConfig) -> None:
    """Per day: the decision, its outcome, the champion after it and why, from `model_decision_timeline`."""
    from modelwatch.warehouse.load import read_frame

    frame = read_frame(
        engine,
        "SELECT interval_start, decision, outcome, champion_before, champion_after, served_version, reason "
        "FROM model_decision_timeline WHERE model_name = :model ORDER BY interval_start",
        {"model": model.name},
    )
    _say(f"\n  decisions of {model.name}")
    _say(f"  {'day':<10}  {'decision':<8}  {'outcome':<14}  {'served':>6}  {'champion':>8}  reason")
    for row in frame.itertuples():
        moved = row.champion_after if row.champion_after == row.champion_before else (
            f"{row.champion_before}->{row.champion_after}")
        reason = row.reason if len(row.reason) <= REASON_CHARS else row.reason[: REASON_CHARS - 1] + "…"
        _say(f"  {str(row.interval_start)[:10]:<10}  {row.decision:<8}  {row.outcome or '-':<14}  "
             f"{_fmt(row.served_version):>6}  {_fmt(moved):>8}  {reason}")


def _findings(model: ModelConfig, frame) -> list[str]:
    """One line per notable interval: quarantine, failed expectations, drift, thresholds crossed."""
    lines = []
    for row in frame.itertuples():
        day = str(row.interval_start)[:10]
        notes = []
        if row.rows_quarantined:
            notes.append(f"{row.rows_quarantined} records quarantined")
        if row.expectations_failed:
            notes.append(f"{row.expectations_failed} expectations failed ({row.critical_expectations_failed} critical)")
        if row.drift_detected:
            notes.append(f"drift in {row.drifted_features} features")
        for metric, limit in model.thresholds.items():
            value = getattr(row, metric, None)
            if value is None or value != value:
                continue
            if (limit.min is not None and value < limit.min) or (limit.max is not None and value > limit.max):
                bound = f">= {limit.min}" if limit.min is not None and value < limit.min else f"<= {limit.max}"
                notes.append(f"{metric} {value:.3f} (expected {bound})")
        if notes:
            lines.append(f"{day}: " + "; ".join(notes))
    return lines


def run(days: int = 14, requests_per_day: int = 20_000, seed: int = 7, loop: bool = True) -> int:
    """Simulate `days` days, run every `monitor_<model>` DAG for each, print the health table.

    With `loop` (and `credit_risk` in the models file), `credit_risk`'s worse version goes live on the
    reference model server today instead of in the simulated days, and the loop runs last (`demo_loop`).
    """
    from modelwatch import demo_loop
    from modelwatch.simulation import DEFAULT_SCHEDULE

    data = settings.data_dir()
    data.mkdir(parents=True, exist_ok=True)
    log_path = data / "demo-airflow.log"
    log_path.write_text("")
    models = load_config().models
    loop_model = next((model for model in models if model.name == demo_loop.LOOP_MODEL), None) if loop else None
    incidents = demo_loop.simulated_incidents() if loop_model else DEFAULT_SCHEDULE
    _say(f"Simulating {days} days of production for {', '.join(m.name for m in models)} into {data}")
    start = _simulate(days, requests_per_day, seed, incidents)
    _say(f"\nRunning the monitor DAGs with dag.test() (task logs: {log_path})")
    failures = _run_dags(models, start, days, log_path)
    _report(models)
    if loop_model:
        try:
            looped = demo_loop.run(loop_model, period_start=start, incidents=incidents, seed=seed, output_folder=data,
                                   run_monitor=lambda name, day: run_monitor(name, day, log_path))
        except demo_loop.LoopError as exc:
            failures.append(f"the loop with the model server: {exc}")
        else:
            failures += looped.problems()
    elif loop:
        _say(f"\nNo {demo_loop.LOOP_MODEL} in the models file: the loop with the model server is skipped.")
    _say(f"\nWarehouse: {settings.default_warehouse_url()} (views model_health_daily, model_decision_timeline, "
         "open_alert_conditions, model_latest_state)")
    _say("Start the Airflow UI with `make airflow` to browse the runs.")
    if failures:
        _say("\nFailed:\n  " + "\n  ".join(failures))
        return 1
    return 0

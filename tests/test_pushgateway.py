"""Each run's findings on a real Prometheus Pushgateway: what is pushed, what replaces what, what a failure does.

The gateway is Debian's `prometheus-pushgateway`, started on 127.0.0.1 on a free
port for each test and stopped by its PID afterwards, also when the test fails.
Without the binary the gateway tests are skipped, except under CI=true, where
they fail. The runs are the pipeline's task functions on hand-written logs and
an SQLite warehouse, as the DAG runs them.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from airflow_cluster import require_ci_service
from logfiles import label, make_model, partition, prediction, write_records
from pipelines import interval, judge_interval
from prometheus_client.parser import text_string_to_metric_families

from modelwatch import catalogue, pipeline, pushgateway
from modelwatch.airflow_services import free_port
from modelwatch.config import PUSHGATEWAY_URL_ENV, ConfigError, ProjectConfig, parse_config
from modelwatch.warehouse.load import read_frame

WEEK = range(2, 9)  # 2 to 8 March 2026
READY_TIMEOUT_S = 30
GROUP_LABELS = {"job", "model", "instance"}  # the push group's labels, which the gateway adds


# --- a real Pushgateway -------------------------------------------------------------------------------------------


@dataclass
class Gateway:
    url: str
    process: subprocess.Popen

    def scrape(self) -> str:
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=10) as response:
            return response.read().decode()

    def series(self, model: str) -> dict[tuple, float]:
        """The model's `modelwatch_*` series as Prometheus scrapes them: (name, its own labels) -> value."""
        return {
            (sample.name, tuple(sorted((k, v) for k, v in sample.labels.items() if k not in GROUP_LABELS))):
                sample.value
            for family in text_string_to_metric_families(self.scrape())
            for sample in family.samples
            if sample.name.startswith("modelwatch_") and sample.labels.get("model") == model
        }

    def push_time(self, model: str) -> float:
        """When the model's group last changed, as the gateway records it."""
        (value,) = [sample.value for family in text_string_to_metric_families(self.scrape())
                    for sample in family.samples
                    if sample.name == "push_time_seconds" and sample.labels.get("model") == model]
        return value


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def gateway(tmp_path) -> Iterator[Gateway]:
    """A Pushgateway on 127.0.0.1 without persistence; its output in `pushgateway.log` of the test's folder."""
    binary = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
    require_ci_service(binary is not None,
                       "prometheus-pushgateway not installed: apt-get install prometheus-pushgateway")
    port = free_port()
    output = tmp_path / "pushgateway.log"
    with output.open("wb") as log_file:
        process = subprocess.Popen([binary, f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                                   stdout=log_file, stderr=subprocess.STDOUT)
    started = Gateway(f"http://127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _ready(started.url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the Pushgateway on port {port} never became ready: {output.read_text()}", pytrace=False)
            time.sleep(0.1)
        yield started
    finally:
        process.terminate()  # SIGTERM to the gateway's own PID
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- a small week of logs -----------------------------------------------------------------------------------------


def write_day(root: str, day: int, model: str = "credit_risk", file: str = "a.jsonl", latency_ms: float = 10.0,
              requests: int = 8) -> None:
    """One day of a model's logs: answered requests in two countries and two channels, one error, and labels."""
    date = f"2026-03-{day:02d}"
    answered = [
        prediction(f"{model}-{date}-{file}-{i}", f"{date}T{8 + i:02d}:{day:02d}:00Z", model_name=model,
                   prediction=i % 2, score=0.3 + 0.4 * (i % 2), latency_ms=latency_ms + day + i,
                   features={"income": 1000.0 * (i + day), "country": ("DE", "FR")[i % 2], "has_card": i % 3 == 0},
                   context={"channel": ("web", "app")[i % 3 == 0]})
        for i in range(requests)
    ]
    error = prediction(f"{model}-{date}-{file}-error", f"{date}T23:30:00Z", model_name=model, status="error",
                       error="Timeout", prediction=None, score=None, latency_ms=2000.0)
    write_records(partition(root, "predictions", date, model) + f"/{file}", [*answered, error])
    # Every answer right but the first of the day.
    write_records(partition(root, "feedback", date, model) + f"/{file}",
                  [label(record["request_id"], record["prediction"] ^ (i == 0), f"{date}T23:45:00Z")
                   for i, record in enumerate(answered)])


def project(tmp_path, model: str, gateway_url: str | None, timeout_s: float = 10.0) -> ProjectConfig:
    root = str(tmp_path / "logs")
    spec = make_model(root, name=model, label_maturity_intervals=1,
                      thresholds={"accuracy": {"min": 0.5}, "log_loss": {"max": 2.0}, "latency_p99_ms": {"max": 250}})
    return ProjectConfig(staging_root=str(tmp_path / "staging"), models=[spec],
                         pushgateway={"url": gateway_url, "timeout_seconds": timeout_s})


def monitor_interval(config: ProjectConfig, day: int, url: str, mode: str = "on", run_id: str | None = None) -> dict:
    """Every task of one interval as the DAG runs them, `publish_metrics` last; returns what that returned."""
    name = config.models[0].name
    start, end = interval(day)
    run_id = run_id or f"{name}-{mode}-{day}"
    pipeline.mark_started(name, start, end, run_id, warehouse_url=url)
    staged = pipeline.extract(name, start, end, config=config, attempt=run_id)
    pipeline.validate(name, staged["folder"], start, end, config=config, warehouse_url=url)
    pipeline.measure(name, staged["folder"], start, end, config=config, warehouse_url=url)
    loaded = pipeline.load(name, staged["folder"], start, end, run_id, config=config, warehouse_url=url)
    judge_interval(config, start, end, run_id, loaded, url, mode=mode)
    return pipeline.publish_metrics(name, start, end, config=config, warehouse_url=url)


def monitor_week(tmp_path, config: ProjectConfig, url: str) -> list[dict]:
    for day in WEEK:
        write_day(str(tmp_path / "logs"), day, config.models[0].name)
    return [monitor_interval(config, day, url) for day in WEEK]


@pytest.fixture
def warehouse(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'warehouse.db'}"


def from_warehouse(url: str, model: str, day: int, thresholds: dict) -> dict[tuple, float]:
    """What the gateway must show for the model's interval, read from the warehouse's rows with plain SQL."""
    engine = pipeline.warehouse_engine(url)
    start, end = interval(day)
    where = {"model": model, "start": start.strftime("%Y-%m-%d %H:%M:%S")}
    decisions = read_frame(engine, "SELECT mode, decision, severity, served_version FROM model_actions "
                                   "WHERE model_name = :model AND interval_start = :start", where)
    (version,) = set(decisions["served_version"])
    expected = {
        ("modelwatch_interval_start_timestamp_seconds", ()): start.timestamp(),
        ("modelwatch_interval_end_timestamp_seconds", ()): end.timestamp(),
    }
    metrics = read_frame(engine, "SELECT segment, metric, kind, value FROM model_metrics WHERE model_name = :model "
                                 "AND interval_start = :start AND model_version = 'all' AND value IS NOT NULL", where)
    for row in metrics.itertuples():
        if row.kind == "system" and row.metric in catalogue.names("system"):  # not the per-error-type counts
            name, labels, factor = pushgateway.SYSTEM_GAUGES[row.metric]
            key = tuple(sorted({"version": version, "segment": row.segment, **labels}.items()))
            expected[(name, key)] = row.value * factor
        elif row.kind == "quality" and row.segment == "all":
            key = (("metric", row.metric), ("segment", "all"), ("version", version))
            expected[("modelwatch_quality", key)] = row.value
    for metric, bounds in thresholds.items():
        for bound, value in bounds.items():
            expected[("modelwatch_quality_threshold", (("bound", bound), ("metric", metric)))] = value
    drift = read_frame(engine, "SELECT feature, MAX(drifted) AS drifted FROM feature_drift WHERE model_name = :model "
                               "AND interval_start = :start GROUP BY feature", where)
    expected[("modelwatch_drifted_feature_ratio", (("version", version),))] = drift["drifted"].mean()
    for row in decisions.itertuples():
        for decision in ("halt", "rollback", "retrain", "alert", "healthy"):
            key = (("decision", decision), ("mode", row.mode), ("version", version))
            expected[("modelwatch_decision", key)] = float(decision == row.decision)
        severity = {None: 0.0, "warning": 1.0, "critical": 2.0}[row.severity]
        expected[("modelwatch_decision_severity", (("mode", row.mode), ("version", version)))] = severity
    return expected


QUALITY_THRESHOLDS = {"accuracy": {"min": 0.5}, "log_loss": {"max": 2.0}}  # latency_p99_ms is a system threshold


# --- what a run pushes --------------------------------------------------------------------------------------------


def test_after_a_week_the_gateway_holds_the_last_intervals_warehouse_rows(tmp_path, gateway, warehouse):
    config = project(tmp_path, "credit_risk", gateway.url)

    published = monitor_week(tmp_path, config, warehouse)

    assert all(result["pushed"] for result in published), published
    shown = gateway.series("credit_risk")
    assert shown == pytest.approx(from_warehouse(warehouse, "credit_risk", WEEK[-1], QUALITY_THRESHOLDS))
    assert published[-1]["series"] == len(shown)
    # Spot checks in the units Prometheus expects: seconds, ratios, segments as the warehouse names them.
    latency = read_frame(pipeline.warehouse_engine(warehouse),
                         "SELECT value FROM model_metrics WHERE metric = 'latency_p99_ms' AND segment = 'all' "
                         "AND model_version = 'all' AND interval_start = '2026-03-08 00:00:00'")["value"].iloc[0]
    assert shown[("modelwatch_latency_seconds", (("quantile", "0.99"), ("segment", "all"), ("version", "3")))] == (
        pytest.approx(latency / 1000))
    requests = {dict(labels)["segment"]: value for (name, labels), value in shown.items()
                if name == "modelwatch_requests"}
    assert requests == {"all": 9, "country=DE": 5, "country=FR": 4, "channel=web": 6, "channel=app": 3}
    assert shown[("modelwatch_error_ratio", (("segment", "all"), ("version", "3")))] == pytest.approx(1 / 9)


def test_a_rerun_of_the_interval_replaces_its_push_and_a_backfill_leaves_it(tmp_path, gateway, warehouse):
    config = project(tmp_path, "credit_risk", gateway.url)
    monitor_week(tmp_path, config, warehouse)
    before = gateway.series("credit_risk")

    # Late, slow logs of the last day arrive; its interval is run again.
    write_day(str(tmp_path / "logs"), WEEK[-1], file="late.jsonl", latency_ms=400.0)
    rerun = monitor_interval(config, WEEK[-1], warehouse, run_id="rerun")

    after = gateway.series("credit_risk")
    assert rerun["pushed"]
    assert after.keys() == before.keys()  # the same series, none piled up
    assert after == pytest.approx(from_warehouse(warehouse, "credit_risk", WEEK[-1], QUALITY_THRESHOLDS))
    requests = ("modelwatch_requests", (("segment", "all"), ("version", "3")))
    assert (before[requests], after[requests]) == (9, 18)
    pushed_at = gateway.push_time("credit_risk")

    backfill = monitor_interval(config, 5, warehouse, run_id="backfill")

    assert not backfill["pushed"]
    assert "later interval from 2026-03-08T00:00:00+00:00 is loaded" in backfill["detail"]
    assert gateway.series("credit_risk") == after
    assert gateway.push_time("credit_risk") == pushed_at


def test_a_dry_run_adds_its_decision_beside_the_real_one(tmp_path, gateway, warehouse):
    config = project(tmp_path, "credit_risk", gateway.url)
    monitor_week(tmp_path, config, warehouse)
    real = gateway.series("credit_risk")

    dry = monitor_interval(config, WEEK[-1], warehouse, mode="dry_run")

    shown = gateway.series("credit_risk")
    assert dry["pushed"]
    assert shown == pytest.approx(from_warehouse(warehouse, "credit_risk", WEEK[-1], QUALITY_THRESHOLDS))
    assert {key: value for key, value in shown.items() if ("mode", "dry_run") not in key[1]} == pytest.approx(real)
    decisions = {dict(labels)["mode"] for name, labels in shown if name == "modelwatch_decision_severity"}
    assert decisions == {"on", "dry_run"}


def test_two_models_keep_groups_of_their_own(tmp_path, gateway, warehouse):
    credit = project(tmp_path, "credit_risk", gateway.url)
    fraud = project(tmp_path, "fraud_score", gateway.url)
    for day in (2, 3):
        for config in (credit, fraud):
            write_day(str(tmp_path / "logs"), day, config.models[0].name)
    monitor_interval(credit, 2, warehouse)
    monitor_interval(credit, 3, warehouse)
    monitor_interval(fraud, 2, warehouse)
    credit_shown, credit_pushed_at = gateway.series("credit_risk"), gateway.push_time("credit_risk")

    # fraud_score's runs neither replace nor touch credit_risk's group.
    monitor_interval(fraud, 3, warehouse)

    assert gateway.series("credit_risk") == credit_shown
    assert gateway.push_time("credit_risk") == credit_pushed_at
    assert credit_shown == pytest.approx(from_warehouse(warehouse, "credit_risk", 3, QUALITY_THRESHOLDS))
    assert gateway.series("fraud_score") == pytest.approx(from_warehouse(warehouse, "fraud_score", 3,
                                                                         QUALITY_THRESHOLDS))


# --- when the gateway fails ---------------------------------------------------------------------------------------


def test_a_gateway_that_is_down_gives_a_warning_and_the_run_succeeds(tmp_path, warehouse, caplog):
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = project(tmp_path, "credit_risk", down)
    write_day(str(tmp_path / "logs"), 2)
    caplog.set_level(logging.WARNING, logger="modelwatch.pushgateway")

    published = monitor_interval(config, 2, warehouse)

    assert not published["pushed"] and down in published["detail"]
    (warning,) = [record for record in caplog.records if record.name == "modelwatch.pushgateway"]
    assert warning.levelname == "WARNING"
    assert down in warning.getMessage() and "Connection refused" in warning.getMessage()
    runs = read_frame(pipeline.warehouse_engine(warehouse), "SELECT status, finished_at FROM monitoring_runs")
    assert runs["status"].tolist() == ["success"] and runs["finished_at"].notna().all()


def test_a_gateway_that_never_answers_is_given_up_after_the_timeout(tmp_path, warehouse, caplog):
    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections into its backlog, never answers
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        config = project(tmp_path, "credit_risk", url, timeout_s=0.5)
        write_day(str(tmp_path / "logs"), 2)
        caplog.set_level(logging.WARNING, logger="modelwatch.pushgateway")

        published = monitor_interval(config, 2, warehouse)
    finally:
        silent.close()

    assert not published["pushed"]
    (warning,) = [record for record in caplog.records if record.name == "modelwatch.pushgateway"]
    assert url in warning.getMessage() and "timed out" in warning.getMessage()


# --- configuration ------------------------------------------------------------------------------------------------


def test_without_a_gateway_nothing_is_pushed_and_prometheus_client_is_not_imported(tmp_path):
    probe = f"""
import sys
from datetime import UTC, datetime
from modelwatch import pipeline
from modelwatch.config import parse_config
config = parse_config({{"staging_root": {str(tmp_path / "staging")!r}, "models": [
    {{"name": "m", "task": "regression", "features": [{{"name": "x", "type": "numeric"}}]}}]}})
start, end = datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC)
result = pipeline.publish_metrics("m", start, end, config=config)
print(result, "modelwatch.pushgateway" in sys.modules, "prometheus_client" in sys.modules)
"""
    environment = {key: value for key, value in os.environ.items() if key != PUSHGATEWAY_URL_ENV}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=environment)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        "{'pushed': False, 'detail': 'no Pushgateway configured', 'series': 0} False False")


def models_file(**pushgateway) -> dict:
    return {"pushgateway": pushgateway,
            "models": [{"name": "m", "task": "regression", "features": [{"name": "x", "type": "numeric"}]}]}


def test_the_environment_overrides_the_models_files_gateway_and_empty_means_unset(monkeypatch):
    config = parse_config(models_file(url="http://pushgateway:9091/"))
    monkeypatch.delenv(PUSHGATEWAY_URL_ENV, raising=False)
    assert config.pushgateway_url == "http://pushgateway:9091"
    monkeypatch.setenv(PUSHGATEWAY_URL_ENV, "https://metrics.internal")
    assert config.pushgateway_url == "https://metrics.internal"
    monkeypatch.setenv(PUSHGATEWAY_URL_ENV, "")
    assert config.pushgateway_url == "http://pushgateway:9091"
    assert parse_config(models_file()).pushgateway_url is None


@pytest.mark.parametrize("url", ["pushgateway:9091", "ftp://pushgateway", "http://user:secret@pushgateway:9091",
                                 "http://pushgateway:port", "http://"])
def test_a_gateway_url_that_is_no_http_url_is_refused_naming_where_it_came_from(url, monkeypatch):
    with pytest.raises(ConfigError, match=r"pushgateway\.url: Value error, expected an http:// or https:// URL"):
        parse_config(models_file(url=url))
    monkeypatch.setenv(PUSHGATEWAY_URL_ENV, url)
    with pytest.raises(ConfigError, match=f"{PUSHGATEWAY_URL_ENV}: expected an http:// or https:// URL"):
        _ = parse_config(models_file()).pushgateway_url


def test_every_system_kpi_of_the_catalogue_has_a_gauge():
    assert set(pushgateway.SYSTEM_GAUGES) == set(catalogue.names("system"))
    assert {name for name, _, _ in pushgateway.SYSTEM_GAUGES.values()} <= pushgateway.GAUGES.keys()
    # Gauges, so no `_total` (a counter's suffix); times in seconds, as Prometheus measures them.
    assert all(name.startswith("modelwatch_") and not name.endswith("_total") for name in pushgateway.GAUGES)
    assert not [name for name in pushgateway.GAUGES if name.endswith("_ms")]

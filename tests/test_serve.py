"""The reference model server: real `python -m modelwatch serve` processes on 127.0.0.1, a real MLflow store,
and the logs they write read back by the real extract."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from modelwatch import logs, pipeline, registry, settings, staging
from modelwatch.airflow_services import free_port, terminate_with_parent
from modelwatch.config import ModelConfig, ProjectConfig, load_config, parse_config
from modelwatch.model_input import model_frame
from modelwatch.serving import inputs
from modelwatch.serving.champion import VersionLoadError
from modelwatch.serving.inputs import InvalidRequest, parse_request
from modelwatch.serving.logfiles import ACTIVE_SUFFIX, PredictionLog, host_label
from modelwatch.serving.server import ModelServer
from modelwatch.staging import StagedBatch

MODEL = "credit_risk"
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0
REQUEST_TIMEOUT_S = 30.0
LOAD_DEADLINE_S = 300.0
LOAD_REQUESTS = 400
LOAD_CLIENTS = 16
SWITCH_AFTER = 100  # answers before the alias is moved
AFTER_SWITCH = 50  # requests sent only once the new version serves
PACE_DURING_SWAP_S = 0.05  # each client's pause between requests while the new version loads, so traffic overlaps it


# --- registered versions ------------------------------------------------------------------------------------------


def _training_features(model: ModelConfig, rng: np.random.Generator, rows: int) -> dict[str, np.ndarray]:
    features = {}
    for feature in model.features:
        if feature.type == "numeric":
            features[feature.name] = rng.uniform(feature.min or 0.0, feature.max or 1.0, rows)
        elif feature.type == "boolean":
            features[feature.name] = rng.integers(0, 2, rows).astype(float)
        else:
            features[feature.name] = rng.choice(feature.allowed_values or ["a", "b"], rows).astype(object)
    return features


def fitted_pipeline(model: ModelConfig, seed: int, extra_column: str | None = None):
    """A small fitted classifier of the model's features (and `extra_column`, which no request carries)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(seed)
    frame = model_frame(model, _training_features(model, rng, 400))
    numeric = [f.name for f in model.features if f.type != "categorical"]
    if extra_column:
        frame[extra_column] = rng.normal(size=len(frame))
        numeric.append(extra_column)
    categorical = [f.name for f in model.features if f.type == "categorical"]
    prepare = ColumnTransformer([("numeric", make_pipeline(SimpleImputer(), StandardScaler()), numeric),
                                 ("categorical", OneHotEncoder(handle_unknown="ignore"), categorical)])
    labels = rng.integers(0, 2, len(frame))
    return Pipeline([("prepare", prepare), ("model", LogisticRegression())]).fit(frame, labels)


@dataclass(frozen=True)
class Versions:
    registered: str
    first: str
    second: str
    incompatible: str  # loads, but cannot answer the configured features


@pytest.fixture(scope="module")
def model_spec() -> dict:
    raw = load_config(settings.SHIPPED_CONFIG).model_dump(by_alias=True)
    return next(m for m in raw["models"] if m["name"] == MODEL) | {"registered_model": f"served_{uuid.uuid4().hex[:8]}"}


@pytest.fixture(scope="module")
def versions(mlflow_store, model_spec) -> Versions:
    model = parse_config({"models": [model_spec]}).models[0]
    name = model.registry_name

    def register(fitted) -> str:
        return registry.register_model(name, fitted, training_frame_info={}, metrics={}, tags={})

    return Versions(name, register(fitted_pipeline(model, 1)), register(fitted_pipeline(model, 2)),
                    register(fitted_pipeline(model, 3, extra_column="tenure_months")))


@dataclass(frozen=True)
class Deployment:
    """A models file of its own: a log root and staging root no other test writes to."""

    config: ProjectConfig
    file: Path

    @property
    def model(self) -> ModelConfig:
        return self.config.models[0]

    @property
    def predictions(self) -> Path:
        return Path(self.model.log_url) / MODEL / "predictions"


@pytest.fixture
def deployment(tmp_path, model_spec) -> Deployment:
    raw = {"staging_root": str(tmp_path / "staging"), "models": [model_spec | {"log_root": str(tmp_path / "logs")}]}
    file = tmp_path / "models.yaml"
    file.write_text(yaml.safe_dump(raw))
    return Deployment(parse_config(raw), file)


# --- a real server process ----------------------------------------------------------------------------------------


@dataclass
class RunningServer:
    process: subprocess.Popen
    url: str
    output: Path

    def health(self) -> dict:
        return httpx.get(f"{self.url}/health", timeout=REQUEST_TIMEOUT_S).json()

    def metrics(self) -> dict[tuple, float]:
        """Every `modelwatch_serve_*` sample: (name, labels) -> value."""
        text = httpx.get(f"{self.url}/metrics", timeout=REQUEST_TIMEOUT_S).text
        return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(text) for sample in family.samples
                if sample.name.startswith("modelwatch_serve_")}

    def stop(self) -> int:
        """SIGTERM to the server's PID, as an orchestrator stops it; its exit code.

        Uvicorn re-raises the SIGTERM after its graceful shutdown: a clean stop ends with -SIGTERM.
        """
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"the server did not stop within {STOP_TIMEOUT_S} s of SIGTERM:\n{self.log()}")

    def log(self) -> str:
        return self.output.read_text(errors="replace")


def _answers_health(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def start_server(tmp_path, mlflow_store):
    """Start `python -m modelwatch serve` on 127.0.0.1 and wait until it answers; every one is stopped afterwards."""
    started: list[RunningServer] = []

    def start(deployment: Deployment, *options: str) -> RunningServer:
        port = free_port()
        env = os.environ | {"MLFLOW_TRACKING_URI": f"sqlite:///{mlflow_store / 'mlflow.db'}",
                            "MODELWATCH_CONFIG": str(deployment.file)}
        output = tmp_path / f"server-{len(started)}.log"
        with output.open("wb") as written:
            process = subprocess.Popen(
                [sys.executable, "-m", "modelwatch", "serve", MODEL, "--host", "127.0.0.1", "--port", str(port),
                 *options],
                env=env, stdout=written, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                # Dies with pytest, even if pytest is killed (Linux).
                preexec_fn=terminate_with_parent if sys.platform == "linux" else None,
            )
        server = RunningServer(process, f"http://127.0.0.1:{port}", output)
        started.append(server)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers_health(server.url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the server never answered on port {port}:\n{server.log()}", pytrace=False)
            time.sleep(0.2)
        return server

    try:
        yield start
    finally:
        for server in started:
            if server.process.poll() is None:
                server.process.terminate()
                try:
                    server.process.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    server.process.kill()
                    server.process.wait()


def wait_for(condition, what: str, server: RunningServer, deadline_s: float = 120.0, poll_s: float = 0.05) -> None:
    """Poll `condition` until it holds; fail naming `what` (with the server's output) past the deadline."""
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {deadline_s} s:\n{server.log()}", pytrace=False)
        time.sleep(poll_s)


# --- requests and logs --------------------------------------------------------------------------------------------


def request_features(model: ModelConfig, index: int) -> dict:
    """A valid, varied request of the configured features (every 25th with a missing value)."""
    rng = np.random.default_rng(index)
    features: dict = {}
    for feature in model.features:
        if feature.type == "numeric":
            features[feature.name] = round(float(rng.uniform(feature.min or 0.0, feature.max or 1.0)), 2)
        elif feature.type == "boolean":
            features[feature.name] = bool(rng.integers(0, 2))
        else:
            features[feature.name] = str(rng.choice(feature.allowed_values))
    if index % 25 == 0:
        features[model.features[index % len(model.features)].name] = None
    return features


def request_body(model: ModelConfig, index: int, request_id: str) -> dict:
    return {"request_id": request_id, "features": request_features(model, index),
            "context": {"channel": ("web", "app")[index % 2]}}


def logged_records(deployment: Deployment) -> list[tuple[str, dict]]:
    """(file name, record) of every line of every published log file."""
    return [(file.name, json.loads(line)) for file in sorted(deployment.predictions.glob("dt=*/*.jsonl"))
            for line in file.read_text().splitlines()]


def extract_logged_days(deployment: Deployment) -> list[dict]:
    """The real extract's manifest of every day the server wrote a partition for."""
    manifests = []
    for partition in sorted(deployment.predictions.glob("dt=*")):
        start = datetime.combine(date.fromisoformat(partition.name[3:]), datetime.min.time(), UTC)
        manifests.append(pipeline.extract(MODEL, start, start + timedelta(days=1), config=deployment.config))
    return manifests


def total(manifests: list[dict], key: str) -> int:
    return sum(manifest[key] for manifest in manifests)


def percentile_ms(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


# --- the load test with a champion switch -------------------------------------------------------------------------


@dataclass
class Reply:
    request_id: str
    status_code: int | None = None
    version: str | None = None
    seconds: float = 0.0
    sent_after_move: bool = False
    sent_after_switch: bool = False
    failure: str | None = None


@dataclass
class LoadRun:
    """400 requests from 16 clients; the champion moves after the first 100 answers."""

    server: RunningServer
    model: ModelConfig
    replies: list[Reply] = field(default_factory=list)
    moved: threading.Event = field(default_factory=threading.Event)
    switched: threading.Event = field(default_factory=threading.Event)
    answered_enough: threading.Event = field(default_factory=threading.Event)
    _next: int = 0
    _answered: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _take(self) -> int | None:
        with self._lock:
            if self._next == LOAD_REQUESTS:
                return None
            self._next += 1
            return self._next - 1

    def client(self, deadline: float) -> None:
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as http:
            while (index := self._take()) is not None:
                if index >= LOAD_REQUESTS - AFTER_SWITCH:
                    self.switched.wait(max(0.0, deadline - time.monotonic()))
                elif self.moved.is_set() and not self.switched.is_set():
                    time.sleep(PACE_DURING_SWAP_S)
                reply = Reply(f"load-{index:04d}", sent_after_move=self.moved.is_set(),
                              sent_after_switch=self.switched.is_set())
                if time.monotonic() > deadline:
                    reply.failure = "not sent: the load test's deadline passed"
                else:
                    self._send(http, index, reply)
                with self._lock:
                    self.replies.append(reply)
                    self._answered += reply.status_code == 200
                    if self._answered == SWITCH_AFTER:
                        self.answered_enough.set()

    def _send(self, http: httpx.Client, index: int, reply: Reply) -> None:
        sent = time.perf_counter()
        try:
            answer = http.post(f"{self.server.url}/predict", json=request_body(self.model, index, reply.request_id))
            reply.seconds = time.perf_counter() - sent
            reply.status_code = answer.status_code
            reply.version = answer.json().get("model_version")
        except (httpx.HTTPError, ValueError) as exc:  # ValueError: an answer that is not JSON
            reply.failure = f"{type(exc).__name__}: {exc}"


def test_a_load_with_a_champion_switch_answers_and_logs_every_request_once(
        start_server, deployment, versions, capsys):
    registry.set_champion(versions.registered, versions.first)
    server = start_server(deployment, "--refresh-seconds", "0.5")
    run = LoadRun(server, deployment.model)
    deadline = time.monotonic() + LOAD_DEADLINE_S
    began = time.monotonic()

    with ThreadPoolExecutor(LOAD_CLIENTS) as pool:
        clients = [pool.submit(run.client, deadline) for _ in range(LOAD_CLIENTS)]
        try:
            assert run.answered_enough.wait(LOAD_DEADLINE_S), f"fewer than {SWITCH_AFTER} answers: {run.replies[:5]}"
            registry.set_champion(versions.registered, versions.second)
            moved_at = time.monotonic()
            run.moved.set()
            wait_for(lambda: server.health()["model_version"] == versions.second, "the switch to the new version",
                     server, deadline_s=max(0.0, deadline - time.monotonic()))
            switch_seconds = time.monotonic() - moved_at
        finally:
            run.switched.set()  # on failure too: no client waits past this point
        for client in clients:
            client.result()
    load_seconds = time.monotonic() - began

    failures = [r for r in run.replies if r.failure or r.status_code != 200]
    assert len(run.replies) == LOAD_REQUESTS and not failures, failures[:5]
    by_version = Counter(r.version for r in run.replies)
    assert set(by_version) == {versions.first, versions.second}
    late = [r for r in run.replies if r.sent_after_switch]
    assert len(late) >= AFTER_SWITCH and all(r.version == versions.second for r in late)
    served_during_swap = sum(1 for r in run.replies if r.sent_after_move and r.version == versions.first)

    metrics = server.metrics()
    assert metrics[("modelwatch_serve_requests_total", (("model", MODEL), ("status", "ok")))] == LOAD_REQUESTS
    assert metrics[("modelwatch_serve_requests_total", (("model", MODEL), ("status", "error")))] == 0
    assert metrics[("modelwatch_serve_request_duration_seconds_count", (("model", MODEL),))] == LOAD_REQUESTS
    assert metrics[("modelwatch_serve_model_version_info", (("model", MODEL), ("version", versions.second)))] == 1
    assert [key for key in metrics if key[0] == "modelwatch_serve_model_version_info"] == [
        ("modelwatch_serve_model_version_info", (("model", MODEL), ("version", versions.second)))]

    assert server.stop() == -signal.SIGTERM
    assert not list(deployment.predictions.glob(f"dt=*/*{ACTIVE_SUFFIX}")), "a file was left in progress"
    records = logged_records(deployment)
    ids = Counter(record["request_id"] for _, record in records)
    assert sorted(ids) == sorted(r.request_id for r in run.replies) and set(ids.values()) == {1}
    answered_by = {r.request_id: r.version for r in run.replies}
    assert all(record["model_version"] == answered_by[record["request_id"]] for _, record in records)

    manifests = extract_logged_days(deployment)
    assert total(manifests, "rows_valid") == LOAD_REQUESTS
    assert total(manifests, "rows_quarantined") == 0 and total(manifests, "duplicates_dropped") == 0
    assert not any(manifest["damaged_files"] or manifest["ignored_files"] for manifest in manifests)

    client_ms = [r.seconds * 1000 for r in run.replies]
    server_ms = [record["latency_ms"] for _, record in records]
    with capsys.disabled():
        print(f"\nload test: {LOAD_REQUESTS} requests from {LOAD_CLIENTS} clients answered in {load_seconds:.1f} s "
              f"(paced by {PACE_DURING_SWAP_S} s per client while the new version loaded); "
              f"client latency p50 {percentile_ms(client_ms, 50):.1f} ms, p99 {percentile_ms(client_ms, 99):.1f} ms; "
              f"server latency p50 {percentile_ms(server_ms, 50):.1f} ms, p99 {percentile_ms(server_ms, 99):.1f} ms; "
              f"champion v{versions.first} -> v{versions.second} served {switch_seconds:.2f} s after the alias "
              f"moved (refresh 0.5 s), {served_during_swap} requests answered by v{versions.first} meanwhile; "
              f"answers per version {dict(by_version)}")


def test_a_stop_under_load_logs_every_answered_request(start_server, deployment, versions):
    registry.set_champion(versions.registered, versions.first)
    server = start_server(deployment)
    sent: list[str] = []
    answered: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()
    deadline = time.monotonic() + LOAD_DEADLINE_S

    def client(number: int) -> None:
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as http:
            for index in range(LOAD_REQUESTS):  # bounded; the stop ends it much sooner
                request_id = f"stop-{number}-{index:04d}"
                with lock:
                    sent.append(request_id)
                try:
                    answer = http.post(f"{server.url}/predict",
                                       json=request_body(deployment.model, index, request_id))
                except httpx.HTTPError:  # refused or closed: the server is stopping
                    return
                if answer.status_code != 200 or time.monotonic() > deadline:
                    return
                with lock:
                    answered.append(request_id)
                    if len(answered) >= SWITCH_AFTER:
                        enough.set()

    with ThreadPoolExecutor(4) as pool:
        clients = [pool.submit(client, number) for number in range(4)]
        assert enough.wait(LOAD_DEADLINE_S), server.log()
        stopped = server.stop()  # while the clients keep sending
        for running in clients:
            running.result()

    assert stopped == -signal.SIGTERM
    logged = Counter(record["request_id"] for _, record in logged_records(deployment))
    assert set(answered) <= set(logged) <= set(sent) and set(logged.values()) == {1}
    manifests = extract_logged_days(deployment)
    assert total(manifests, "rows_valid") == len(logged) and total(manifests, "rows_quarantined") == 0


# --- bad input ----------------------------------------------------------------------------------------------------


def _bad_bodies(model: ModelConfig) -> list[tuple[str, bytes, int, str]]:
    """(case, body, expected status, a phrase the error names) for requests the server must refuse."""
    good = request_features(model, 1)

    def as_json(value) -> bytes:
        return json.dumps(value).encode()

    return [
        ("not JSON", b'{"features": ', 400, "expected a JSON object"),
        ("not an object", b"[1, 2]", 400, "got list"),
        ("NaN", b'{"features": {"age": NaN}}', 400, "NaN is not a JSON number"),
        ("too large", b"{" + b" " * (inputs.MAX_BODY_BYTES + 10) + b"}", 413, "at most"),
        ("no features", as_json({"request_id": "bad-1"}), 422, "features: missing"),
        ("a missing feature", as_json({"request_id": "bad-2", "features": {k: v for k, v in good.items()
                                                                            if k != "age"}}), 422, "['age']"),
        ("an unknown feature", as_json({"features": good | {"agee": 3}}), 422, 'unknown "agee"; expected ['),
        ("a wrong type", as_json({"features": good | {"age": "forty"}}), 422, "features.age: expected a number"),
        ("a boolean as number", as_json({"features": good | {"has_card": 1}}), 422, "features.has_card"),
        ("a number beyond a double", b'{"features": ' + json.dumps(good).encode()[:-1] + b', "age": 1e999}}',
         422, "expected a finite number"),
        ("a long category", as_json({"features": good | {"country": "D" * 300}}), 422, "at most 256 characters"),
        ("a bad request id", as_json({"request_id": 7, "features": good}), 422, "request_id: expected a string"),
        ("an unknown context key", as_json({"features": good, "context": {"shop": "x"}}), 422, "context: unknown"),
        ("an unknown field", as_json({"features": good, "feature": {}}), 422, "unknown field"),
    ]


def test_bad_input_is_refused_with_a_clear_error_and_logged_as_an_error_record(start_server, deployment, versions):
    registry.set_champion(versions.registered, versions.first)
    server = start_server(deployment)
    cases = _bad_bodies(deployment.model)
    refused_ids = {}
    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as http:
        for case, body, status, phrase in cases:
            answer = http.post(f"{server.url}/predict", content=body, headers={"content-type": "application/json"})
            error = answer.json()
            assert answer.status_code == status, (case, error)
            assert error["error"] == "InvalidInput" and phrase in error["detail"], (case, error)
            assert error["model_version"] == versions.first
            refused_ids[error["request_id"]] = error.get("client_request_id")
        good = http.post(f"{server.url}/predict", json={"features": request_features(deployment.model, 2)}).json()
        retried = http.post(f"{server.url}/predict", json=request_body(deployment.model, 3, "bad-2")).json()
    assert "bad-2" in refused_ids.values()  # the client's id is echoed, beside the id the refusal is logged under
    assert good["model_version"] == versions.first and 0 <= good["score"] <= 1 and good["prediction"] in (0, 1)
    assert retried["request_id"] == "bad-2"  # a retry with the refused request's id: its own record, no conflict

    metrics = server.metrics()
    assert metrics[("modelwatch_serve_requests_total", (("model", MODEL), ("status", "error")))] == len(cases)
    assert metrics[("modelwatch_serve_requests_total", (("model", MODEL), ("status", "ok")))] == 2
    assert metrics[("modelwatch_serve_errors_total", (("error", "InvalidInput"), ("model", MODEL)))] == len(cases)
    assert metrics[("modelwatch_serve_request_duration_seconds_count", (("model", MODEL),))] == len(cases) + 2
    assert server.stop() == -signal.SIGTERM

    records = {record["request_id"]: record for _, record in logged_records(deployment)}
    assert set(records) == set(refused_ids) | {good["request_id"], "bad-2"}
    for request_id in refused_ids:
        record = records[request_id]
        assert (record["status"], record["error"], record["features"]) == ("error", "InvalidInput", {})
        assert record["model_version"] == versions.first and record["latency_ms"] >= 0
    manifests = extract_logged_days(deployment)
    assert total(manifests, "rows_valid") == len(cases) + 2
    assert total(manifests, "rows_quarantined") == 0
    staged = pd.concat([StagedBatch(m["folder"]).read_frame(staging.PREDICTIONS) for m in manifests])
    assert staged["status"].value_counts().to_dict() == {"error": len(cases), "ok": 2}  # errors count as errors
    assert set(staged.loc[staged["status"] == "error", "error"]) == {"InvalidInput"}


# --- rotation -----------------------------------------------------------------------------------------------------


def test_log_files_rotate_at_the_size_limit_and_by_age_without_losing_or_repeating_a_record(
        start_server, deployment, versions):
    registry.set_champion(versions.registered, versions.first)
    limit = 4096
    server = start_server(deployment, "--rotate-bytes", str(limit), "--rotate-seconds", "1")
    sent = [f"rotate-{i:03d}" for i in range(120)]
    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as http:
        for index, request_id in enumerate(sent[:100]):
            assert http.post(f"{server.url}/predict", json=request_body(deployment.model, index, request_id)
                             ).status_code == 200
        # The age limit publishes the last, small file while the server runs: extract finds every record.
        wait_for(lambda: len(logged_records(deployment)) == 100, "publishing the last file by its age", server)
        manifests = extract_logged_days(deployment)
        assert total(manifests, "rows_valid") == 100 and total(manifests, "rows_quarantined") == 0
        assert not any(manifest["ignored_files"] for manifest in manifests)
        for index, request_id in enumerate(sent[100:], start=100):
            assert http.post(f"{server.url}/predict", json=request_body(deployment.model, index, request_id)
                             ).status_code == 200
    assert server.stop() == -signal.SIGTERM

    files = sorted(deployment.predictions.glob("dt=*/*.jsonl"))
    sizes = [file.stat().st_size for file in files]
    longest_line = max(len(line) + 1 for file in files for line in file.read_bytes().splitlines())
    # Files are also published by age (1 s) and at the stop, so some stay below the limit; none passes it by a record.
    assert any(size >= limit for size in sizes) and all(size < limit + longest_line for size in sizes), sizes
    records = logged_records(deployment)
    assert sorted(record["request_id"] for _, record in records) == sent
    assert total(extract_logged_days(deployment), "rows_valid") == len(sent)


# --- a version that cannot be served ------------------------------------------------------------------------------


def test_a_version_that_cannot_be_served_leaves_the_previous_one_serving(start_server, deployment, versions):
    registry.set_champion(versions.registered, versions.first)
    server = start_server(deployment, "--refresh-seconds", "0.3")
    failures = ("modelwatch_serve_model_load_failures_total", (("model", MODEL), ("version", versions.incompatible)))

    registry.set_champion(versions.registered, versions.incompatible)
    answers = []
    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as http:
        def answered_while_failing() -> bool:
            answers.append(http.post(f"{server.url}/predict",
                                     json={"features": request_features(deployment.model, len(answers))}))
            return server.metrics().get(failures, 0) >= 1
        wait_for(answered_while_failing, "the failed load of the incompatible version", server)
        assert server.health()["model_version"] == versions.first
        assert all(a.status_code == 200 and a.json()["model_version"] == versions.first for a in answers)

        registry.set_champion(versions.registered, versions.second)  # the fix: the alias moves on
        wait_for(lambda: server.health()["model_version"] == versions.second, "serving the next version", server)
        assert http.post(f"{server.url}/predict", json={"features": request_features(deployment.model, 0)}
                         ).json()["model_version"] == versions.second
    assert server.stop() == -signal.SIGTERM
    assert f"version {versions.incompatible} of {versions.registered!r} cannot be served" in server.log()
    assert "columns are missing" in server.log() and f"keeps serving version {versions.first}" in server.log()


# --- in-process parts ---------------------------------------------------------------------------------------------


def test_a_model_without_champion_is_not_served(mlflow_store, deployment):
    model = deployment.model.model_copy(update={"registered_model": f"unserved_{uuid.uuid4().hex[:8]}"})
    server = ModelServer(model, refresh_seconds=1, rotate_bytes=1000, rotate_seconds=1)
    with pytest.raises(VersionLoadError, match="has no `champion` alias"):
        server.open()


@pytest.mark.parametrize(("body", "problems"), [
    ({"features": {}, "context": []}, ["features: missing", "context: expected an object"]),
    ({"features": {"age": True}}, ["features: missing", "features.age: expected a number or null (got true)"]),
    ({"features": {"country": "DE\u0000"}}, ["features: missing", "features.country: expected text without NUL"]),
])
def test_every_problem_of_a_body_is_named(deployment, body, problems):
    with pytest.raises(InvalidRequest) as refused:
        parse_request(deployment.model, json.dumps(body).encode(), lambda: "generated")
    assert refused.value.status_code == 422
    assert len(refused.value.problems) == len(problems)
    assert all(found.startswith(expected) for found, expected in zip(refused.value.problems, problems, strict=True))


def test_a_valid_body_keeps_nulls_and_gets_an_id(deployment):
    features = request_features(deployment.model, 0)  # index 0 carries a null
    parsed = parse_request(deployment.model, json.dumps({"features": features}).encode(), lambda: "generated")
    assert (parsed.request_id, parsed.features, parsed.context) == ("generated", features, {})
    assert None in parsed.features.values()


def _record(request_id: str, moment: datetime) -> dict:
    return {"request_id": request_id, "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "model_name": MODEL, "model_version": "1", "features": {}, "latency_ms": 1.0, "status": "error",
            "error": "InvalidInput"}


def test_records_land_in_the_partition_of_their_day_and_are_read_only_once_published(tmp_path):
    log = PredictionLog(str(tmp_path), MODEL, max_bytes=1 << 20, max_seconds=3600)
    before, after = datetime(2026, 3, 1, 23, 59, 59, 900_000, UTC), datetime(2026, 3, 2, 0, 0, 0, 100_000, UTC)
    log.write(_record("late", before), before)
    log.write(_record("early", after), after)
    for day in (before.date(), after.date()):
        partition = logs.list_partition(str(tmp_path), MODEL, "predictions", day)
        assert partition.files == () and len(partition.ignored) == 1  # in progress: not a log yet

    log.tick(after)  # 1 March is over: its file is published, 2 March's stays open
    assert len(logs.list_partition(str(tmp_path), MODEL, "predictions", before.date()).files) == 1
    assert logs.list_partition(str(tmp_path), MODEL, "predictions", after.date()).files == ()
    log.close()
    published = logs.list_partition(str(tmp_path), MODEL, "predictions", after.date()).files
    assert [json.loads(line)["request_id"] for line in Path(published[0]).read_text().splitlines()] == ["early"]


def test_a_file_is_published_once_it_reaches_the_size_limit(tmp_path):
    log = PredictionLog(str(tmp_path), MODEL, max_bytes=1000, max_seconds=3600)
    moment = datetime(2026, 3, 1, 12, tzinfo=UTC)
    for index in range(50):
        log.write(_record(f"r{index:02d}", moment), moment)
    files = sorted(log.partition(moment.date()).glob("*.jsonl"))
    line = len(json.dumps(_record("r00", moment), ensure_ascii=False)) + 1
    records_per_file = -(-1000 // line)  # a file is published by the record that takes it to 1000 bytes
    assert len(files) == 50 // records_per_file
    assert all(1000 <= file.stat().st_size < 1000 + line for file in files)
    log.close()
    ids = [json.loads(text)["request_id"] for file in sorted(log.partition(moment.date()).glob("*.jsonl"))
           for text in file.read_text().splitlines()]
    assert ids == [f"r{index:02d}" for index in range(50)]


def test_an_idle_day_has_a_partition_and_old_files_are_published_at_the_next_tick(tmp_path):
    log = PredictionLog(str(tmp_path), MODEL, max_bytes=1 << 20, max_seconds=1e-9)
    today = datetime.now(UTC)
    log.tick(today)
    assert log.partition(today.date()).is_dir()  # served nothing yet: empty, not missing
    log.write(_record("one", today), today)
    log.tick(today)
    assert [file.name.endswith(".jsonl") for file in log.partition(today.date()).iterdir()] == [True]
    log.close()


def test_files_left_by_a_dead_server_on_this_host_are_published(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid, alive_pid = int(finished.stdout), os.getppid()
    partition = tmp_path / MODEL / "predictions" / "dt=2026-03-01"
    partition.mkdir(parents=True)
    for pid in (dead_pid, alive_pid):
        name = f"serve-{host_label()}-{pid}-20260301T000000000000Z-000001.jsonl{ACTIVE_SUFFIX}"
        (partition / name).write_text(json.dumps(_record(f"from-{pid}", datetime(2026, 3, 1, tzinfo=UTC))) + "\n")

    published = PredictionLog(str(tmp_path), MODEL, max_bytes=1000, max_seconds=1).publish_abandoned()

    assert [file.name for file in published] == [f"serve-{host_label()}-{dead_pid}-20260301T000000000000Z-000001.jsonl"]
    assert len(list(partition.glob(f"*{ACTIVE_SUFFIX}"))) == 1  # the live process keeps its file


def test_an_object_store_root_is_refused():
    with pytest.raises(ValueError, match="local or mounted folder"):
        PredictionLog("memory://logs", MODEL, max_bytes=1000, max_seconds=1)

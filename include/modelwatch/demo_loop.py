"""The last part of `make demo`: the monitoring loop closed by a real model server.

In the simulated days no server follows the registry, so a decision that moves
the `champion` alias changes nothing in the logs that follow. Here it does, for
`credit_risk`:

1. `python -m modelwatch serve credit_risk` starts as a child process on
   127.0.0.1 (a free port) with the demo's data folder, models file and
   registry, and serves the champion;
2. the worse version of the simulator's `bad_version` incident (trained and
   registered by the simulator's own code, or found in the registry) is made
   the champion, and the server swaps it in without a restart;
3. requests drawn as the simulator draws them (its world, with the drift the
   simulated days ended on) go through `POST /predict`, and their true outcomes
   are written as feedback in the log contract's form;
4. `monitor_credit_risk` runs with `dag.test()` for the interval that holds the
   traffic, decides `rollback` and moves the alias back;
5. the server serves the previous version again, and a request shows it.

The server stamps requests with the real time, so the interval is today's,
which has not ended. Nothing refuses it: its logical date (today, 00:00 UTC)
is in the past, `wait_for_logs` only needs the partition folder (the server
makes it at start), and every task reads what the logs hold now. What they hold
is what the server has published: it writes to ``….jsonl.inprogress`` files,
which `extract` skips, and publishes a file once it is `ROTATE_SECONDS` old. So
the loop waits until every answered request is in a published file before the
run, and the run judges all the traffic sent (with anything else the day's
partition holds, an earlier demo's of the same day, say). It judges part of a
day, and says so: its data-quality warnings report a volume far below the
recent days' and a latest record hours before the interval's end. A run of the
same interval after midnight (the scheduler's) judges the whole day and
replaces the interval's rows; its rollback finds the alias moved back already
and moves nothing.

The simulated days of the demo leave this incident out (`simulated_incidents`):
had they ended with the worse version serving, the logs would show it live
for longer than `rollback.window_intervals` by today, with no better version
serving just before it, and no rollback would be due.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelwatch import settings
from modelwatch.config import ModelConfig

if TYPE_CHECKING:  # imported where used: the CLI parses fast
    import httpx
    import numpy as np

    from modelwatch.simulation import Incident
    from modelwatch.simulation.incidents import DayEffects
    from modelwatch.simulation.training import ServedModel

LOOP_MODEL = "credit_risk"
TRAFFIC_REQUESTS = 2_000
CLIENTS = 4  # enough to keep the server busy; more only queue (and add to the logged latency)
REFRESH_SECONDS = 1.0
ROTATE_SECONDS = 2.0
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 30.0
SWAP_TIMEOUT_S = 120.0
PUBLISH_TIMEOUT_S = 60.0
POLL_S = 0.2
TRAFFIC_STREAM = 0x100B  # the random stream of the loop's requests, apart from the simulated days' streams
REASON_WIDTH = 110

RunMonitor = Callable[[str, date], tuple[str, dict[str, str], float]]
"""Runs `monitor_<model>` for a day; returns the run's state, each task's state and the seconds it took."""


class LoopError(RuntimeError):
    """The loop cannot go on (the server does not start, a swap never comes); the message says why."""


def _say(text: str) -> None:
    print(text, flush=True)


def live_incident() -> Incident:
    """The `bad_version` incident of `credit_risk` in the simulator's default schedule: the loop plays it live."""
    from modelwatch.simulation import DEFAULT_SCHEDULE

    return next(i for i in DEFAULT_SCHEDULE if i.kind == "bad_version" and i.model == LOOP_MODEL)


def simulated_incidents() -> list[Incident]:
    """The default schedule without the incident the loop plays live (module docstring: why)."""
    from modelwatch.simulation import DEFAULT_SCHEDULE

    return [incident for incident in DEFAULT_SCHEDULE if incident != live_incident()]


# --------------------------------------------------------------------------- the server process


@dataclass
class ServerProcess:
    """A running `python -m modelwatch serve` child process."""

    process: subprocess.Popen
    url: str
    output: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def health(self) -> dict[str, Any]:
        """`GET /health`'s answer.

        Raises
        ------
        LoopError
            The server does not answer (it ended, say); the message holds the end of its output.
        """
        import httpx

        try:
            return httpx.get(f"{self.url}/health", timeout=REQUEST_TIMEOUT_S).json()
        except httpx.HTTPError as exc:
            raise LoopError(f"the model server did not answer GET /health ({exc}):\n{self.output_tail()}") from exc

    def output_tail(self, lines: int = 20) -> str:
        return "\n".join(self.output.read_text(errors="replace").splitlines()[-lines:])

    def wait_until_serving(self, deadline_s: float) -> dict[str, Any]:
        """Poll `GET /health` until the server answers; its answer.

        Raises
        ------
        LoopError
            The process ended, or did not answer within `deadline_s`.
        """
        deadline = time.monotonic() + deadline_s
        while True:
            if self.process.poll() is not None:
                raise LoopError(f"the model server ended ({describe_exit(self.process.returncode)}) before it "
                                f"served:\n{self.output_tail()}")
            try:
                return self.health()
            except LoopError:  # not listening yet
                if time.monotonic() > deadline:
                    raise LoopError(f"the model server did not answer within {deadline_s:g} s:\n"
                                    f"{self.output_tail()}") from None
            time.sleep(POLL_S)

    def wait_for_version(self, version: str, deadline_s: float) -> dict[str, Any]:
        """Poll `GET /health` until the server serves `version`; its answer.

        Raises
        ------
        LoopError
            Another version still serves after `deadline_s`.
        """
        deadline = time.monotonic() + deadline_s
        while (health := self.health())["model_version"] != version:
            if time.monotonic() > deadline:
                raise LoopError(f"the server still serves version {health['model_version']} {deadline_s:g} s "
                                f"after the champion became version {version}:\n{self.output_tail()}")
            time.sleep(POLL_S)
        return health

    def stop(self) -> int:
        """SIGTERM to the server's PID; after `STOP_TIMEOUT_S`, SIGKILL. Its exit status."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def describe_exit(status: int) -> str:
    """A process's exit status in words: `subprocess` gives a signal that ended it as a negative number."""
    return f"ended by {signal.Signals(-status).name}" if status < 0 else f"exit status {status}"


@contextlib.contextmanager
def running_server(model: ModelConfig, output: Path) -> Iterator[ServerProcess]:
    """Start the model server for `model` on 127.0.0.1; stopped by its PID on leaving, however the block ends.

    The caller waits for it to serve (`ServerProcess.wait_until_serving`), so that
    other work can run while it imports and loads the champion.
    """
    from modelwatch.airflow_services import free_port, terminate_with_parent

    port = free_port()
    env = os.environ | {
        "MODELWATCH_DATA_DIR": str(settings.data_dir()),
        "MODELWATCH_CONFIG": str(settings.config_path()),
        "MLFLOW_TRACKING_URI": settings.default_mlflow_uri(),
    }
    argv = [sys.executable, "-m", "modelwatch", "serve", model.name, "--host", "127.0.0.1", "--port", str(port),
            "--refresh-seconds", f"{REFRESH_SECONDS:g}", "--rotate-seconds", f"{ROTATE_SECONDS:g}"]
    with output.open("wb") as written:
        # A session of its own: Ctrl-C reaches the demo only, which stops the server by its PID;
        # and the server gets SIGTERM should the demo die without a chance to (Linux).
        process = subprocess.Popen(argv, env=env, stdout=written, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True,
                                   preexec_fn=terminate_with_parent if sys.platform == "linux" else None)
    server = ServerProcess(process, f"http://127.0.0.1:{port}", output)
    try:
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------- traffic and labels


@dataclass(frozen=True)
class DrawnRequests:
    """Request bodies for `POST /predict` and the true outcome of each, in the same order."""

    bodies: list[dict[str, Any]]
    truth: np.ndarray

    @property
    def request_ids(self) -> list[str]:
        return [body["request_id"] for body in self.bodies]


def draw_requests(model: ModelConfig, seed: int, day: date, count: int, effects: DayEffects,
                  id_prefix: str) -> DrawnRequests:
    """Requests of `day` as the simulator draws them (`simulation.serving.serve_block`), with their outcomes.

    Parameters
    ----------
    effects : DayEffects
        The incidents in effect (drift, concept drift) on that day.
    id_prefix : str
        Makes the request ids unique to this loop: another run of the demo on the same day adds its own.
    """
    import numpy as np

    from modelwatch.simulation.records import context_struct, features_struct
    from modelwatch.simulation.serving import ModelRun, draw_inputs
    from modelwatch.simulation.worlds import world_for

    run = ModelRun(model, world_for(model, seed), seed)
    now = datetime.now(UTC)
    minute = np.full(count, now.hour * 60 + now.minute)
    features, context, truth = draw_inputs(run, run.stream(day, TRAFFIC_STREAM), minute, effects)
    # The simulator's record columns give each value its logged JSON type (float, str, bool).
    rows = features_struct(model, features, np.zeros(count, dtype=bool)).to_pylist()
    logged = {key: context[key] for key in model.context if key in context}  # the keys the server accepts
    contexts = context_struct(logged).to_pylist() if logged else None
    bodies = [
        {"request_id": f"{id_prefix}-{n:05d}", "features": row} | ({"context": contexts[n]} if contexts else {})
        for n, row in enumerate(rows)
    ]
    return DrawnRequests(bodies, truth)


@dataclass(frozen=True)
class Reply:
    """What one `POST /predict` got: the version that answered, or why it failed."""

    version: str | None
    latency_ms: float | None
    failure: str | None


@dataclass
class Traffic:
    """The replies of one burst of requests."""

    replies: list[Reply]
    seconds: float

    @property
    def failures(self) -> list[str]:
        return [reply.failure for reply in self.replies if reply.failure]

    @property
    def by_version(self) -> Counter:
        return Counter(reply.version for reply in self.replies if reply.failure is None)

    def latency_percentile(self, q: float) -> float:
        import numpy as np

        latencies = [reply.latency_ms for reply in self.replies if reply.latency_ms is not None]
        return float(np.percentile(latencies, q)) if latencies else float("nan")


def predict(http: httpx.Client, url: str, body: dict[str, Any]) -> Reply:
    """Send one request; a reply other than 200, or none, is a failure."""
    import httpx

    try:
        answer = http.post(f"{url}/predict", json=body)
        content = answer.json()
    except (httpx.HTTPError, ValueError) as exc:  # ValueError: an answer that is not JSON
        return Reply(None, None, f"{body.get('request_id')}: {type(exc).__name__}: {exc}")
    if answer.status_code != 200:
        return Reply(content.get("model_version"), None,
                     f"{body.get('request_id')}: {answer.status_code} {content.get('error')}: {content.get('detail')}")
    return Reply(content["model_version"], content["latency_ms"], None)


def send(url: str, bodies: list[dict[str, Any]], clients: int) -> Traffic:
    """Send every body to `POST /predict` from `clients` concurrent keep-alive clients."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    stop = threading.Event()  # set when the caller is interrupted: clients end after their request in flight

    def client(share: list[dict[str, Any]]) -> list[Reply]:
        with httpx.Client(timeout=REQUEST_TIMEOUT_S) as http:
            return [predict(http, url, body) for body in share if not stop.is_set()]

    began = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        try:
            parts = list(pool.map(client, [bodies[k::clients] for k in range(clients)]))
        finally:
            stop.set()
    return Traffic([reply for part in parts for reply in part], time.perf_counter() - began)


def write_feedback(model: ModelConfig, request_ids: list[str], truth: np.ndarray, known_at: datetime,
                   name: str) -> Path:
    """Write the labels of answered requests as one feedback file of the log contract, published whole.

    The file goes to the partition of `known_at`'s day (each label's `label_timestamp`), written under
    another name first and renamed when complete, so that no run reads it half written.
    """
    import fsspec
    import numpy as np
    import pyarrow as pa

    from modelwatch.serving.logfiles import ACTIVE_SUFFIX
    from modelwatch.simulation.formats import encode
    from modelwatch.simulation.records import feedback_table

    stamp_ms = int(known_at.timestamp() * 1000)
    table = feedback_table(pa.array(request_ids, pa.string()), np.asarray(truth, dtype=float),
                           np.full(len(request_ids), stamp_ms, dtype=np.int64))
    _, root = fsspec.core.url_to_fs(model.log_url)
    final = Path(root) / model.name / "feedback" / f"dt={known_at.astimezone(UTC).date().isoformat()}" / name
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(final.name + ACTIVE_SUFFIX)  # a name `extract` skips, as the server's
    partial.write_bytes(encode(table, "jsonl"))
    os.replace(partial, final)
    return final


@dataclass(frozen=True)
class Published:
    """The log files one server process published in one partition."""

    files: int
    records: int


def wait_until_published(model: ModelConfig, day: date, pid: int, deadline_s: float) -> Published:
    """Wait until the server process `pid` has no file in progress in `day`'s prediction partition.

    Raises
    ------
    LoopError
        A file is still in progress after `deadline_s`.
    """
    import fsspec

    from modelwatch.serving.logfiles import ACTIVE_SUFFIX, LOG_SUFFIX, host_label

    _, root = fsspec.core.url_to_fs(model.log_url)
    partition = Path(root) / model.name / "predictions" / f"dt={day.isoformat()}"
    prefix = f"serve-{host_label()}-{pid}-"
    deadline = time.monotonic() + deadline_s
    while list(partition.glob(f"{prefix}*{LOG_SUFFIX}{ACTIVE_SUFFIX}")):
        if time.monotonic() > deadline:
            raise LoopError(f"the server kept a log file in progress in {partition} for more than {deadline_s:g} s")
        time.sleep(POLL_S)
    files = sorted(partition.glob(f"{prefix}*{LOG_SUFFIX}"))
    return Published(len(files), sum(file.read_bytes().count(b"\n") for file in files))


# --------------------------------------------------------------------------- the loop


@dataclass
class LoopResult:
    """What the loop saw; `problems` lists what went other than the loop expects."""

    day: date
    served_before: str | None = None
    bad_version: str | None = None
    served_during: str | None = None
    served_after: str | None = None
    answered_after: str | None = None
    sent: int = 0
    answers: Counter = field(default_factory=Counter)
    failed_requests: int = 0
    published_records: int = 0
    decision: dict[str, Any] | None = None
    server_pid: int | None = None
    server_exit: int | None = None
    seconds: float = 0.0

    def problems(self) -> list[str]:
        found = []
        if self.failed_requests:
            found.append(f"{self.failed_requests} requests failed")
        if self.published_records != self.sent:
            found.append(f"{self.sent} requests sent, but the server published {self.published_records} records "
                         "before the run")
        if self.decision is None or self.decision["decision"] != "rollback":
            found.append(f"{LOOP_MODEL} {self.day}: expected the decision rollback, got "
                         f"{None if self.decision is None else self.decision['decision']}")
        if self.served_after != self.served_before or self.answered_after != self.served_before:
            found.append(f"expected version {self.served_before} serving after the rollback; /health said "
                         f"{self.served_after}, a request was answered by {self.answered_after}")
        return found


def decision_of(model: ModelConfig, day: date) -> dict[str, Any] | None:
    """The row of `model_decision_timeline` for the model's interval starting on `day`, if decided."""
    from modelwatch.pipeline import warehouse_engine
    from modelwatch.warehouse.load import read_frame

    frame = read_frame(
        warehouse_engine(),
        "SELECT interval_start, decision, outcome, champion_before, champion_after, served_version, reason "
        "FROM model_decision_timeline WHERE model_name = :model ORDER BY interval_start",
        {"model": model.name},
    )
    rows = [row for row in frame.to_dict("records") if str(row["interval_start"])[:10] == day.isoformat()]
    return rows[-1] if rows else None


def _seconds_after(earlier: datetime, later_text: str) -> float:
    """Seconds from `earlier` to an RFC 3339 time as the server writes it (``…Z``)."""
    return (datetime.fromisoformat(later_text) - earlier).total_seconds()


def _deploy(server: ServerProcess, model: ModelConfig, bad: ServedModel, incident: Incident, seed: int,
            result: LoopResult) -> None:
    """Make the worse version the champion, as the simulator's incident does, and wait until the server serves it."""
    from modelwatch import registry
    from modelwatch.simulation.training import recipe
    from modelwatch.simulation.worlds import world_for

    dropped = ", ".join(recipe(world_for(model, seed), "bad_version", incident.params)["drop"]) or "none"
    moved_at = datetime.now(UTC)
    registry.set_champion(model.registry_name, bad.version)
    result.bad_version = bad.version
    _say(f"  deployed version {bad.version}, the simulator's {incident.kind} ({incident.param('mode')}: trained "
         f"without {dropped}): champion alias moved {result.served_before} -> {bad.version}")
    health = server.wait_for_version(bad.version, SWAP_TIMEOUT_S)
    result.served_during = health["model_version"]
    swap = _seconds_after(moved_at, health["loaded_at"])
    _say(f"  GET /health: version {result.served_during} serves, loaded {swap:.1f} s after the alias moved, no "
         f"restart (pid {server.pid})")


def _serve_and_label(server: ServerProcess, model: ModelConfig, drawn: DrawnRequests, clients: int, id_prefix: str,
                     result: LoopResult) -> None:
    """Send the requests, write the labels of the answered ones, and wait until the server published its records."""
    traffic = send(server.url, drawn.bodies, clients)
    result.sent = len(traffic.replies)
    result.answers = traffic.by_version
    result.failed_requests = len(traffic.failures)
    answered = ", ".join(f"{count:,} by version {version}" for version, count in sorted(traffic.by_version.items()))
    _say(f"  POST /predict: {len(traffic.replies):,} requests from {clients} clients in {traffic.seconds:.1f} s "
         f"({len(traffic.replies) / traffic.seconds:.0f} a second), {answered or 'none answered'}, "
         f"{result.failed_requests} failed; server latency p50 {traffic.latency_percentile(50):.0f} ms, "
         f"p99 {traffic.latency_percentile(99):.0f} ms")
    for failure in traffic.failures[:3]:
        _say(f"    {failure}")
    labeled = [n for n, reply in enumerate(traffic.replies) if reply.failure is None]
    feedback = write_feedback(model, [drawn.request_ids[n] for n in labeled], drawn.truth[labeled],
                              datetime.now(UTC), f"{id_prefix}.jsonl")
    _say(f"  feedback: the true outcome of the {len(labeled):,} answered requests, in {feedback}")
    published = wait_until_published(model, result.day, server.pid, PUBLISH_TIMEOUT_S)
    result.published_records = published.records
    _say(f"  the server published {published.records:,} records in {published.files} files; the interval has not "
         "ended, so the run judges the part of the day logged so far")


def _judge(model: ModelConfig, run_monitor: RunMonitor, result: LoopResult) -> None:
    """Run the DAG for the loop's day and show its decision, as the warehouse's timeline holds it."""
    state, tasks, seconds = run_monitor(model.name, result.day)
    _say(f"  monitor_{model.name} {result.day}: {state} in {seconds:.1f} s")
    if state != "success":
        _say(f"    task states: {tasks}")
    result.decision = decision_of(model, result.day)
    if result.decision is None:
        return
    row = result.decision
    moved = (row["champion_after"] if row["champion_after"] == row["champion_before"]
             else f"{row['champion_before']} -> {row['champion_after']}")
    _say(f"  decision (model_decision_timeline): {row['decision']}, outcome {row['outcome']}, served version "
         f"{row['served_version']}, champion {moved}")
    _say(textwrap.fill(row["reason"], REASON_WIDTH, initial_indent="    ", subsequent_indent="    "))


def _show_served_after(server: ServerProcess, model: ModelConfig, body: dict[str, Any], result: LoopResult) -> None:
    """Wait until the server serves the champion the DAG left, then send one more request."""
    import httpx

    from modelwatch import registry
    from modelwatch.actions.rollback import RESTORED_AT_TAG

    champion = registry.champion_version(model.registry_name)
    health = server.wait_for_version(champion, SWAP_TIMEOUT_S)
    result.served_after = health["model_version"]
    restored_at = registry.get_version(model.registry_name, champion).tags.get(RESTORED_AT_TAG)
    since = (f", loaded {_seconds_after(datetime.fromisoformat(restored_at), health['loaded_at']):.1f} s after the "
             "rollback moved the alias" if restored_at else "")
    _say(f"  GET /health: version {result.served_after} serves{since}, no restart (pid {server.pid})")
    with httpx.Client(timeout=REQUEST_TIMEOUT_S) as http:
        reply = predict(http, server.url, body)
    result.answered_after = reply.version
    result.failed_requests += reply.failure is not None
    _say(f"  POST /predict: answered by version {reply.version}" + (f" ({reply.failure})" if reply.failure else "")
         + f"; {result.failed_requests} failed requests in all")


def run(model: ModelConfig, *, period_start: date, incidents: list[Incident], seed: int, run_monitor: RunMonitor,
        output_folder: Path, requests: int = TRAFFIC_REQUESTS, clients: int = CLIENTS) -> LoopResult:
    """Close the monitoring loop with the reference model server (module docstring), printing each step.

    Parameters
    ----------
    model : ModelConfig
        The model to serve (`credit_risk` in the demo); its champion serves first.
    period_start : date
        First day of the simulated period; today continues it.
    incidents : list of Incident
        The simulated schedule: those still in effect today (drift) shape the requests.
    seed : int
        The simulation's seed: the same world, and the same worse version, as the simulated days.
    run_monitor : callable
        Runs `monitor_<model>` for a day (`demo.run_monitor`).
    output_folder : Path
        Where the server's output goes (`demo-server.log`).
    requests, clients : int
        How many requests to send, and from how many concurrent clients.

    Returns
    -------
    LoopResult
        The versions served before, during and after, the answers and the decision; the server is stopped.

    Raises
    ------
    LoopError
        The server did not start, or did not swap a version in; it is stopped all the same.
    """
    from modelwatch import registry
    from modelwatch.simulation.incidents import day_effects
    from modelwatch.simulation.training import ensure_version
    from modelwatch.simulation.worlds import world_for

    began = time.monotonic()
    result = LoopResult(datetime.now(UTC).date())
    incident = live_incident()
    # Today continues the simulated period: the model's incidents still in effect (drift) shape its requests.
    index = (result.day - period_start).days
    effects = day_effects([i for i in incidents if i.model in (None, model.name)], index, period_start, index)
    _say(f"\nThe monitoring loop with the reference model server: {model.name}, today {result.day}")
    with running_server(model, output_folder / "demo-server.log") as server:
        result.server_pid = server.pid
        _say(f"  started `python -m modelwatch serve {model.name}` on {server.url} (pid {server.pid}, champion "
             f"looked up every {REFRESH_SECONDS:g} s, output in {server.output})")
        # Trained, or found in the registry, while the server starts: each takes seconds, on a core of its own.
        bad = ensure_version(model, world_for(model, seed), seed, "bad_version", incident.params)
        result.served_before = server.wait_until_serving(START_TIMEOUT_S)["model_version"]
        _say(f"  GET /health: version {result.served_before} serves (ready {time.monotonic() - began:.0f} s after "
             "the start)")
        try:
            _deploy(server, model, bad, incident, seed, result)
            id_prefix = f"demo-loop-{datetime.now(UTC):%Y%m%dT%H%M%S}"
            drawn = draw_requests(model, seed, result.day, requests, effects, id_prefix)
            _serve_and_label(server, model, drawn, clients, id_prefix, result)
            _judge(model, run_monitor, result)
            _show_served_after(server, model, drawn.bodies[0] | {"request_id": f"{id_prefix}-after"}, result)
        except BaseException:
            # Failed or interrupted (Ctrl-C) before a rollback: the demo's registry gets its champion back.
            if registry.champion_version(model.registry_name) == bad.version:
                registry.set_champion(model.registry_name, result.served_before)
            raise
        result.server_exit = server.stop()
    result.seconds = time.monotonic() - began
    _say(f"  stopped the server by its pid {result.server_pid} ({describe_exit(result.server_exit)}, its logs "
         f"published); the loop took {result.seconds:.0f} s")
    return result

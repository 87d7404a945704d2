"""Airflow's parts as child processes that start and stop together: `make airflow` and the end-to-end tests.

`airflow standalone` leaves its scheduler and task workers running when it is
stopped with SIGTERM, starts one LocalExecutor worker per default parallelism
(32) whatever the machine, and gives SQLite no time to wait for a lock. Here
every part runs in a process group of its own, SIGINT/SIGTERM (and the death
of the parent, such as `make`) stop every group, parallelism follows the
machine's cores, and each part's output goes to a log file of its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from modelwatch import settings

log = logging.getLogger(__name__)

LOCAL_PARTS = ("api-server", "scheduler", "dag-processor", "triggerer")
STOP_GRACE_S = 15.0
# SQLite waits this long for another process's write lock before "database is locked".
SQLITE_LOCK_WAIT_S = 60
SQLITE_CONNECT_ARGS = {"timeout": SQLITE_LOCK_WAIT_S}
NO_CONNECT_ARGS: dict = {}
CONNECT_ARGS_KEY = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS"
# Import paths Airflow resolves; spelled out, since this module also runs as __main__ (`make airflow`).
_SQLITE_CONNECT_ARGS_PATH = "modelwatch.airflow_services.SQLITE_CONNECT_ARGS"
_NO_CONNECT_ARGS_PATH = "modelwatch.airflow_services.NO_CONNECT_ARGS"


def metadata_database_env(url: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The settings Airflow's metadata database at `url` needs beside the URL, unless `env` sets them.

    SQLite waits for another process's lock instead of failing at once;
    PostgreSQL through psycopg 3 serves Airflow's async engine too, which
    would otherwise ask for asyncpg.
    """
    env = env or {}
    wanted = {}
    if url.startswith("sqlite"):
        wanted[CONNECT_ARGS_KEY] = _SQLITE_CONNECT_ARGS_PATH
    elif env.get(CONNECT_ARGS_KEY) == _SQLITE_CONNECT_ARGS_PATH:
        # A shell set up for SQLite (`make airflow-env`) would hand SQLite's lock wait to another driver.
        return {CONNECT_ARGS_KEY: _NO_CONNECT_ARGS_PATH} | metadata_database_env(url)
    if url.startswith("postgresql+psycopg://"):
        wanted["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] = url
    return {key: value for key, value in wanted.items() if key not in env}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def default_parallelism() -> int:
    """Task processes at once: one per core, at least two (a sensor's poke beside a task)."""
    return max(2, os.cpu_count() or 2)


def terminate_with_parent() -> None:
    """In the child, before exec: SIGTERM when the starting process dies, even by SIGKILL (Linux)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass
class Part:
    """One Airflow command running in a process group of its own."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as output:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=terminate_with_parent if sys.platform == "linux" else None,
            )
        log.info("started %s (pid %d), output in %s", self.name, self.process.pid, self.log_path)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal_group(self, signum: int) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass

    def tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class AirflowServices:
    """The API server, scheduler, DAG processor and triggerer (and Celery workers) of one Airflow home.

    Parameters
    ----------
    home : Path
        `AIRFLOW_HOME`; its metadata database must be migrated (`airflow db migrate`).
    port : int
        Port of the API server on 127.0.0.1 (UI, REST API and the execution API the tasks call).
    executor : str
        ``LocalExecutor`` or ``CeleryExecutor``.
    celery_workers : sequence of str
        Names of the Celery workers to start (CeleryExecutor only).
    parallelism : int
        Task processes at once (LocalExecutor), and each Celery worker's concurrency.
    env : mapping
        Variables on top of this process's environment, e.g. the metadata database or the broker.
    log_dir : Path
        Where each part's output goes (`<name>.log`); default `<home>/logs/services`.
    """

    home: Path
    port: int = 8080
    executor: str = "LocalExecutor"
    celery_workers: Sequence[str] = ()
    parallelism: int = field(default_factory=default_parallelism)
    env: Mapping[str, str] = field(default_factory=dict)
    log_dir: Path | None = None
    parts: list[Part] = field(default_factory=list, init=False)
    # Chosen once, so that the CLI run with `environment()` later finds the same servers.
    ports: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.ports = {name: free_port() for name in (
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT", "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT",
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT", *(f"worker-{name}" for name in self.celery_workers))}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        """The environment every part runs with."""
        env = dict(os.environ)
        env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": env.get("AIRFLOW__CORE__DAGS_FOLDER", str(settings.PROJECT_ROOT / "dags")),
            "AIRFLOW__CORE__PLUGINS_FOLDER": env.get("AIRFLOW__CORE__PLUGINS_FOLDER",
                                                     str(settings.PROJECT_ROOT / "plugins")),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": self.executor,
            "AIRFLOW__CORE__PARALLELISM": str(self.parallelism),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.parallelism),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.base_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
            "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "True",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
            **{name: str(port) for name, port in self.ports.items() if name.startswith("AIRFLOW__")},
        })
        env.update(self.env)
        return env | metadata_database_env(env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "sqlite"), env)

    def start(self) -> None:
        """Start every part; the caller must call `stop`, also when this raises."""
        airflow = str(Path(sys.executable).with_name("airflow"))
        env = self.environment()
        log_dir = self.log_dir or self.home / "logs" / "services"
        commands = {name: [airflow, name] for name in LOCAL_PARTS}
        commands["api-server"] += ["--host", "127.0.0.1", "--port", str(self.port)]
        for name, argv in commands.items():
            self.parts.append(Part(name, argv, env, log_dir / f"{name}.log"))
        for worker in self.celery_workers:
            worker_env = env | {
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.ports[f"worker-{worker}"]),
                "MODELWATCH_WORKER_NAME": worker,
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "modelwatch.airflow_services.hostname",
            }
            argv = [airflow, "celery", "worker", "--celery-hostname", f"{worker}@%h",
                    "--concurrency", str(self.parallelism)]
            self.parts.append(Part(f"worker-{worker}", argv, worker_env, log_dir / f"worker-{worker}.log"))
        for part in self.parts:
            part.start()

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop every part and every process it started; SIGKILL what still runs after `grace_s` seconds.

        Task processes run in sessions of their own, outside their part's
        process group, so the whole tree of each part is signalled.
        """
        import psutil

        tree = []
        for part in self.parts:
            if part.process is None:
                continue
            try:
                root = psutil.Process(part.process.pid)
                tree += [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
            part.signal_group(signal.SIGTERM)
        for process in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.terminate()
        _, alive = psutil.wait_procs(tree, timeout=grace_s)
        for process in alive:
            log.warning("%s (pid %d) did not stop within %.0f s: killed", process.name(), process.pid, grace_s)
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(alive, timeout=10)
        for part in self.parts:
            part.signal_group(signal.SIGKILL)
            if part.process is not None:
                part.process.wait()

    def dead_parts(self) -> list[Part]:
        return [part for part in self.parts if not part.running()]

    def wait_until_healthy(self, timeout_s: float = 180.0) -> dict:
        """Wait until the API server answers and reports a healthy scheduler, DAG processor and triggerer.

        Raises
        ------
        RuntimeError
            A part exited, or `timeout_s` passed; the message holds the end of each part's output.
        """
        deadline = time.monotonic() + timeout_s
        health: dict = {}
        while time.monotonic() < deadline:
            if dead := self.dead_parts():
                raise RuntimeError(self.describe(f"{', '.join(p.name for p in dead)} exited"))
            try:
                with urllib.request.urlopen(f"{self.base_url}/api/v2/monitor/health", timeout=5) as response:
                    health = json.load(response)
            except (urllib.error.URLError, OSError, ValueError):
                health = {}
            wanted = ("metadatabase", "scheduler", "dag_processor", "triggerer")
            if health and all(health.get(name, {}).get("status") == "healthy" for name in wanted):
                return health
            time.sleep(1)
        raise RuntimeError(self.describe(f"not healthy within {timeout_s:.0f} s: {health}"))

    def describe(self, problem: str) -> str:
        """`problem`, then the end of every part's output."""
        tails = "\n".join(f"--- {part.name} ({part.log_path}):\n{part.tail()}" for part in self.parts)
        return f"Airflow {problem}\n{tails}"


def run_until_stopped(services: AirflowServices, unpause: bool = True, stop_with_parent: bool = False) -> int:
    """Run the parts in the foreground until SIGINT/SIGTERM or a part's exit.

    Once healthy, the project's DAGs are unpaused (unless `unpause` is False):
    a paused DAG starts no run, not even a backfill's. With `stop_with_parent`,
    the parts also stop when this process's parent ends: `make` passes
    SIGTERM on to no child.
    """
    stopping = threading.Event()
    reason = {"why": "stopped"}

    def on_signal(signum, _frame):
        reason["why"] = signal.Signals(signum).name
        stopping.set()

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    parent = os.getppid()
    try:
        services.start()
        services.wait_until_healthy()
        if unpause:
            print(f"unpaused: {', '.join(unpause_dags(services.environment())) or 'none'}", flush=True)
        print(f"Airflow is up at {services.base_url}; Ctrl-C stops every part.", flush=True)
        while not stopping.wait(1.0):
            if dead := services.dead_parts():
                reason["why"] = f"{dead[0].name} exited with code {dead[0].process.returncode}"
                break
            if stop_with_parent and os.getppid() != parent:
                reason["why"] = "parent process ended"
                break
    finally:
        print(f"stopping every Airflow part ({reason['why']})", flush=True)
        services.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0 if reason["why"] in ("SIGINT", "SIGTERM", "stopped") else 1


def unpause_dags(env: Mapping[str, str], timeout_s: float = 180.0) -> list[str]:
    """Unpause every configured model's DAG once the DAG processor has registered it.

    Returns
    -------
    list of str
        The DAG ids unpaused; those still unknown to Airflow after `timeout_s` are left out.
    """
    from modelwatch.config import load_config

    airflow = str(Path(sys.executable).with_name("airflow"))
    waiting = sorted(f"monitor_{model.name}" for model in load_config().models)
    unpaused = []
    deadline = time.monotonic() + timeout_s
    while waiting and time.monotonic() < deadline:
        for dag_id in list(waiting):
            done = subprocess.run([airflow, "dags", "unpause", dag_id], env=dict(env), capture_output=True,
                                  timeout=120)
            if done.returncode == 0:
                waiting.remove(dag_id)
                unpaused.append(dag_id)
        if waiting:
            time.sleep(5)
    if waiting:
        log.warning("not registered within %.0f s, left as they are: %s", timeout_s, ", ".join(waiting))
    return unpaused


def hostname() -> str:
    """The name task instances record as their host (`[core] hostname_callable`).

    Several Celery workers on one machine share its name; each gets
    `MODELWATCH_WORKER_NAME` from `AirflowServices`, so that the task
    instances say which worker ran them.
    """
    return os.environ.get("MODELWATCH_WORKER_NAME") or socket.getfqdn()


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m modelwatch.airflow_services", description=__doc__)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--parallelism", type=int, default=default_parallelism())
    parser.add_argument("--keep-paused", action="store_true", help="leave the project's DAGs paused")
    parser.add_argument("--stop-with-parent", action="store_true", help="stop when the parent process ends")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    home = Path(os.environ.get("AIRFLOW_HOME", settings.PROJECT_ROOT / ".airflow")).resolve()
    services = AirflowServices(home=home, port=args.port, parallelism=args.parallelism)
    return run_until_stopped(services, unpause=not args.keep_paused, stop_with_parent=args.stop_with_parent)


if __name__ == "__main__":
    sys.exit(main())

"""A real Airflow (API server, scheduler, DAG processor, triggerer, Celery workers) for end-to-end tests.

Every process is started by `modelwatch.airflow_services` on 127.0.0.1 with
free ports, in an Airflow home of the test's own, and stopped by the test's
fixture by PID, also when the test fails; a failing test keeps the processes'
logs in `.test-logs/<test>/`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pytest

from modelwatch.airflow_services import AirflowServices, free_port, metadata_database_env

PROJECT = Path(__file__).resolve().parents[1]
KEPT_LOGS = PROJECT / ".test-logs"
USER, PASSWORD = "admin", "modelwatch-test"
FINISHED = {"success", "failed"}


class ApiError(RuntimeError):
    def __init__(self, status: int, body: str, what: str):
        super().__init__(f"{what}: HTTP {status}: {body}")
        self.status, self.body = status, body


@dataclass
class Cluster:
    """REST and CLI access to a running `AirflowServices`."""

    services: AirflowServices
    token: str | None = None

    def api(self, method: str, path: str, body: dict | None = None, timeout_s: float = 60.0):
        """Call the REST API (`/api/v2/…`) as the test user; returns the decoded JSON answer."""
        if self.token is None:
            self.token = self._login()
        request = urllib.request.Request(
            f"{self.services.base_url}{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            raise ApiError(error.code, error.read().decode(errors="replace"), f"{method} {path}") from None
        return json.loads(raw) if raw else None

    def _login(self) -> str:
        request = urllib.request.Request(
            f"{self.services.base_url}/auth/token", method="POST",
            data=json.dumps({"username": USER, "password": PASSWORD}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)["access_token"]

    def cli(self, *args: str, check: bool = True, timeout_s: float = 300) -> subprocess.CompletedProcess:
        """Run `airflow <args>` against this Airflow."""
        airflow = str(Path(sys.executable).with_name("airflow"))
        done = subprocess.run([airflow, *args], env=self.services.environment(), capture_output=True, text=True,
                              timeout=timeout_s)
        if check and done.returncode != 0:
            raise AssertionError(f"airflow {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def wait_for_dags(self, dag_ids: list[str], timeout_s: float = 180.0, unpause: bool = True) -> None:
        """Wait until the DAG processor has registered every DAG, then unpause them (unless told not to)."""
        deadline = time.monotonic() + timeout_s
        for dag_id in dag_ids:
            while True:
                try:
                    self.api("GET", f"/api/v2/dags/{dag_id}")
                    break
                except ApiError as error:
                    if error.status != 404 or time.monotonic() > deadline:
                        raise AssertionError(self.services.describe(f"never registered {dag_id}")) from error
                    time.sleep(2)
            if unpause:
                self.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def backfill(self, dag_id: str, first: date, last: date, conf: dict | None = None,
                 reprocess: str = "completed", max_active_runs: int = 3, backwards: bool = False) -> dict:
        """Create a backfill of the days `first`..`last` through `POST /api/v2/backfills`.

        Airflow takes one backfill per DAG at a time, and marks one completed a
        little after its last run ended: this waits for that first.
        """
        self.wait_for_backfills(dag_id)
        return self.api("POST", "/api/v2/backfills", {
            "dag_id": dag_id, "from_date": f"{first.isoformat()}T00:00:00Z", "to_date": f"{last.isoformat()}T00:00:00Z",
            "dag_run_conf": conf or {}, "reprocess_behavior": reprocess, "max_active_runs": max_active_runs,
            "run_backwards": backwards,
        })

    def wait_for_backfills(self, dag_id: str, timeout_s: float = 300.0) -> None:
        """Wait until every backfill of the DAG is marked completed."""
        deadline = time.monotonic() + timeout_s
        while any(b["completed_at"] is None
                  for b in self.api("GET", f"/api/v2/backfills?dag_id={dag_id}&limit=100")["backfills"]):
            if time.monotonic() > deadline:
                raise AssertionError(self.services.describe(f"a backfill of {dag_id} not completed in {timeout_s} s"))
            time.sleep(3)

    def trigger(self, dag_id: str, logical_date: datetime, conf: dict) -> str:
        """A manual run through `POST /api/v2/dags/{dag_id}/dagRuns`; returns its run id."""
        run = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns",
                       {"logical_date": logical_date.isoformat(), "conf": conf})
        return run["dag_run_id"]

    def runs(self, dag_id: str) -> list[dict]:
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=200&order_by=logical_date")["dag_runs"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        from urllib.parse import quote

        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances?limit=100"
        return self.api("GET", path)["task_instances"]

    def wait_for_runs(self, dag_id: str, run_ids: set[str], timeout_s: float) -> dict[str, dict]:
        """Wait until every named run has finished; returns them by run id.

        Raises
        ------
        AssertionError
            A run failed, an Airflow process exited, or `timeout_s` passed; the message holds
            the task states and the end of every process's output.
        """
        assert run_ids, f"no runs of {dag_id} to wait for"
        deadline = time.monotonic() + timeout_s
        while True:
            runs = {run["dag_run_id"]: run for run in self.runs(dag_id) if run["dag_run_id"] in run_ids}
            states = {run_id: run["state"] for run_id, run in runs.items()}
            if len(runs) == len(run_ids) and set(states.values()) <= FINISHED:
                failed = [run_id for run_id, state in states.items() if state != "success"]
                if failed:
                    raise AssertionError(self.explain(dag_id, failed, "failed"))
                return runs
            if dead := self.services.dead_parts():
                raise AssertionError(self.services.describe(f"{dead[0].name} exited"))
            if time.monotonic() > deadline:
                raise AssertionError(self.explain(dag_id, sorted(run_ids), f"not finished in {timeout_s:.0f} s"))
            time.sleep(5)

    def run_ids_between(self, dag_id: str, first: date, last: date) -> set[str]:
        """The runs whose logical date falls on the days `first`..`last`: those a backfill of them runs."""
        return {run["dag_run_id"] for run in self.runs(dag_id)
                if run["logical_date"] and first.isoformat() <= run["logical_date"][:10] <= last.isoformat()}

    def explain(self, dag_id: str, run_ids: list[str], problem: str) -> str:
        lines = []
        for run_id in run_ids:
            states = {ti["task_id"]: ti["state"] for ti in self.task_instances(dag_id, run_id)}
            lines.append(f"{run_id}: {states}")
        return self.services.describe(f"runs of {dag_id} {problem}:\n" + "\n".join(lines))


def run_with_dag_test(env: dict[str, str], dag_id: str, days: list[date]) -> None:
    """`dag.test()` runs of the given days in one process, one after the other, as `make demo` runs them."""
    script = (
        "import sys, pendulum\n"
        "from modelwatch import airflow_adapter\n"
        "for text in sys.argv[3:]:\n"
        "    state, tasks = airflow_adapter.run_dag(sys.argv[1], pendulum.parse(text), sys.argv[2])\n"
        "    assert state == 'success', (text, tasks)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, dag_id, env["AIRFLOW__CORE__DAGS_FOLDER"],
                           *(day.isoformat() for day in days)], env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]


def migrate(home: Path, env: dict[str, str]) -> None:
    """A new Airflow home with a migrated metadata database and the test user's password."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "passwords.json").write_text(json.dumps({USER: PASSWORD}))
    airflow = str(Path(sys.executable).with_name("airflow"))
    done = subprocess.run([airflow, "db", "migrate"], env=os.environ | env | {"AIRFLOW_HOME": str(home)},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def cluster_env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    """The variables every process of a test's Airflow gets."""
    metadata = extra.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home / 'airflow.db'}")
    return {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata,
        **metadata_database_env(metadata, os.environ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT / "plugins"),
        # This checkout's code in every Airflow process and task, as the Makefile gives it.
        "PYTHONPATH": str(PROJECT / "include"),
        "GX_ANALYTICS_ENABLED": "False",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        **extra,
    }


def start(home: Path, env: dict[str, str], executor: str = "LocalExecutor",
          celery_workers: tuple[str, ...] = (), parallelism: int = 2) -> Cluster:
    """Start every part of a test's Airflow and wait until it is healthy; the caller stops it."""
    services = AirflowServices(home=home, port=free_port(), executor=executor, celery_workers=celery_workers,
                               parallelism=parallelism, env=env, log_dir=home / "service-logs")
    cluster = Cluster(services)
    try:
        services.start()
        services.wait_until_healthy()
    except BaseException:
        services.stop()
        raise
    return cluster


def keep_logs(cluster: Cluster, test_name: str) -> Path:
    """Copy the processes' and the tasks' logs of a failed test to `.test-logs/<test>/`."""
    target = KEPT_LOGS / test_name.replace("/", "_").replace("::", "__")
    shutil.rmtree(target, ignore_errors=True)
    home = cluster.services.home
    shutil.copytree(home / "service-logs", target / "service-logs", dirs_exist_ok=True)
    if (home / "logs").exists():
        shutil.copytree(home / "logs", target / "task-logs", dirs_exist_ok=True)
    return target


def require_ci_service(reachable: bool, message: str) -> None:
    """Skip without the service, unless CI=true, where its absence fails the test."""
    if reachable:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)

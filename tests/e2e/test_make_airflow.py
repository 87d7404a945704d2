"""`make airflow` on a laptop: task processes that fit the machine, and one signal stops everything."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request

import psutil
import pytest
from airflow_cluster import PROJECT, USER

from modelwatch.airflow_services import default_parallelism, free_port

pytestmark = pytest.mark.slow

START_TIMEOUT_S = 240
STOP_TIMEOUT_S = 60


def health(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5) as response:
            return response.status
    except OSError:
        return None


def title(process: psutil.Process) -> str:
    """A process's command line, empty once it has ended (a task's processes come and go)."""
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def parent(process: psutil.Process) -> int | None:
    try:
        return process.ppid()
    except psutil.Error:
        return None


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_make_airflow_runs_one_task_process_per_core_and_one_signal_stops_every_process(tmp_path, signum):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MODELWATCH_", "PYTHONPATH"))}
    env |= {"AIRFLOW_HOME": str(tmp_path / "airflow"), "MODELWATCH_DATA_DIR": str(tmp_path / "data"),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin"}
    output = tmp_path / "make-airflow.log"
    with open(output, "wb") as log:
        # A session of its own, as a terminal gives it: SIGINT goes to the whole group, as Ctrl-C does.
        make = subprocess.Popen(["make", "-s", "-C", str(PROJECT), "airflow", f"AIRFLOW_PORT={port}"], env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    started = []
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while "Airflow is up" not in output.read_text(errors="replace"):
            assert make.poll() is None, output.read_text(errors="replace")
            assert time.monotonic() < deadline, output.read_text(errors="replace")
            time.sleep(2)
        assert health(port) == 200
        started = psutil.Process(make.pid).children(recursive=True)
        titles = {p.pid: title(p) for p in started}
        executor = {pid for pid, text in titles.items() if "LocalExecutor" in text}
        # A worker running a task forks processes that carry its title for a while: count the workers only.
        task_workers = [p for p in started if p.pid in executor and parent(p) not in executor]
        assert len(task_workers) == default_parallelism(), [titles[p.pid] for p in task_workers]

        if signum == signal.SIGINT:
            os.killpg(make.pid, signum)
        else:
            make.send_signal(signum)
        make.wait(timeout=STOP_TIMEOUT_S)
        _, alive = psutil.wait_procs(started, timeout=STOP_TIMEOUT_S)
        assert alive == [], [title(p) for p in alive]
        assert health(port) is None
        assert "stopping every Airflow part" in output.read_text(errors="replace")
    finally:
        if make.poll() is None:
            started += psutil.Process(make.pid).children(recursive=True)
            make.kill()
            make.wait()
        for process in started:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()

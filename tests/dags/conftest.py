"""Airflow for DAG tests: a project-local home with a migrated metadata database."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
DAGS = PROJECT / "dags"

os.environ.setdefault("AIRFLOW_HOME", str(PROJECT / ".airflow"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(PROJECT / "plugins")


def _migrate_once() -> None:
    home = Path(os.environ["AIRFLOW_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".migrate.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (home / "airflow.db").exists():
            airflow = Path(sys.executable).with_name("airflow")
            subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True)


_migrate_once()


@pytest.fixture
def dagbag_for(monkeypatch):
    """Parse the dags folder against a given models file."""

    def parse(config_path: Path):
        monkeypatch.setenv("MODELWATCH_CONFIG", str(config_path))
        from airflow.dag_processing.dagbag import DagBag

        return DagBag(dag_folder=str(DAGS))

    return parse


@pytest.fixture(autouse=True)
def no_earlier_runs():
    """Forget every DAG run in the metadata database before each test: `dag.test` would reuse a run of the
    same logical date with the Params of the test that created it, and a run an interrupted test left
    `running` would keep `wait_for_history` waiting."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        session.query(DagRun).delete()

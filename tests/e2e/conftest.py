"""A real Airflow per test, on the week of incidents of `scenarios`, simulated once per session."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import airflow_cluster
import browser
import pytest
import scenarios

pytestmark = pytest.mark.slow


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    # The fixtures below read the outcome of the test's call to keep the logs of a failed test.
    report = yield
    setattr(item, f"outcome_{report.when}", report)
    return report


@pytest.fixture(scope="session", autouse=True)
def teardown_on_sigterm() -> Iterator[None]:
    """SIGTERM (a CI timeout, `kill`) ends the tests as Ctrl-C does, so that every fixture stops its processes."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium for the browser tests; session-scoped, so checked before the week is simulated."""
    return browser.find_chromium()


@pytest.fixture(scope="session")
def pristine_week(tmp_path_factory) -> Path:
    """The week's logs, reference data and registry, simulated once; tests work on copies."""
    folder = tmp_path_factory.mktemp("week")
    with pytest.MonkeyPatch.context() as patch:
        for name, value in scenarios.environment(folder, "sqlite://", "", "").items():
            patch.setenv(name, value)
        scenarios.simulate_week(scenarios.write_config(folder / "models.yaml"))
    return folder


@pytest.fixture
def week(pristine_week, tmp_path) -> Path:
    """A copy of the simulated week that the test may change (registry, warehouse, staging)."""
    folder = tmp_path / "week"
    shutil.copytree(pristine_week, folder)
    return folder


@pytest.fixture
def use_week_here(monkeypatch):
    """Point this process too at a week's environment (`scenarios.environment`), undone after the test.

    The registry module keeps its store in a module-level state: it is pointed
    at the week's store, then back.
    """
    from modelwatch import registry

    def use(env: dict[str, str]) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setitem(registry._state, "uri", registry._state["uri"])
        registry.configure(env["MLFLOW_TRACKING_URI"])

    return use


@pytest.fixture
def start_airflow(request, tmp_path) -> Iterator:
    """Start a test's Airflow: `start_airflow(env, executor=..., celery_workers=...)` returns a `Cluster`.

    `before_start(home, env)`, if given, runs once the metadata database is
    migrated and before any Airflow process starts. Every process is stopped
    after the test, also when it fails; a failed test's logs are kept.
    """
    started = []

    def start(env: dict[str, str], before_start=None, **options) -> airflow_cluster.Cluster:
        home = tmp_path / f"airflow-{len(started)}"
        full_env = airflow_cluster.cluster_env(home, env)
        airflow_cluster.migrate(home, full_env)
        if before_start is not None:
            before_start(home, os.environ | full_env | {"AIRFLOW_HOME": str(home)})
        cluster = airflow_cluster.start(home, full_env, **options)
        started.append(cluster)
        return cluster

    yield start
    failed = getattr(request.node, "outcome_call", None) is None or request.node.outcome_call.failed
    for cluster in started:
        cluster.services.stop()
        if failed:
            kept = airflow_cluster.keep_logs(cluster, request.node.nodeid)
            print(f"\nAirflow logs of the failed test kept in {kept}")

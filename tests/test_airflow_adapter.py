"""Which failures take a task's retries, and how a failure is described in `monitoring_runs`."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException
from sqlalchemy.exc import OperationalError

from modelwatch import airflow_adapter
from modelwatch.config import ConfigError
from modelwatch.staging import StagingError
from modelwatch.warehouse.engine import WarehouseUnavailable


@pytest.mark.parametrize(
    "error",
    [OSError("disk gone"), TimeoutError("slow"), OperationalError("SELECT 1", {}, Exception("reset")),
     WarehouseUnavailable("warehouse did not answer")],
    ids=lambda e: type(e).__name__,
)
def test_transient_errors_keep_their_retries(error):
    with pytest.raises(type(error)), airflow_adapter.retry_only_transient():
        raise error


def test_an_error_raised_from_a_transient_one_keeps_its_retries():
    from modelwatch.warehouse.load import LoadError

    lost = OperationalError("COPY", {}, Exception("server closed the connection"))
    with pytest.raises(LoadError), airflow_adapter.retry_only_transient():
        raise LoadError("could not load credit_risk") from lost


@pytest.mark.parametrize(
    "error",
    [ValueError("bad record"), ConfigError("models[x].schedule: bad"), StagingError("3 rows, manifest says 4"),
     KeyError("feature__income")],
    ids=lambda e: type(e).__name__,
)
def test_deterministic_errors_fail_at_once_keeping_their_cause(error):
    with pytest.raises(AirflowFailException, match="not retried") as raised, airflow_adapter.retry_only_transient():
        raise error
    assert raised.value.__cause__ is error
    assert type(error).__name__ in str(raised.value)


def test_a_failure_names_the_task_its_try_and_the_original_exception():
    try:
        with airflow_adapter.retry_only_transient():
            raise ValueError("model_version too long")
    except AirflowFailException as wrapped:
        failure = wrapped
    context = {"task_instance": SimpleNamespace(task_id="load", try_number=2, max_tries=3), "exception": failure}
    assert airflow_adapter.describe_failure(context) == "load (try 2 of 4): ValueError: model_version too long"
    killed = {"task_instance": SimpleNamespace(task_id="extract", try_number=1, max_tries=0), "exception": None}
    assert airflow_adapter.describe_failure(context=killed).startswith("extract (try 1 of 1): ended without")

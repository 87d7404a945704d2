"""Notifications delivered to a real SMTP server and a real HTTP endpoint, both on 127.0.0.1.

The Airflow notifiers read their connections from ``AIRFLOW_CONN_<ID>``
variables and get the context Airflow 3.3 builds for a failure callback.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from servers import SECRET_PATH, smtp_connection

from modelwatch.actions.notify import (
    Notification,
    NotificationError,
    log_line,
    post_webhook,
    send_email,
)
from modelwatch.airflow_services import free_port

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
START = datetime(2026, 3, 1, tzinfo=UTC)
END = datetime(2026, 3, 2, tzinfo=UTC)


@pytest.fixture
def silent_port():
    """A port that accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


# --- the message --------------------------------------------------------------------------------------------------


@pytest.fixture
def rollback() -> Notification:
    return Notification(
        model_name="credit_risk",
        interval_start=START,
        interval_end=END,
        decision="rollback",
        severity="critical",
        title="version 7 is worse than version 6",
        reason="auc_threshold breached (0.712 < 0.75) since version 7 went live; version 6 scored 0.81.",
        conditions=[
            {"check_name": "auc_threshold", "observed": 0.7123456, "limit_low": 0.75, "limit_high": None},
            {"check_name": "brier_control_limit", "observed": 0.31, "limit_high": 0.25},
        ],
        links={"Airflow run": "http://airflow.example/dags/monitor_credit_risk/runs/scheduled__2026-03-01"},
        run_id="scheduled__2026-03-01T00:00:00+00:00",
    )


def test_an_email_arrives_with_its_subject_recipients_and_facts(smtp_server, rollback):
    port, inbox = smtp_server
    accepted = send_email(
        rollback, host="127.0.0.1", port=port, sender="modelwatch@example.com",
        recipients=["oncall@example.com", "ml@example.com"], username="mw", password="pw",
    )

    assert accepted == ["oncall@example.com", "ml@example.com"]
    assert inbox.logins == [("mw", "pw")]
    [(mail_from, rcpt_tos, message)] = inbox.messages
    assert (mail_from, rcpt_tos) == ("modelwatch@example.com", ["oncall@example.com", "ml@example.com"])
    assert message["Subject"] == "[ModelWatch critical] credit_risk rollback: version 7 is worse than version 6"
    assert message["To"] == "oncall@example.com, ml@example.com"
    assert message.get_content_type() == "text/plain"
    lines = message.get_content().splitlines()
    for expected in [
        "Model:     credit_risk",
        "Decision:  rollback",
        "Severity:  critical",
        "Interval:  [2026-03-01T00:00:00+00:00, 2026-03-02T00:00:00+00:00)",
        "Run:       scheduled__2026-03-01T00:00:00+00:00",
        rollback.reason,
        "- auc_threshold: observed 0.712346, limit_low 0.75",
        "- brier_control_limit: observed 0.31, limit_high 0.25",
        "- Airflow run: http://airflow.example/dags/monitor_credit_risk/runs/scheduled__2026-03-01",
    ]:
        assert expected in lines


def test_the_webhook_receives_slack_blocks_with_a_plain_text_fallback(endpoint, rollback):
    assert post_webhook(rollback, endpoint.url) == 200

    [request] = endpoint.received
    assert (request.path, request.content_type) == (SECRET_PATH, "application/json")
    payload = request.payload
    assert payload["text"].splitlines()[:2] == [
        "CRITICAL credit_risk rollback: version 7 is worse than version 6",
        "auc_threshold breached (0.712 &lt; 0.75) since version 7 went live; version 6 scored 0.81.",
    ]
    assert "• auc_threshold: observed 0.712346, limit_low 0.75" in payload["text"]
    assert [block["type"] for block in payload["blocks"]] == ["header", "section", "section", "section", "context"]
    header, facts, reason, conditions, links = payload["blocks"]
    assert header["text"] == {"type": "plain_text", "text": "credit_risk: version 7 is worse than version 6"}
    assert [f["text"].split("\n")[0] for f in facts["fields"]] == ["*Model*", "*Decision*", "*Severity*",
                                                                   "*Interval*", "*Run*"]
    assert facts["fields"][1]["text"] == "*Decision*\nrollback"
    assert "&lt; 0.75" in reason["text"]["text"]
    assert conditions["text"]["text"].startswith("*Conditions*\n• auc_threshold")
    assert links["elements"] == [
        {"type": "mrkdwn", "text": "<http://airflow.example/dags/monitor_credit_risk/runs/scheduled__2026-03-01"
                                   "|Airflow run>"}
    ]


@pytest.mark.parametrize(("status", "words"), [(500, "HTTP 500 Internal Server Error"), (302, "HTTP 302 Found")])
def test_an_http_error_or_redirect_names_the_status_and_host_but_never_the_path(endpoint, rollback, status, words):
    endpoint.status = status
    with pytest.raises(NotificationError) as raised:
        post_webhook(rollback, endpoint.url)

    assert str(raised.value) == f"webhook at 127.0.0.1:{endpoint.server_port} answered {words}"
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert len(endpoint.received) == 1  # one attempt; a redirect is not followed


def _email_to(port: int, notification: Notification, timeout_s: float) -> None:
    send_email(notification, host="127.0.0.1", port=port, sender="mw@example.com", recipients=["a@example.com"],
               timeout_s=timeout_s)


def _post_to(port: int, notification: Notification, timeout_s: float) -> None:
    post_webhook(notification, f"http://127.0.0.1:{port}{SECRET_PATH}", timeout_s=timeout_s)


SENDERS = [
    pytest.param(_email_to, "email to a@example.com via SMTP server 127.0.0.1:{port} failed: ", id="email"),
    pytest.param(_post_to, "POST to webhook at 127.0.0.1:{port} failed: ", id="webhook"),
]


@pytest.mark.parametrize(("deliver", "prefix"), SENDERS)
def test_a_refused_connection_fails_at_once_naming_the_target(rollback, deliver, prefix):
    port = free_port()  # nobody listens there
    started = time.monotonic()
    with pytest.raises(NotificationError) as raised:
        deliver(port, rollback, timeout_s=5)

    assert time.monotonic() - started < 5
    assert str(raised.value).startswith(prefix.format(port=port) + "ConnectionRefusedError")
    assert "s3cr3t" not in str(raised.value)


@pytest.mark.parametrize(("deliver", "prefix"), SENDERS)
def test_a_server_that_never_answers_fails_within_the_timeout(silent_port, rollback, deliver, prefix):
    started = time.monotonic()
    with pytest.raises(NotificationError) as raised:
        deliver(silent_port, rollback, timeout_s=0.5)

    assert time.monotonic() - started < 3
    assert str(raised.value) == prefix.format(port=silent_port) + "no answer within 0.5 s"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"decision": "panic"}, "decision must be one of halt, rollback, retrain, alert, healthy, failure"),
        ({"severity": "info"}, "severity must be one of critical, warning"),
        ({"title": "two\nlines"}, "title must be one non-empty line"),
        ({"reason": " "}, "reason must say what drove the decision"),
        ({"conditions": [{"observed": 1.0}]}, "each condition must be a dict with a check_name"),
    ],
)
def test_a_malformed_notification_is_refused_with_the_field_named(rollback, change, message):
    fields = {name: getattr(rollback, name) for name in rollback.__dataclass_fields__} | change
    with pytest.raises(ValueError, match=message):
        Notification(**fields)


def test_the_log_line_is_one_line_naming_model_decision_interval_and_checks(rollback):
    line = log_line(rollback)

    assert "\n" not in line
    assert line.startswith(
        "ModelWatch notification: model=credit_risk decision=rollback severity=critical "
        "interval=2026-03-01T00:00:00+00:00/2026-03-02T00:00:00+00:00 run_id=scheduled__2026-03-01T00:00:00+00:00 "
        'checks=auc_threshold,brier_control_limit title="version 7 is worse than version 6" reason="auc_threshold'
    )


# --- the Airflow notifiers ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def notifiers():
    """The plugin module, imported as Airflow does: with the plugins folder on the path."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(PLUGINS))
        import modelwatch_notifiers

    return modelwatch_notifiers


def failure_context(error: BaseException | None) -> dict:
    """The context Airflow 3.3's task runner gives an `on_failure_callback` (first try of three)."""
    from airflow.providers.standard.operators.empty import EmptyOperator
    from airflow.sdk import DAG
    from airflow.sdk.api.datamodels._generated import DagRun, TIRunContext
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    with DAG("monitor_churn", schedule=None):
        task = EmptyOperator(task_id="extract", retries=2)
    run_id = "scheduled__2026-03-01T00:00:00+00:00"
    dag_run = DagRun(
        dag_id="monitor_churn", run_id=run_id, logical_date=START, data_interval_start=START,
        data_interval_end=END, run_after=END, start_date=END, end_date=None, run_type="scheduled",
        state="running", consumed_asset_events=[], partition_key=None,
    )
    ti = RuntimeTaskInstance.model_construct(
        id=uuid.uuid4(), task_id="extract", dag_id="monitor_churn", run_id=run_id, try_number=1, map_index=-1,
        max_tries=2, task=task, _ti_context_from_server=TIRunContext(dag_run=dag_run, max_tries=2),
    )
    context = ti.get_template_context()
    context["exception"] = error
    return context


def test_the_email_notifier_sends_a_task_failure_through_the_smtp_connection(
    notifiers, smtp_server, monkeypatch
):
    port, inbox = smtp_server
    monkeypatch.setenv("AIRFLOW_CONN_MW_TEST_SMTP", smtp_connection(port))
    notifier = notifiers.ModelWatchEmailNotifier(to=["oncall@example.com"], smtp_conn_id="mw_test_smtp")

    notifier(failure_context(ValueError("staged batch has no manifest")))

    assert inbox.logins == [("mw", "pw")]
    [(mail_from, rcpt_tos, message)] = inbox.messages
    assert (mail_from, rcpt_tos) == ("modelwatch@example.com", ["oncall@example.com"])
    assert message["Subject"] == "[ModelWatch critical] churn failure: task extract of monitor_churn failed"
    body = message.get_content().splitlines()
    assert "extract (try 1 of 3): ValueError: staged batch has no manifest" in body
    assert "Interval:  [2026-03-01T00:00:00+00:00, 2026-03-02T00:00:00+00:00)" in body
    assert "- Airflow run: http://localhost:8080/dags/monitor_churn/runs/scheduled__2026-03-01T00%3A00%3A00%2B00%3A00" \
        in body
    assert any(line.startswith("- Task log: http://localhost:8080/dags/monitor_churn/runs/") for line in body)


def test_the_webhook_notifier_reads_the_url_from_a_uri_connection(notifiers, endpoint, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MW_TEST_HOOK", endpoint.url)

    notifiers.ModelWatchWebhookNotifier(webhook_conn_id="mw_test_hook")(failure_context(RuntimeError("disk full")))

    [request] = endpoint.received
    assert request.path == SECRET_PATH
    assert request.payload["text"].startswith("CRITICAL churn failure: task extract of monitor_churn failed\n"
                                              "extract (try 1 of 3): RuntimeError: disk full")


def test_a_dag_failure_callback_names_the_run_and_its_reason(notifiers, endpoint, monkeypatch):
    from airflow.sdk import DAG

    monkeypatch.setenv("AIRFLOW_CONN_MW_TEST_HOOK", json.dumps({"conn_type": "generic", "password": endpoint.url}))
    # What the DAG processor gives a DAG's on_failure_callback when it knows no task instance.
    context = {"dag": DAG("monitor_churn", schedule=None), "run_id": "manual__1", "reason": "task_failure"}

    notifiers.ModelWatchWebhookNotifier(webhook_conn_id="mw_test_hook")(context)

    [request] = endpoint.received
    assert request.payload["blocks"][0]["text"]["text"] == "churn: run of monitor_churn failed"
    assert "The DAG run manual__1 failed: task_failure." in request.payload["text"]
    assert "*Interval*\nno data interval" in [f["text"] for f in request.payload["blocks"][1]["fields"]]


def test_a_notifier_raises_when_its_target_fails(notifiers, endpoint, monkeypatch):
    endpoint.status = 500
    monkeypatch.setenv("AIRFLOW_CONN_MW_TEST_HOOK", endpoint.url)
    notifier = notifiers.ModelWatchWebhookNotifier(webhook_conn_id="mw_test_hook")

    with pytest.raises(NotificationError, match=r"webhook to connection mw_test_hook: failed: .*HTTP 500"):
        notifier(failure_context(RuntimeError("disk full")))


def test_send_logs_the_line_and_reaches_every_target(notifiers, rollback, smtp_server, endpoint, monkeypatch, caplog):
    port, inbox = smtp_server
    # The URI form of the SMTP connection: flags arrive as strings from the query.
    monkeypatch.setenv(
        "AIRFLOW_CONN_MW_TEST_SMTP",
        f"smtp://127.0.0.1:{port}?from_email=modelwatch%40example.com&disable_ssl=true&disable_tls=true",
    )
    monkeypatch.setenv("AIRFLOW_CONN_MW_TEST_HOOK", json.dumps({"conn_type": "generic", "password": endpoint.url}))
    caplog.set_level("INFO", logger="modelwatch_notifiers")

    report = notifiers.send(rollback, emails=["oncall@example.com"], smtp_conn_id="mw_test_smtp",
                            webhook_conn_id="mw_test_hook")

    assert report.failed == ()
    assert report.describe() == (
        "email to oncall@example.com via connection mw_test_smtp: sent; webhook to connection mw_test_hook: sent"
    )
    assert report.to_outcome().outcome == "notified"
    assert inbox.logins == []  # the connection has no login
    assert len(inbox.messages) == 1 and len(endpoint.received) == 1
    assert report.log_line == log_line(rollback)
    # Only the notifier's own records: the SMTP server's thread logs the client's disconnect meanwhile.
    logged = next(record for record in caplog.records if record.name == "modelwatch_notifiers")
    assert logged.getMessage() == log_line(rollback)
    assert logged.levelname == "WARNING"


def test_one_failing_target_does_not_stop_the_other(notifiers, rollback, smtp_server, endpoint, monkeypatch):
    port, inbox = smtp_server
    endpoint.status = 500
    monkeypatch.setenv("AIRFLOW_CONN_MW_TEST_SMTP", smtp_connection(port))
    monkeypatch.setenv("AIRFLOW_CONN_MW_TEST_HOOK", endpoint.url)

    report = notifiers.send(rollback, emails=["oncall@example.com"], smtp_conn_id="mw_test_smtp",
                            webhook_conn_id="mw_test_hook")

    assert [(d.channel, d.ok) for d in report.deliveries] == [("email", True), ("webhook", False)]
    [failed] = report.failed
    assert failed.error == (
        f"NotificationError: webhook at 127.0.0.1:{endpoint.server_port} answered HTTP 500 Internal Server Error"
    )
    assert len(inbox.messages) == 1
    outcome = report.to_outcome()
    assert (outcome.outcome, outcome.facts["deliveries"][1]["channel"]) == ("notify_failed", "webhook")


@pytest.mark.parametrize(
    ("smtp", "error"),
    [
        (None, "The conn_id `mw_test_smtp` isn't defined"),
        ({"extra": {"disable_ssl": True}}, "SMTP connection 'mw_test_smtp' needs the extra field from_email"),
        ({"extra": {"from_email": "a@example.com", "disable_ssl": "maybe"}},
         "SMTP connection 'mw_test_smtp': extra disable_ssl must be true or false; got 'maybe'"),
    ],
    ids=["missing", "no-from-email", "bad-flag"],
)
def test_a_bad_smtp_connection_is_reported_with_the_field_named(notifiers, rollback, endpoint, monkeypatch,
                                                                smtp, error):
    if smtp is not None:
        monkeypatch.setenv("AIRFLOW_CONN_MW_TEST_SMTP", json.dumps({"conn_type": "smtp", "host": "127.0.0.1"} | smtp))
    monkeypatch.setenv("AIRFLOW_CONN_MW_TEST_HOOK", endpoint.url)

    report = notifiers.send(rollback, emails=["oncall@example.com"], smtp_conn_id="mw_test_smtp",
                            webhook_conn_id="mw_test_hook")

    [failed] = report.failed
    assert failed.channel == "email" and error in failed.error
    assert len(endpoint.received) == 1


def test_a_webhook_connection_without_a_url_says_where_to_put_it(notifiers, rollback, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MW_TEST_HOOK", json.dumps({"conn_type": "generic", "host": "hooks.example"}))

    [failed] = notifiers.send(rollback, webhook_conn_id="mw_test_hook").failed

    assert "webhook connection 'mw_test_hook' holds no URL: put the whole URL in its password" in failed.error

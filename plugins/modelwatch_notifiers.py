"""ModelWatch notifiers: email and chat-webhook messages sent through Airflow connections.

- `ModelWatchEmailNotifier` and `ModelWatchWebhookNotifier` are failure
  callbacks (``on_failure_callback=`` of a task or a DAG).
- `send` is for task code: it sends a `Notification` built by the pipeline
  (a decision) to every configured target.

Both write the notification's log line first, whatever happens next.

Connections (see ``docs/notifications.md``):

- SMTP, the provider's format, so one ``smtp_default`` serves Airflow's own
  email too: host, port, login, password; extra ``from_email`` (required),
  ``disable_ssl``, ``disable_tls`` and ``timeout``. TLS from the first byte
  unless ``disable_ssl``; then STARTTLS unless ``disable_tls``; then plain.
  The port defaults to 465, 587 or 25 accordingly.
- Webhook: the whole URL as the connection's password (masked in logs and in
  the UI), or a connection of type ``http``/``https`` whose host, port and
  schema (the path) make the URL, which is what a URI such as
  ``AIRFLOW_CONN_MODELWATCH_WEBHOOK='https://hooks.slack.com/services/T/B/X'`` gives.

The SMTP provider's own ``SmtpNotifier`` is not used: it sends HTML from Jinja
templates, while our message is plain text rendered by `Notification`, and it
retries connecting up to ``retry_limit`` times with a 30 s timeout each, where
a callback should try once within a short bound (a task's retries retry).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseNotifier, Connection, conf

from modelwatch.actions.notify import (
    DEFAULT_TIMEOUT_S,
    Delivery,
    Notification,
    NotificationError,
    NotificationReport,
    log_line,
    post_webhook,
    send_email,
)
from modelwatch.airflow_adapter import describe_failure

log = logging.getLogger(__name__)

SMTP_CONN_ID = "smtp_default"
WEBHOOK_CONN_ID = "modelwatch_webhook"
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


def send(
    notification: Notification,
    *,
    emails: Sequence[str] = (),
    smtp_conn_id: str = SMTP_CONN_ID,
    webhook_conn_id: str | None = None,
) -> NotificationReport:
    """Log the notification's line, then send it to each configured target; never raises for a target.

    Parameters
    ----------
    notification : Notification
        The message.
    emails : sequence of str
        Email recipients; no email is sent when empty.
    smtp_conn_id : str
        The SMTP connection used for `emails`.
    webhook_conn_id : str or None
        The webhook connection; no webhook call when None.

    Returns
    -------
    NotificationReport
        What was sent where; a failed target (missing connection, bad
        settings, unreachable server) is in ``report.failed`` with its reason
        and logged as an error, and does not stop the other target.
    """
    if isinstance(emails, str):
        raise ValueError(f"emails must be a list of addresses, not one string; got {emails!r}")
    line = log_line(notification)
    log.log(logging.INFO if notification.decision == "healthy" else logging.WARNING, line)
    deliveries = []
    if emails:
        target = f"{', '.join(emails)} via connection {smtp_conn_id}"
        deliveries.append(_deliver("email", target, lambda: _email(notification, emails, smtp_conn_id)))
    if webhook_conn_id:
        target = f"connection {webhook_conn_id}"
        deliveries.append(_deliver("webhook", target, lambda: _webhook(notification, webhook_conn_id)))
    return NotificationReport(log_line=line, deliveries=tuple(deliveries))


class ModelWatchEmailNotifier(BaseNotifier):
    """Email a ModelWatch message when a task or a DAG run fails.

    Parameters
    ----------
    to : sequence of str
        The recipients.
    smtp_conn_id : str
        The SMTP connection (provider format, see the module docstring).
    model_name : str or None
        The model the DAG monitors; by default the DAG id without ``monitor_``.
    """

    def __init__(self, *, to: Sequence[str], smtp_conn_id: str = SMTP_CONN_ID, model_name: str | None = None):
        super().__init__()
        if isinstance(to, str) or not to:
            raise ValueError(f"to must be a non-empty list of email addresses; got {to!r}")
        self.to = list(to)
        self.smtp_conn_id = smtp_conn_id
        self.model_name = model_name

    def notify(self, context: Mapping[str, Any]) -> None:
        report = send(failure_notification(context, self.model_name), emails=self.to, smtp_conn_id=self.smtp_conn_id)
        if report.failed:
            raise NotificationError(report.describe())


class ModelWatchWebhookNotifier(BaseNotifier):
    """Post a ModelWatch message (Slack-compatible JSON) to a webhook when a task or a DAG run fails.

    Parameters
    ----------
    webhook_conn_id : str
        The connection holding the webhook URL (see the module docstring).
    model_name : str or None
        The model the DAG monitors; by default the DAG id without ``monitor_``.
    """

    def __init__(self, *, webhook_conn_id: str = WEBHOOK_CONN_ID, model_name: str | None = None):
        super().__init__()
        self.webhook_conn_id = webhook_conn_id
        self.model_name = model_name

    def notify(self, context: Mapping[str, Any]) -> None:
        report = send(failure_notification(context, self.model_name), webhook_conn_id=self.webhook_conn_id)
        if report.failed:
            raise NotificationError(report.describe())


def failure_notification(context: Mapping[str, Any], model_name: str | None = None) -> Notification:
    """A ``failure`` notification from the context of a task's or a DAG's failure callback.

    A task callback's context has the task instance and the exception; a DAG
    callback's has the run id and a ``reason`` (e.g. ``task_failure``), plus
    the last task instance when Airflow still knows it.
    """
    dag_id = context["dag"].dag_id
    run_id = context.get("run_id")
    ti = context.get("task_instance")
    if "reason" in context:  # only DAG callbacks carry one
        title = f"run of {dag_id} failed"
        reason = f"The DAG run {run_id} failed: {context['reason']}."
        if ti is not None:
            reason += f" The last task to finish was {ti.task_id}."
    else:
        title = f"task {ti.task_id} of {dag_id} failed"
        reason = describe_failure(context)
    links = {}
    if run_id:
        base_url = conf.get("api", "base_url", fallback="http://localhost:8080/").rstrip("/")
        links["Airflow run"] = f"{base_url}/dags/{dag_id}/runs/{quote(run_id)}"
    if ti is not None:
        links["Task log"] = ti.log_url
    return Notification(
        model_name=model_name or dag_id.removeprefix("monitor_"),
        interval_start=context.get("data_interval_start"),
        interval_end=context.get("data_interval_end"),
        decision="failure",
        severity="critical",
        title=title,
        reason=reason,
        links=links,
        run_id=run_id,
    )


def smtp_options(conn_id: str) -> dict[str, Any]:
    """`send_email` keyword arguments from an SMTP connection (all but the recipients).

    Raises
    ------
    NotificationError
        The connection has no host or no ``from_email``, or an extra has a value
        that is not a flag or a number; the message names the connection and the field.
    """
    connection = Connection.get(conn_id)
    extra = connection.extra_dejson
    if not connection.host:
        raise NotificationError(f"SMTP connection {conn_id!r} has no host")
    if not extra.get("from_email"):
        raise NotificationError(f"SMTP connection {conn_id!r} needs the extra field from_email (the From address)")
    use_ssl = not _flag(extra, "disable_ssl", conn_id)
    starttls = not use_ssl and not _flag(extra, "disable_tls", conn_id)
    try:
        timeout_s = float(extra.get("timeout", DEFAULT_TIMEOUT_S))
    except (TypeError, ValueError):
        raise NotificationError(
            f"SMTP connection {conn_id!r}: extra timeout must be a number of seconds; got {extra['timeout']!r}"
        ) from None
    return {
        "host": connection.host,
        "port": connection.port or (465 if use_ssl else 587 if starttls else 25),
        "sender": extra["from_email"],
        "username": connection.login or None,
        "password": connection.password or None,
        "ssl": use_ssl,
        "starttls": starttls,
        "timeout_s": timeout_s,
    }


def webhook_url(conn_id: str) -> str:
    """The webhook URL of a connection: its password when that is a URL, else ``<type>://host[:port]/<schema>``.

    Raises
    ------
    NotificationError
        The connection holds no URL in either form.
    """
    connection = Connection.get(conn_id)
    if connection.password and connection.password.startswith(("https://", "http://")):
        return connection.password
    if connection.conn_type in ("http", "https") and connection.host and "://" not in connection.host:
        port = f":{connection.port}" if connection.port else ""
        return f"{connection.conn_type}://{connection.host}{port}/{connection.schema or ''}"
    raise NotificationError(
        f"webhook connection {conn_id!r} holds no URL: put the whole URL in its password, "
        "or define it as a URI such as https://hooks.example.com/services/..."
    )


def _email(notification: Notification, emails: Sequence[str], conn_id: str) -> None:
    send_email(notification, recipients=emails, **smtp_options(conn_id))


def _webhook(notification: Notification, conn_id: str) -> None:
    post_webhook(notification, webhook_url(conn_id))


def _deliver(channel: str, target: str, attempt: Callable[[], None]) -> Delivery:
    # Any error (a missing connection, bad settings, the network) fails this target only, so it is caught whole.
    try:
        attempt()
    except Exception as error:
        log.error("ModelWatch %s notification to %s failed: %s", channel, target, error)
        return Delivery(channel=channel, target=target, error=f"{type(error).__name__}: {error}")
    log.info("ModelWatch %s notification sent to %s", channel, target)
    return Delivery(channel=channel, target=target)


def _flag(extra: Mapping[str, Any], key: str, conn_id: str) -> bool:
    """A yes/no extra: a JSON boolean, or a string from a URI query (``?disable_ssl=true``)."""
    value = extra.get(key, False)
    if isinstance(value, bool):
        return value
    if str(value).strip().lower() in _TRUE:
        return True
    if str(value).strip().lower() in _FALSE:
        return False
    raise NotificationError(f"SMTP connection {conn_id!r}: extra {key} must be true or false; got {value!r}")

"""Notifications: one message about a model's interval, for email, a chat webhook and the log.

A `Notification` renders itself as a plain-text email and as a Slack-compatible
JSON payload; `send_email` and `post_webhook` deliver it with the standard
library only, each network step bounded by a timeout, and `log_line` gives the
line that is written whatever else happens. Reading Airflow connections is the
job of the notifiers in ``plugins/modelwatch_notifiers.py``.
"""

from __future__ import annotations

import json
import logging
import re
import smtplib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from http.client import HTTPException
from ssl import create_default_context
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import HTTPRedirectHandler, Request, build_opener

from modelwatch.actions import ActionOutcome

log = logging.getLogger(__name__)

DECISIONS = ("halt", "rollback", "retrain", "alert", "healthy", "failure")
SEVERITIES = ("critical", "warning")
DEFAULT_TIMEOUT_S = 10.0

# Slack's limits for header text, section text and the number of context elements.
_HEADER_LIMIT = 150
_SECTION_LIMIT = 3000
_CONTEXT_ELEMENTS_LIMIT = 10
_BARE_LOG_VALUE = re.compile(r"[\w.:+/@,-]+")


class NotificationError(RuntimeError):
    """A notification could not be delivered; the message names the target but never its secrets."""


@dataclass(frozen=True)
class Notification:
    """What happened to one model over one interval, in words a person on call can act on.

    Attributes
    ----------
    model_name : str
        The monitored model.
    interval_start, interval_end : datetime or None
        The data interval ``[start, end)``; None when the run has none (a DAG
        callback without a task, for example).
    decision : str
        One of `DECISIONS`: a pipeline decision, or ``failure`` for a failed task or run.
    severity : str
        ``critical`` or ``warning``.
    title : str
        One line, e.g. "AUC fell below its threshold".
    reason : str
        A paragraph naming the checks (or the error) behind the decision.
    conditions : list of dict
        Small JSON-ready dicts, one per check that drove the decision; each has
        a ``check_name`` and any of ``observed``, ``limit_low``, ``limit_high``
        and other facts (the columns of ``check_results``), shown in the given order.
    links : dict of str to str
        Label to URL, e.g. ``{"Airflow run": "https://…"}``.
    run_id : str or None
        The Airflow run behind the message.
    """

    model_name: str
    interval_start: datetime | None
    interval_end: datetime | None
    decision: str
    severity: str
    title: str
    reason: str
    conditions: list[dict[str, Any]] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None

    def __post_init__(self) -> None:
        if self.decision not in DECISIONS:
            raise ValueError(f"decision must be one of {', '.join(DECISIONS)}; got {self.decision!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}; got {self.severity!r}")
        # Both end up in the email's Subject header, which must stay one line.
        for name in ("model_name", "title"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip() or "\n" in value or "\r" in value:
                raise ValueError(f"{name} must be one non-empty line of text; got {value!r}")
        if not isinstance(self.reason, str) or not self.reason.strip():
            raise ValueError(f"reason must say what drove the decision; got {self.reason!r}")
        for condition in self.conditions:
            if not isinstance(condition, Mapping) or not condition.get("check_name"):
                raise ValueError(f"each condition must be a dict with a check_name; got {condition!r}")

    @property
    def interval_text(self) -> str:
        """The interval as ``[start, end)`` in ISO 8601, or a note that the run has none."""
        if self.interval_start is None or self.interval_end is None:
            return "no data interval"
        return f"[{self.interval_start.isoformat()}, {self.interval_end.isoformat()})"

    @property
    def headline(self) -> str:
        """One line that says who, what and how bad, e.g. ``CRITICAL credit_risk rollback: AUC fell``."""
        return f"{self.severity.upper()} {self.model_name} {self.decision}: {self.title}"

    def facts(self) -> list[tuple[str, str]]:
        """Label and value of the facts every rendering shows: model, decision, severity, interval, run."""
        return [
            ("Model", self.model_name),
            ("Decision", self.decision),
            ("Severity", self.severity),
            ("Interval", self.interval_text),
            ("Run", self.run_id or "unknown"),
        ]

    def condition_lines(self) -> list[str]:
        """One line per condition: ``auc: observed 0.71, limit_low 0.75``."""
        lines = []
        for condition in self.conditions:
            facts = ", ".join(
                f"{key} {_format_value(value)}"
                for key, value in condition.items()
                if key != "check_name" and value is not None
            )
            lines.append(f"{condition['check_name']}: {facts}" if facts else str(condition["check_name"]))
        return lines

    def email_subject(self) -> str:
        """The Subject line: ``[ModelWatch critical] credit_risk rollback: <title>``."""
        return f"[ModelWatch {self.severity}] {self.model_name} {self.decision}: {self.title}"

    def email_body(self) -> str:
        """The plain-text email: the facts first, then the reason, the conditions and the links."""
        facts = (f"{label + ':':<10} {value}" for label, value in self.facts())
        lines = [self.title, "", *facts, "", "Reason", self.reason]
        if self.conditions:
            lines += ["", "Conditions", *(f"- {line}" for line in self.condition_lines())]
        if self.links:
            lines += ["", "Links", *(f"- {label}: {url}" for label, url in self.links.items())]
        return "\n".join(lines) + "\n"

    def slack_payload(self) -> dict[str, Any]:
        """A Slack-compatible message: ``blocks`` for Slack, and ``text`` for every other receiver.

        ``text`` always carries the whole message (headline, reason, conditions
        and links), since webhooks other than Slack's show only that field.
        """
        links = [f"<{url}|{_escape_mrkdwn(label)}>" for label, url in self.links.items()]
        conditions = [f"• {_escape_mrkdwn(line)}" for line in self.condition_lines()]
        text = "\n".join([_escape_mrkdwn(self.headline), _escape_mrkdwn(self.reason), *conditions, *links])
        fields = [{"type": "mrkdwn", "text": f"*{label}*\n{_escape_mrkdwn(value)}"} for label, value in self.facts()]
        header = f"{self.model_name}: {self.title}"
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": _clip(header, _HEADER_LIMIT)}},
            {"type": "section", "fields": fields},
            {"type": "section", "text": {"type": "mrkdwn", "text": _clip(_escape_mrkdwn(self.reason), _SECTION_LIMIT)}},
        ]
        if conditions:
            conditions_text = _clip("*Conditions*\n" + "\n".join(conditions), _SECTION_LIMIT)
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": conditions_text}})
        if links:
            elements = [{"type": "mrkdwn", "text": link} for link in links[:_CONTEXT_ELEMENTS_LIMIT]]
            blocks.append({"type": "context", "elements": elements})
        return {"text": text, "blocks": blocks}


@dataclass(frozen=True)
class Delivery:
    """One attempt to deliver a notification to one target.

    Attributes
    ----------
    channel : str
        ``email`` or ``webhook``.
    target : str
        Where it went, without secrets (recipients and connection id).
    error : str or None
        Why it failed; None when it was delivered.
    """

    channel: str
    target: str
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class NotificationReport:
    """What was sent where, and which targets failed and why.

    Attributes
    ----------
    log_line : str
        The line that was logged (see `log_line`).
    deliveries : tuple of Delivery
        One per configured target, in the order they were tried.
    """

    log_line: str
    deliveries: tuple[Delivery, ...] = ()

    @property
    def failed(self) -> tuple[Delivery, ...]:
        return tuple(delivery for delivery in self.deliveries if not delivery.ok)

    def describe(self) -> str:
        """One sentence per target, e.g. ``email to a@x via smtp_default: sent; webhook via hook: failed: …``."""
        if not self.deliveries:
            return "no notification target configured; logged only"
        return "; ".join(
            f"{d.channel} to {d.target}: " + ("sent" if d.ok else f"failed: {d.error}") for d in self.deliveries
        )

    def to_outcome(self) -> ActionOutcome:
        """The outcome for ``model_actions``: ``notified``, ``notify_failed`` (any target failed) or ``logged``."""
        if not self.deliveries:
            outcome = "logged"
        elif self.failed:
            outcome = "notify_failed"
        else:
            outcome = "notified"
        return ActionOutcome(
            outcome=outcome, detail=self.describe(), facts={"deliveries": [asdict(d) for d in self.deliveries]}
        )


def log_line(notification: Notification) -> str:
    """The one line logged for every notification, whether or not any target receives it.

    ``key=value`` pairs (values with spaces are JSON-quoted), so it reads well
    and greps well: ``ModelWatch notification: model=credit_risk decision=rollback
    severity=critical interval=… run_id=… checks=auc title="…" reason="…"``.
    """
    if notification.interval_start is None or notification.interval_end is None:
        interval = "none"
    else:
        interval = f"{notification.interval_start.isoformat()}/{notification.interval_end.isoformat()}"
    pairs = {
        "model": notification.model_name,
        "decision": notification.decision,
        "severity": notification.severity,
        "interval": interval,
        "run_id": notification.run_id or "none",
        "checks": ",".join(str(c["check_name"]) for c in notification.conditions) or "none",
        "title": notification.title,
        "reason": " ".join(notification.reason.split()),
    }
    return "ModelWatch notification: " + " ".join(f"{key}={_log_value(value)}" for key, value in pairs.items())


def send_email(
    notification: Notification,
    *,
    host: str,
    port: int,
    sender: str,
    recipients: Iterable[str],
    username: str | None = None,
    password: str | None = None,
    starttls: bool = False,
    ssl: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> list[str]:
    """Send the notification as a plain-text email; one attempt, each SMTP step bounded by `timeout_s`.

    Parameters
    ----------
    notification : Notification
        The message.
    host, port : str, int
        The SMTP server.
    sender : str
        The From address.
    recipients : iterable of str
        The To addresses; at least one.
    username, password : str or None
        Log in when `username` is given.
    starttls : bool
        Upgrade a plain connection with STARTTLS (usually port 587).
    ssl : bool
        Speak TLS from the first byte (usually port 465). Not together with `starttls`.
    timeout_s : float
        Seconds allowed for connecting and for each answer of the server.

    Returns
    -------
    list of str
        The recipients the server accepted (a refused recipient is logged as a warning).

    Raises
    ------
    NotificationError
        The server could not be reached, refused the login or every recipient,
        or did not answer within `timeout_s`; the message names ``host:port``.
    ValueError
        No recipient, or both `ssl` and `starttls`.
    """
    recipients = list(recipients)
    if not recipients:
        raise ValueError("send_email needs at least one recipient")
    if ssl and starttls:
        raise ValueError("choose ssl (TLS from the start, usually port 465) or starttls (usually port 587), not both")
    # RFC 5322's hard line limit instead of its advised 78: Python folds a subject that would fit on the next line
    # onto that line, leaving it with a leading space in readers that keep the folding white space.
    message = EmailMessage(policy=email_policy.SMTP.clone(max_line_length=998))
    message["Subject"] = notification.email_subject()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain="modelwatch")
    message.set_content(notification.email_body())
    try:
        if ssl:
            client = smtplib.SMTP_SSL(host, port, timeout=timeout_s, context=create_default_context())
        else:
            client = smtplib.SMTP(host, port, timeout=timeout_s)
        with client:
            if starttls:
                client.starttls(context=create_default_context())
            if username:
                client.login(username, password or "")
            refused = client.send_message(message, from_addr=sender, to_addrs=recipients)
    except (smtplib.SMTPException, OSError) as error:
        raise NotificationError(
            f"email to {', '.join(recipients)} via SMTP server {host}:{port} failed: {_describe(error, timeout_s)}"
        ) from error
    if refused:
        log.warning("SMTP server %s:%s refused recipients %s", host, port, refused)
    return [recipient for recipient in recipients if recipient not in refused]


class _RefuseRedirects(HTTPRedirectHandler):
    """Turn a redirect into an HTTP error: urllib would repeat a redirected POST as a GET without its body."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = build_opener(_RefuseRedirects)


def post_webhook(notification: Notification, url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> int:
    """POST the notification's `Notification.slack_payload` as JSON to a webhook; one attempt.

    Parameters
    ----------
    notification : Notification
        The message.
    url : str
        The ``http(s)://`` webhook URL. It usually holds a secret token, so
        errors name only its host and port.
    timeout_s : float
        Seconds allowed for connecting and for the answer.

    Returns
    -------
    int
        The HTTP status of the answer (2xx).

    Raises
    ------
    NotificationError
        The endpoint answered with an HTTP error or a redirect, could not be
        reached, or did not answer within `timeout_s`.
    ValueError
        `url` is not an ``http(s)://host…`` URL.
    """
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the webhook URL has an invalid port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"a webhook URL must look like https://host/path; got one with scheme {parts.scheme!r}")
    where = f"webhook at {parts.hostname}" + (f":{port}" if port else "")
    request = Request(
        url,
        data=json.dumps(notification.slack_payload()).encode("utf-8"),
        headers={"Content-Type": "application/json", "User-Agent": "ModelWatch"},
        method="POST",
    )
    # `from None` throughout: urllib's exceptions carry the full URL, which must not reach a log.
    try:
        with _opener.open(request, timeout=timeout_s) as response:
            return response.status
    except HTTPError as error:
        raise NotificationError(f"{where} answered HTTP {error.code} {error.reason}") from None
    except URLError as error:
        # Connecting failed: the reason is the socket's error (refused, unknown host, timed out).
        detail = _describe(error.reason, timeout_s) if isinstance(error.reason, BaseException) else str(error.reason)
        raise NotificationError(f"POST to {where} failed: {detail}") from None
    except (OSError, HTTPException) as error:
        raise NotificationError(f"POST to {where} failed: {_describe(error, timeout_s)}") from None
    except ValueError as error:  # http.client's InvalidURL quotes the path
        raise NotificationError(f"POST to {where} failed: {type(error).__name__}") from None


def _describe(error: BaseException, timeout_s: float) -> str:
    # smtplib reports a read that timed out as a disconnection, raised while handling the TimeoutError.
    if isinstance(error, TimeoutError) or isinstance(error.__context__, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    return f"{type(error).__name__}: {error}"


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _log_value(value: str) -> str:
    return value if _BARE_LOG_VALUE.fullmatch(value) else json.dumps(value, ensure_ascii=False)


def _escape_mrkdwn(text: str) -> str:
    """Slack reads ``&``, ``<`` and ``>`` as markup; everything else passes as typed."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""Real notification endpoints on 127.0.0.1 for tests: an SMTP server and an HTTP endpoint.

Both are started and stopped by their fixtures, also when a test fails.
Registered for every test through `pytest_plugins` in tests/conftest.py.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from modelwatch.airflow_services import free_port

SECRET_PATH = "/services/T000/B000/s3cr3tT0ken"


# --- a real SMTP server -------------------------------------------------------------------------------------------


@dataclass
class Inbox:
    """What the SMTP server received: each message with its envelope, and each login."""

    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):
        content = message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), content))
        return "250 Message accepted"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        self.logins.append((auth_data.login.decode(), auth_data.password.decode()))
        return AuthResult(success=True)


@pytest.fixture
def smtp_server():
    """An SMTP server on 127.0.0.1 that accepts everything (login optional, no TLS); yields (port, inbox)."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox, hostname="127.0.0.1", port=port, authenticator=inbox.authenticate, auth_require_tls=False
    )
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


# --- a real HTTP endpoint -----------------------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    content_type: str
    payload: dict


class Endpoint(ThreadingHTTPServer):
    """Records every POST and answers with `status`; an error page echoes the path, as many servers do."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Recorder)
        self.status = 200
        self.received: list[Received] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}{SECRET_PATH}"


class Recorder(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(Received(self.path, self.headers["Content-Type"], json.loads(body)))
        answer = b"ok" if self.server.status < 300 else f"Cannot POST {self.path}".encode()
        self.send_response(self.server.status)
        if 300 <= self.server.status < 400:
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format, *args):  # keep the test output to the assertions
        pass


@pytest.fixture
def endpoint():
    server = Endpoint()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def smtp_connection(port: int, **extra) -> str:
    return json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": port, "login": "mw", "password": "pw",
        "extra": {"from_email": "modelwatch@example.com", "disable_ssl": True, "disable_tls": True} | extra,
    })

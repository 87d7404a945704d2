"""Who may see the page, and which models: the contract the page's host answers.

Airflow does not protect a plugin's FastAPI app: its routes are public unless
the app checks. The page asks an `Access` for the request's viewer and, per
model, whether that viewer may read it. The plugin answers with Airflow's auth
manager (`plugins/modelwatch_health.py`); the library never imports Airflow
(docs/health-page.md, "Who may see it").
"""

from __future__ import annotations

from typing import Any, Protocol

from starlette.requests import Request


class Access(Protocol):
    """The page's view of authentication and authorisation."""

    async def viewer(self, request: Request) -> Any | None:
        """The signed-in user who made `request`, or None when nobody is signed in (or the sign-in expired)."""

    def may_read(self, viewer: Any, model_name: str) -> bool:
        """Whether `viewer` may see the health of `model_name`."""

    def login_url(self, next_url: str) -> str:
        """Where to send a visitor to sign in, coming back to `next_url` afterwards."""

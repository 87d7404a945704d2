"""An ASGI app built on its first request.

Airflow imports every plugin module in each of its processes (scheduler, DAG
processor, workers), while only the API server serves the page. Registering a
`DeferredApp` keeps FastAPI, SQLAlchemy and pandas out of those imports.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class DeferredApp:
    """An ASGI app that calls `build` once, on the first request, and hands every request to what it built.

    Parameters
    ----------
    build : callable
        Returns the real ASGI app; called without arguments.
    """

    def __init__(self, build: Callable[[], ASGIApp]):
        self._build = build
        self._app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # One event loop serves the requests and nothing awaits in between: no lock is needed.
        if self._app is None:
            self._app = self._build()
        await self._app(scope, receive, send)

"""The model-health page as a FastAPI app: an index of the configured models and one page per model.

Routes (relative to where the app is mounted, `links.MOUNT_PATH` in Airflow):

- ``GET /``: every configured model the viewer may read, with its latest state and decisions;
- ``GET /models/{model_name}``: one model's decisions, charts and tables; 404 unless `model_name` is
  a configured model, 403 if the viewer may not read it;
- ``GET /icon.svg``: the navigation icon.

Both pages take ``?intervals=N`` (1 to `MAX_INTERVALS`, default `DEFAULT_INTERVALS`): how many of the
latest intervals they cover. A visitor who is not signed in is sent to the sign-in page.

The models come from the models file and the warehouse from `warehouse_url`, both resolved on the
first request and kept (a changed models file shows after a restart of the API server, as new DAGs do).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from modelwatch.config import ConfigError, ModelConfig, ProjectConfig, load_config
from modelwatch.health_page import links, page, queries, templates
from modelwatch.health_page.access import Access
from modelwatch.warehouse.engine import WarehouseUnavailable, get_engine

DEFAULT_INTERVALS = 30
MAX_INTERVALS = 366
Intervals = Annotated[int, Query(ge=1, le=MAX_INTERVALS, description="how many of the latest intervals to show")]
_TITLES = {403: "Not allowed", 404: "Not found"}


class SignInNeeded(Exception):
    """The request has no valid Airflow sign-in."""


class Sources:
    """The models file and the warehouse engine, resolved on first use and then kept.

    Parameters
    ----------
    config_path : str or Path, optional
        The models file; default `MODELWATCH_CONFIG` or the shipped example.
    warehouse_url : str, optional
        The warehouse; default as `modelwatch.warehouse.engine.warehouse_url` resolves it.
    """

    def __init__(self, config_path: str | Path | None = None, warehouse_url: str | None = None):
        self._config_path, self._warehouse_url = config_path, warehouse_url
        self._config: ProjectConfig | None = None
        self._engine: Engine | None = None
        self._lock = threading.Lock()  # pages are rendered in a thread pool

    def config(self) -> ProjectConfig:
        with self._lock:
            if self._config is None:
                self._config = load_config(self._config_path)
            return self._config

    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = get_engine(self._warehouse_url)
            return self._engine


def create_app(access: Access, *, mount_path: str = "", config_path: str | Path | None = None,
               warehouse_url: str | None = None) -> FastAPI:
    """The page's app.

    Parameters
    ----------
    access : Access
        Who is signed in and what they may read (the plugin passes Airflow's auth manager).
    mount_path : str
        Where the host mounts the app (`links.MOUNT_PATH` in Airflow; empty when it runs alone), to
        find the Airflow UI's root for the links to DAG runs.
    config_path, warehouse_url
        See `Sources`.

    Returns
    -------
    FastAPI
    """
    sources = Sources(config_path, warehouse_url)
    app = FastAPI(title="ModelWatch model health", docs_url=None, redoc_url=None, openapi_url=None)

    async def viewer_of(request: Request) -> Any:
        viewer = await access.viewer(request)
        if viewer is None:
            raise SignInNeeded
        return viewer

    @app.get("/", response_class=HTMLResponse)
    async def index(request: Request, intervals: Intervals = DEFAULT_INTERVALS) -> HTMLResponse:
        viewer = await viewer_of(request)
        return HTMLResponse(await run_in_threadpool(_index_page, access, viewer, sources, _paths(request, mount_path),
                                                    intervals))

    @app.get("/models/{model_name}", response_class=HTMLResponse)
    async def model(request: Request, model_name: str, intervals: Intervals = DEFAULT_INTERVALS) -> HTMLResponse:
        viewer = await viewer_of(request)
        return HTMLResponse(await run_in_threadpool(_model_page, access, viewer, sources, _paths(request, mount_path),
                                                    model_name, intervals))

    @app.get("/icon.svg")
    async def icon() -> Response:
        return Response(templates.ICON, media_type="image/svg+xml")

    @app.exception_handler(SignInNeeded)
    async def sign_in(request: Request, _: SignInNeeded) -> RedirectResponse:
        return RedirectResponse(access.login_url(str(request.url)), status_code=303)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> HTMLResponse:
        return _message(request, mount_path, error.status_code, _TITLES.get(error.status_code, "Error"), error.detail)

    @app.exception_handler(WarehouseUnavailable)
    async def warehouse_down(request: Request, error: WarehouseUnavailable) -> HTMLResponse:
        return _message(request, mount_path, 503, "Warehouse unavailable", str(error))

    @app.exception_handler(ConfigError)
    async def bad_config(request: Request, error: ConfigError) -> HTMLResponse:
        return _message(request, mount_path, 500, "Models file not valid", str(error))

    return app



class _Paths:
    """The absolute paths a page links to, from the request's ASGI root path."""

    def __init__(self, root_path: str, mount_path: str):
        self.index = root_path.rstrip("/") + "/"
        self.airflow = links.airflow_root(root_path, mount_path)

    def model(self, model_name: str) -> str:
        return f"{self.index}models/{quote(model_name)}"

    def dag(self, model_name: str) -> str:
        return f"{self.airflow}dags/{quote(links.dag_id(model_name))}"


def _paths(request: Request, mount_path: str) -> _Paths:
    return _Paths(request.scope.get("root_path", ""), mount_path)


def _message(request: Request, mount_path: str, status: int, heading: str, message: str) -> HTMLResponse:
    body = templates.render("message.html", index_href=_paths(request, mount_path).index, heading=heading,
                            message=message)
    return HTMLResponse(body, status_code=status)


def _index_page(access: Access, viewer: Any, sources: Sources, paths: _Paths, intervals: int) -> str:
    config, engine = sources.config(), sources.engine()
    readable = [model for model in config.models if access.may_read(viewer, model.name)]
    states = queries.latest_states(engine, [m.name for m in readable]) if queries.has_schema(engine) else {}
    cards = [
        {
            "name": model.name,
            "task": model.task,
            "schedule": model.schedule,
            "href": paths.model(model.name),
            "dag_id": links.dag_id(model.name),
            "dag_href": paths.dag(model.name),
            "overview": page.overview(engine, model, states.get(model.name), intervals),
        }
        for model in readable
    ]
    return templates.render("index.html", index_href=paths.index, models=cards)


def _model_page(access: Access, viewer: Any, sources: Sources, paths: _Paths, model_name: str,
                intervals: int) -> str:
    model = _configured(sources.config(), model_name)
    if not access.may_read(viewer, model.name):
        raise HTTPException(403, f"You may not read the DAG {links.dag_id(model.name)}, so not its model's health.")
    engine = sources.engine()
    health = page.model_health(engine, model, intervals, paths.airflow) if queries.has_schema(engine) else None
    return templates.render("model.html", index_href=paths.index, model=model, health=health,
                            dag_id=links.dag_id(model.name), dag_href=paths.dag(model.name))


def _configured(config: ProjectConfig, model_name: str) -> ModelConfig:
    """The configured model named `model_name`: the only names the page accepts (404 for any other)."""
    by_name = {model.name: model for model in config.models}
    if model_name not in by_name:
        raise HTTPException(404, f"No configured model is named {model_name!r}; configured: "
                                 f"{', '.join(by_name)}.")
    return by_name[model_name]

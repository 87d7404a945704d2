"""The server behind `python -m modelwatch serve`: the champion over HTTP, every request logged as the contract says.

Endpoints (docs/serving.md):

- ``POST /predict``: a JSON object of `request_id` (optional), `features` and
  `context` (optional); answers the prediction, the score (binary
  classification) and the version that served it; 4xx with a JSON error for
  bad input.
- ``GET /health``: the version serving now.
- ``GET /metrics``: Prometheus text format (`modelwatch.serving.telemetry`).

The stack is FastAPI on uvicorn: an event loop accepts and reads requests,
and the model work runs on its thread pool, so a slow prediction never stops
the loop from accepting, and `/metrics` and `/health` answer under load.
Uvicorn stops on SIGTERM or SIGINT by refusing new connections, finishing the
requests in flight and only then running the app's shutdown, which publishes
the open log files: no answered request is left unlogged.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from modelwatch import batch
from modelwatch.config import ModelConfig
from modelwatch.serving.champion import Champion, ServedVersion
from modelwatch.serving.inputs import MAX_BODY_BYTES, InvalidRequest, PredictionRequest, parse_request
from modelwatch.serving.logfiles import LogClosed, PredictionLog, timestamp_text
from modelwatch.serving.telemetry import ServeMetrics

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0
"""How often open log files are checked for age and for a day that ended."""

INVALID_INPUT = "InvalidInput"
PREDICTION_ERROR = "PredictionError"
LOG_WRITE_ERROR = "LogWriteError"
"""The `error` of failed requests: a few stable types, since the monitoring counts requests per type."""


@dataclass(frozen=True)
class Answer:
    """An HTTP status and the JSON object to answer with."""

    status_code: int
    body: dict[str, Any]


def new_request_id() -> str:
    """A fresh request id: a random UUID as 32 hex digits."""
    return uuid.uuid4().hex


def _latency_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)


class ModelServer:
    """One served model without the HTTP part: its champion, prediction log, metrics and background threads.

    Parameters
    ----------
    model : ModelConfig
        The model from the models file: features, task, log root, registered name.
    refresh_seconds : float
        How often the `champion` alias is looked at.
    rotate_bytes, rotate_seconds
        When a log file is published (`PredictionLog`'s `max_bytes` and `max_seconds`).
    """

    def __init__(self, model: ModelConfig, *, refresh_seconds: float, rotate_bytes: int, rotate_seconds: float):
        self.model = model
        self.champion = Champion(model, refresh_seconds, on_load_failure=self._load_failed)
        self.metrics = ServeMetrics(model.name, lambda: self.champion.current)
        self.log = PredictionLog(model.log_url, model.name, max_bytes=rotate_bytes, max_seconds=rotate_seconds)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _load_failed(self, version: str, reason: str) -> None:
        self.metrics.load_failed(version, reason)

    def open(self) -> ServedVersion:
        """Load the champion and publish log files a crashed server left; before accepting requests.

        Raises
        ------
        VersionLoadError
            There is no champion, or it cannot be served.
        """
        served = self.champion.load_initial()
        self.log.publish_abandoned()
        self.log.tick()
        return served

    def start_background(self) -> None:
        """Start following the alias and rotating log files by age."""
        self._threads = [
            threading.Thread(target=self.champion.watch, args=(self._stop,), name="champion-watch", daemon=True),
            threading.Thread(target=self._tick_log, name="log-rotation", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop the background threads and publish every open log file (after the last request)."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self.log.close()

    def _tick_log(self) -> None:
        while not self._stop.wait(min(TICK_SECONDS, self.log.max_seconds)):
            try:
                self.log.tick()
            except OSError:  # a full disk now may be freed later; writes report their own failures
                log.exception("could not rotate the log files under %s", self.log.folder)

    def answer(self, body: bytes, received: datetime, started: float) -> Answer:
        """Serve one `POST /predict` body and log it; the status and JSON object to answer.

        Parameters
        ----------
        body : bytes
            The request body (cut after `MAX_BODY_BYTES` + 1 bytes by the caller).
        received : datetime
            When the request arrived (UTC): its logged `timestamp`, which picks its partition.
        started : float
            `time.perf_counter()` at arrival, for `latency_ms`.
        """
        served = self.champion.current  # read once: this request is served by one version
        try:
            request = parse_request(self.model, body, new_request_id)
        except InvalidRequest as exc:
            return self._failed(served, received, started, exc.status_code, INVALID_INPUT, exc.problems,
                                client_request_id=exc.request_id)
        try:
            prediction, score = served.predict(request.features)
        except Exception as exc:  # a pipeline may raise anything; the request fails, the server goes on
            log.exception("version %s failed on request %s", served.version, request.request_id)
            detail = batch.safe_text(f"{type(exc).__name__}: {exc}")
            return self._failed(served, received, started, 500, PREDICTION_ERROR, [detail],
                                client_request_id=request.request_id, context=request.context)
        return self._answered(served, request, prediction, score, received, started)

    def _answered(self, served: ServedVersion, request: PredictionRequest, prediction: Any, score: float | None,
                  received: datetime, started: float) -> Answer:
        record: dict[str, Any] = {
            "request_id": request.request_id,
            "timestamp": timestamp_text(received),
            "model_name": self.model.name,
            "model_version": served.version,
            "features": request.features,
            "prediction": prediction,
        }
        if score is not None:
            record["score"] = score
        record["latency_ms"] = _latency_ms(started)
        record["status"] = "ok"
        if request.context:
            record["context"] = request.context
        refused = self._write(record, received, started)
        if refused is not None:
            return refused
        self.metrics.observe("ok", record["latency_ms"] / 1000.0)
        answer = {key: record[key] for key in ("request_id", "model_name", "model_version", "prediction")}
        if score is not None:
            answer["score"] = score
        return Answer(200, answer | {"latency_ms": record["latency_ms"]})

    def _failed(self, served: ServedVersion, received: datetime, started: float, status_code: int, error: str,
                problems: list[str], client_request_id: str | None, context: dict[str, str] | None = None) -> Answer:
        # A failed request is logged under an id of its own: a client that retries with its id
        # would otherwise give the reader two different records of one id, and both would be quarantined.
        request_id = new_request_id()
        detail = "; ".join(problems)
        record: dict[str, Any] = {
            "request_id": request_id,
            "timestamp": timestamp_text(received),
            "model_name": self.model.name,
            "model_version": served.version,
            "features": {},
            "latency_ms": _latency_ms(started),
            "status": "error",
            "error": error,
            "error_detail": detail[: batch.MAX_ERROR_CHARS],  # not a contract field: ignored by the reader
        }
        if client_request_id is not None:
            record["client_request_id"] = client_request_id
        if context:
            record["context"] = context
        refused = self._write(record, received, started)
        if refused is not None:
            return refused
        self.metrics.observe("error", record["latency_ms"] / 1000.0, error)
        answer = {"request_id": request_id, "model_name": self.model.name, "model_version": served.version,
                  "error": error, "detail": detail, "problems": problems}
        if client_request_id is not None:
            answer["client_request_id"] = client_request_id
        return Answer(status_code, answer)

    def _write(self, record: dict[str, Any], received: datetime, started: float) -> Answer | None:
        """Log a record; None when written, else the 503 to answer (a request that is not logged is not served)."""
        try:
            self.log.write(record, received)
        except (OSError, LogClosed, ValueError) as exc:  # ValueError: a value JSON cannot hold
            log.exception("could not log request %s", record["request_id"])
            self.metrics.observe("error", _latency_ms(started) / 1000.0, LOG_WRITE_ERROR)
            return Answer(503, {"request_id": record["request_id"], "model_name": self.model.name,
                                "error": LOG_WRITE_ERROR, "detail": f"the request could not be logged ({exc}); "
                                "nothing was served, retry later"})
        return None

    def health(self) -> dict[str, Any]:
        """What `GET /health` answers: the model and the version serving now."""
        served = self.champion.current
        return {"status": "ok", "model_name": self.model.name, "registered_model": self.model.registry_name,
                "model_version": served.version, "loaded_at": timestamp_text(served.loaded_at),
                "refresh_seconds": self.champion.refresh_seconds}


async def _read_body(request: Request) -> bytes:
    """The body, cut after `MAX_BODY_BYTES` + 1 bytes: a larger one is refused without being held whole."""
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > MAX_BODY_BYTES:
            break
    return bytes(received)


def create_app(server: ModelServer) -> FastAPI:
    """The FastAPI app of an opened `ModelServer`; its lifespan runs the background threads and the final flush."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        server.start_background()
        try:
            yield
        finally:
            server.stop()

    app = FastAPI(title=f"ModelWatch reference server: {server.model.name}", lifespan=lifespan,
                  openapi_url=None, docs_url=None, redoc_url=None)

    @app.post("/predict")
    async def predict(request: Request) -> JSONResponse:
        received, started = datetime.now(UTC), time.perf_counter()
        body = await _read_body(request)
        answer = await run_in_threadpool(server.answer, body, received, started)
        return JSONResponse(answer.body, status_code=answer.status_code)

    # On the event loop, not the thread pool: both are quick, and answer even while predictions queue.
    @app.get("/health")
    async def health() -> dict[str, Any]:
        return server.health()

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(server.metrics.exposition(), media_type=server.metrics.content_type)

    return app

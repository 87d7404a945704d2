"""The server's Prometheus metrics, in a registry of its own (so servers in one process never share series).

| series | labels | meaning |
|---|---|---|
| ``modelwatch_serve_requests_total`` | model, status | `POST /predict` requests answered, by logged status |
| ``modelwatch_serve_errors_total`` | model, error | failed requests by error type (the log's ``error``) |
| ``modelwatch_serve_request_duration_seconds`` | model | histogram of server-side latency (the log's ``latency_ms``) |
| ``modelwatch_serve_model_version_info`` | model, version | 1 for the version serving now |
| ``modelwatch_serve_model_loaded_timestamp_seconds`` | model | when that version was loaded (Unix time) |
| ``modelwatch_serve_model_load_failures_total`` | model, version | versions the alias named that could not be served |
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from modelwatch.serving.champion import ServedVersion

# Seconds; from a fast single-row model (1 ms) to the simulator's timeouts (2 s) and beyond.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STATUSES = ("ok", "error")


class _ServedVersionCollector(Collector):
    """The served version, read at scrape time: a scrape never sees two versions or none."""

    def __init__(self, model_name: str, served: Callable[[], ServedVersion]):
        self._model_name = model_name
        self._served = served

    def collect(self) -> Iterator[GaugeMetricFamily]:
        current = self._served()
        info = GaugeMetricFamily("modelwatch_serve_model_version_info", "The model version serving requests now",
                                 labels=["model", "version"])
        info.add_metric([self._model_name, current.version], 1)
        loaded = GaugeMetricFamily("modelwatch_serve_model_loaded_timestamp_seconds",
                                   "When the version serving now was loaded (Unix time)", labels=["model"])
        loaded.add_metric([self._model_name], current.loaded_at.timestamp())
        return iter([info, loaded])


class ServeMetrics:
    """Counters and histograms of one model server.

    Parameters
    ----------
    model_name : str
        The `model` label of every series.
    served : callable
        Returns the version serving now (`Champion.current`'s getter).
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, model_name: str, served: Callable[[], ServedVersion]):
        self.model_name = model_name
        self.registry = CollectorRegistry()
        self._requests = Counter("modelwatch_serve_requests", "POST /predict requests answered, by logged status",
                                 ["model", "status"], registry=self.registry)
        self._errors = Counter("modelwatch_serve_errors", "Failed POST /predict requests by error type",
                               ["model", "error"], registry=self.registry)
        self._latency = Histogram("modelwatch_serve_request_duration_seconds",
                                  "Server-side latency of POST /predict", ["model"],
                                  buckets=LATENCY_BUCKETS, registry=self.registry)
        self._load_failures = Counter("modelwatch_serve_model_load_failures",
                                      "Versions named by the champion alias that could not be served",
                                      ["model", "version"], registry=self.registry)
        for status in STATUSES:  # present at 0 from the start, so rates are defined before the first error
            self._requests.labels(model_name, status)
        self.registry.register(_ServedVersionCollector(model_name, served))

    def observe(self, status: str, latency_seconds: float, error: str | None = None) -> None:
        """Count one answered request."""
        self._requests.labels(self.model_name, status).inc()
        self._latency.labels(self.model_name).observe(latency_seconds)
        if error is not None:
            self._errors.labels(self.model_name, error).inc()

    def load_failed(self, version: str, reason: str) -> None:
        """Count a version that could not be served (`Champion`'s `on_load_failure`)."""
        self._load_failures.labels(self.model_name, version).inc()

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)

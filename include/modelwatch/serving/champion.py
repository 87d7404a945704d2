"""The served version: the registry's `champion`, loaded in the background and swapped atomically.

A request reads `Champion.current` once and is served entirely by that
version: the swap is one reference assignment, so no request sees half of
a swap and none waits for a load. A version is served only after it answered
a probe request built from the models file, so a version that cannot be
loaded, or cannot answer the configured features, never replaces the one
being served.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from modelwatch import catalogue, registry
from modelwatch.config import ModelConfig
from modelwatch.model_input import model_frame
from modelwatch.serving.inputs import input_arrays

log = logging.getLogger(__name__)

FAILED_RETRY_SECONDS = 60.0
"""A version that failed to load is tried again after this long (or the refresh interval, if longer)."""


class VersionLoadError(RuntimeError):
    """A registered version cannot be served; the message says which and why."""


@dataclass(frozen=True)
class ServedVersion:
    """One loaded version of a model, ready to answer requests."""

    model: ModelConfig
    version: str
    pipeline: Any
    loaded_at: datetime
    positive_column: int | None
    """The column of `predict_proba` holding the positive class (binary classification), else None."""

    def predict(self, features: Mapping[str, Any]) -> tuple[Any, float | None]:
        """The prediction and score (None for regression) for one row of checked features.

        Raises
        ------
        ValueError
            The pipeline answered with a value the log contract cannot hold (NaN, a score outside [0, 1]).
        """
        frame = model_frame(self.model, input_arrays(self.model, features))
        if self.positive_column is None:
            value = float(self.pipeline.predict(frame)[0])
            if not math.isfinite(value):
                raise ValueError(f"version {self.version} predicted {value}")
            return value, None
        probabilities = self.pipeline.predict_proba(frame)[0]
        score = float(probabilities[self.positive_column])
        if not 0.0 <= score <= 1.0:  # also false for NaN
            raise ValueError(f"version {self.version} scored {score}, outside [0, 1]")
        label = self.pipeline.classes_[int(np.argmax(probabilities))]
        return (label.item() if isinstance(label, np.generic) else label), score


def probe_features(model: ModelConfig) -> dict[str, Any]:
    """A plausible request of the configured features: mid-range numbers, the first allowed category, false."""
    features: dict[str, Any] = {}
    for feature in model.features:
        if feature.type == "numeric":
            bounds = [bound for bound in (feature.min, feature.max) if bound is not None]
            features[feature.name] = sum(bounds) / len(bounds) if bounds else 0.0
        elif feature.type == "boolean":
            features[feature.name] = False
        else:
            features[feature.name] = (feature.allowed_values or [""])[0]
    return features


def load_version(model: ModelConfig, version: str) -> ServedVersion:
    """Load a registered version and make it answer a probe request.

    Raises
    ------
    VersionLoadError
        The registry cannot give the version, or it cannot answer the configured features.
    """
    from threadpoolctl import threadpool_limits

    from modelwatch.actions.retrain import positive_column

    try:
        pipeline = registry.load_model(model.registry_name, version)
        # One row per request: starting an OpenMP team per prediction costs more than it saves
        # (docs/serving.md: 80-90 ms against 10-15 ms a row); concurrency comes from the requests.
        threadpool_limits(limits=1)
        positive = positive_column(model, pipeline) if model.task == catalogue.CLASSIFICATION else None
        served = ServedVersion(model, str(version), pipeline, datetime.now(UTC), positive)
        served.predict(probe_features(model))
    except Exception as exc:  # whatever MLflow, skops or the pipeline raise, the version is not served
        raise VersionLoadError(
            f"version {version} of {model.registry_name!r} cannot be served: {type(exc).__name__}: {exc}"
        ) from exc
    return served


class Champion:
    """The version of a model being served, following the registry's `champion` alias.

    Parameters
    ----------
    model : ModelConfig
        The model; `registry_name` is looked up in the registry.
    refresh_seconds : float
        How often `watch` looks at the alias.
    on_load_failure : callable, optional
        Called with (version, reason) when a version fails to load.
    """

    def __init__(self, model: ModelConfig, refresh_seconds: float,
                 on_load_failure: Callable[[str, str], None] | None = None):
        self.model = model
        self.refresh_seconds = refresh_seconds
        self._on_load_failure = on_load_failure or (lambda version, reason: None)
        self._current: ServedVersion | None = None
        self._retry_at: dict[str, float] = {}  # failed version -> monotonic time of the next try
        self._alias_missing = False

    @property
    def current(self) -> ServedVersion:
        """The version serving now (read once per request)."""
        if self._current is None:
            raise RuntimeError("no version loaded yet: call load_initial first")
        return self._current

    def load_initial(self) -> ServedVersion:
        """Load the version the alias names now.

        Raises
        ------
        VersionLoadError
            The model has no `champion`, or it cannot be served.
        """
        version = registry.champion_version(self.model.registry_name)
        if version is None:
            raise VersionLoadError(
                f"registered model {self.model.registry_name!r} has no `champion` alias in the registry; "
                "set one first (`python -m modelwatch simulate` does)"
            )
        self._current = load_version(self.model, version)
        return self._current

    def refresh(self) -> str | None:
        """Look at the alias once; load and swap in the version it names if that is new.

        Returns
        -------
        str or None
            The version swapped in, or None when nothing changed (same version, no alias,
            or a load that failed and keeps the old version serving).
        """
        serving = self.current.version
        version = registry.champion_version(self.model.registry_name)
        if version is None:
            if not self._alias_missing:
                log.warning("the registry names no champion of %s (alias removed or registry unreachable); "
                            "keeps serving version %s", self.model.registry_name, serving)
            self._alias_missing = True
            return None
        self._alias_missing = False
        if version == serving or time.monotonic() < self._retry_at.get(version, 0.0):
            return None
        try:
            loaded = load_version(self.model, version)
        except VersionLoadError as exc:
            self._retry_at[version] = time.monotonic() + max(self.refresh_seconds, FAILED_RETRY_SECONDS)
            log.warning("%s; keeps serving version %s", exc, serving)
            self._on_load_failure(version, str(exc))
            return None
        self._current = loaded  # one reference assignment: requests see the old version or the new one
        self._retry_at.pop(version, None)
        log.info("now serving version %s of %s (was %s)", version, self.model.registry_name, serving)
        return version

    def watch(self, stop: threading.Event) -> None:
        """Refresh every `refresh_seconds` until `stop` is set; a failing lookup is logged, never raised."""
        while not stop.wait(self.refresh_seconds):
            try:
                self.refresh()
            except Exception:  # the registry may be down for a while; serving goes on
                log.exception("could not look up the champion of %s; keeps serving version %s",
                              self.model.registry_name, self.current.version)

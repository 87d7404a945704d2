"""One block of traffic served by a model: requests, errors, latency and predictions.

Every block draws from its own random stream, keyed by seed, model, day and
block, so a block is the same whichever blocks were generated before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Protocol

import numpy as np

from modelwatch.config import ModelConfig
from modelwatch.simulation import traffic
from modelwatch.simulation.incidents import BASE_ERROR_RATE, DayEffects, apply_drift
from modelwatch.simulation.records import Batch, request_ids
from modelwatch.simulation.training import ServedModel, serve
from modelwatch.simulation.worlds import World, pick, stable_hash

ERROR_TYPES = ["UpstreamError", "Timeout", "InvalidInput", "OOM"]
ERROR_SHARE = [0.50, 0.25, 0.15, 0.10]
FEATURELESS_ERRORS = ("Timeout", "OOM")
TIMEOUT_MS = 2000.0


class Corruption(Protocol):
    """Bad records written into a block (see `quality`)."""

    def inputs(self, batch: Batch) -> None: ...

    def outputs(self, batch: Batch) -> None: ...


@dataclass(frozen=True)
class ModelRun:
    """What every block of one model's simulation shares."""

    model: ModelConfig
    world: World
    seed: int

    def stream(self, day: date, *parts: int) -> np.random.Generator:
        """The random stream of (seed, model, day, parts)."""
        return np.random.default_rng(
            [self.seed, stable_hash(self.model.name), day.toordinal(), *parts]
        )


def one_of(values: np.ndarray, names: tuple[str, ...] | list[str]) -> np.ndarray:
    """Element-wise membership for object arrays that may hold None."""
    found = np.zeros(len(values), dtype=bool)
    for name in names:
        found |= values == name
    return found


def draw_errors(rng: np.random.Generator, n: int, effects: DayEffects) -> np.ndarray:
    """The error type of each request (None when it was answered)."""
    failed = rng.random(n) < effects.error_rate
    kinds = pick(rng, ERROR_TYPES, ERROR_SHARE, n)
    if effects.burst_error is not None:
        burst_share = (effects.error_rate - BASE_ERROR_RATE) / effects.error_rate
        kinds = np.where(rng.random(n) < burst_share, effects.burst_error, kinds)
    return np.where(failed, kinds, None)


def draw_latency(
    rng: np.random.Generator,
    world: World,
    minute: np.ndarray,
    error: np.ndarray,
    effects: DayEffects,
) -> np.ndarray:
    """Latency in ms: the world's profile, slower under load, during a spike and on errors."""
    latency = world.latency(rng, traffic.load(minute)) * effects.latency_factor
    latency = np.where(error == "OOM", latency * 3, latency)
    latency = np.where(one_of(error, ["UpstreamError", "InvalidInput"]), latency * 0.6, latency)
    timeout = TIMEOUT_MS + rng.exponential(40.0, len(minute))
    return np.round(np.where(error == "Timeout", timeout, latency), 2)


def draw_inputs(run: ModelRun, rng: np.random.Generator, minute: np.ndarray,
                  effects: DayEffects) -> tuple[dict, dict, np.ndarray]:
    """Features, context and true outcome of requests at the given minutes of the day, the day's drift applied."""
    model, world = run.model, run.world
    features = world.sample(rng, minute)
    for incident, level in effects.drifts:
        apply_drift(model, features, incident, level, world.default_drift_feature, rng)
    features = world.round_features(features)
    context = world.context(rng, features)
    return features, context, world.target(rng, features, context, effects.concept)


def serve_block(
    run: ModelRun,
    day: date,
    block: traffic.Block,
    effects: DayEffects,
    served: ServedModel,
    corruption: Corruption | None = None,
) -> Batch:
    """Generate, serve and log one block of requests of `day`."""
    rng = run.stream(day, block.index)
    model, world = run.model, run.world
    offsets = traffic.draw_times(rng, block) if block.count else np.zeros(0, np.int64)
    minute = offsets // traffic.MS_PER_MINUTE
    features, context, truth = draw_inputs(run, rng, minute, effects)
    error = draw_errors(rng, block.count, effects)
    ok = np.equal(error, None)
    batch = Batch(
        request_id=request_ids(day, block.index, np.arange(block.count)),
        time_ms=traffic.day_start_ms(day) + offsets,
        model_name=np.full(block.count, model.name, dtype=object),
        model_version=served.version,
        features=features,
        empty_features=one_of(error, FEATURELESS_ERRORS),
        context=context,
        ok=ok,
        error=error,
        prediction=np.zeros(block.count),
        score=np.zeros(block.count) if model.task == "binary_classification" else None,
        latency=draw_latency(rng, world, minute, error, effects),
        truth=truth,
    )
    if corruption is not None:
        corruption.inputs(batch)
    answered = {name: values[ok] for name, values in batch.features.items()}
    prediction, score = serve(model, served.pipeline, answered)
    batch.prediction[ok] = prediction
    if score is not None:
        batch.score[ok] = score
    if corruption is not None:
        corruption.outputs(batch)
    return batch

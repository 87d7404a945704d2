"""Record tables in the log contract's shape, built from a block's arrays.

Prediction columns, in this order: request_id, timestamp, model_name,
model_version, features (struct), prediction, score (binary classification
only), latency_ms, status, error, context (struct; left out when the model has
no context keys). Feedback columns:
request_id, label, label_timestamp. Timestamps are `timestamp[ms, UTC]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelwatch.config import ModelConfig
from modelwatch.simulation.worlds import Arrays

TIMESTAMP = pa.timestamp("ms", tz="UTC")
_ARROW_TYPES = {"numeric": pa.float64(), "categorical": pa.string(), "boolean": pa.bool_()}


def _padded(values: np.ndarray, width: int) -> pa.Array:
    return pc.utf8_lpad(pc.cast(pa.array(values, pa.int64()), pa.string()), width, "0")


def request_ids(day: date, block: int | np.ndarray, sequence: np.ndarray) -> pa.Array:
    """Ids `req-YYYYMMDD-BB-NNNNNNN`: unique per day, block and position in the block."""
    blocks = _padded(np.broadcast_to(block, np.shape(sequence)), 2)
    return pc.binary_join_element_wise(f"req-{day:%Y%m%d}-", blocks, "-", _padded(sequence, 7), "")


@dataclass
class Batch:
    """One block of served requests, before serialization.

    `features` holds what the serving system logged (incidents included);
    `truth` is the real outcome, used for feedback only. `empty_features` marks
    error records logged with `features: {}`.
    """

    request_id: pa.Array
    time_ms: np.ndarray
    model_name: np.ndarray
    model_version: str
    features: Arrays
    empty_features: np.ndarray
    context: Arrays
    ok: np.ndarray
    error: np.ndarray
    prediction: np.ndarray
    score: np.ndarray | None
    latency: np.ndarray
    truth: np.ndarray

    def __len__(self) -> int:
        return len(self.time_ms)

    def take(self, rows: np.ndarray) -> Batch:
        """The batch restricted to `rows` (indices), in that order."""
        return Batch(
            request_id=self.request_id.take(pa.array(rows, pa.int64())),
            time_ms=self.time_ms[rows],
            model_name=self.model_name[rows],
            model_version=self.model_version,
            features={name: values[rows] for name, values in self.features.items()},
            empty_features=self.empty_features[rows],
            context={key: values[rows] for key, values in self.context.items()},
            ok=self.ok[rows],
            error=self.error[rows],
            prediction=self.prediction[rows],
            score=None if self.score is None else self.score[rows],
            latency=self.latency[rows],
            truth=self.truth[rows],
        )


def _column(values: np.ndarray, kind: pa.DataType) -> pa.Array:
    """An Arrow column; NaN becomes null in feature columns (a missing value)."""
    return pa.array(values, kind, from_pandas=True)


def features_struct(model: ModelConfig, features: Arrays, empty: np.ndarray) -> pa.StructArray:
    """The `features` column: one field per configured feature; null where logged as `{}`."""
    children = [_column(features[f.name], _ARROW_TYPES[f.type]) for f in model.features]
    return pa.StructArray.from_arrays(
        children, names=[f.name for f in model.features], mask=pa.array(empty, pa.bool_())
    )


def context_struct(context: Arrays) -> pa.StructArray:
    return pa.StructArray.from_arrays(
        [pa.array(values, pa.string()) for values in context.values()], names=list(context)
    )


def prediction_table(model: ModelConfig, batch: Batch) -> pa.Table:
    """The block's prediction records as a table in contract order."""
    failed = ~batch.ok
    columns = {
        "request_id": batch.request_id,
        "timestamp": pa.array(batch.time_ms, pa.int64()).cast(TIMESTAMP),
        "model_name": pa.array(batch.model_name, pa.string()),
        "model_version": pa.array(
            np.full(len(batch), batch.model_version, dtype=object), pa.string()
        ),
        "features": features_struct(model, batch.features, batch.empty_features),
        "prediction": pa.array(batch.prediction, pa.float64(), mask=failed),
    }
    if batch.score is not None:
        columns["score"] = pa.array(batch.score, pa.float64(), mask=failed)
    columns["latency_ms"] = pa.array(batch.latency, pa.float64())
    columns["status"] = pa.array(np.where(batch.ok, "ok", "error").astype(object), pa.string())
    columns["error"] = pa.array(batch.error, pa.string())
    if batch.context:
        columns["context"] = context_struct(batch.context)
    return pa.table(columns)


def feedback_table(request_id: pa.Array, label: np.ndarray, label_time_ms: np.ndarray) -> pa.Table:
    """Feedback records: the request, its true outcome and when the outcome became known."""
    return pa.table(
        {
            "request_id": request_id,
            "label": pa.array(label, pa.float64()),
            "label_timestamp": pa.array(label_time_ms, pa.int64()).cast(TIMESTAMP),
        }
    )

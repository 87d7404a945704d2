"""The body of `POST /predict`, checked against the model's configured features.

A request is a JSON object::

    {"request_id": "a1f3",                       # optional; generated when absent
     "features": {"income": 52000, "age": 41, "country": "DE", "has_card": true},
     "context": {"channel": "web"}}              # optional; keys from the model's `context`

Every configured feature must be given, and no other; a value may be null (a
missing value, which the pipeline imputes). Types follow the models file:
numeric features take numbers, boolean features `true`/`false`, categorical
features strings. Ranges and allowed values are not enforced: serving an
unusual value and letting the monitoring flag it is the point of ModelWatch.
Text is held to the log contract's bounds, so that every answered request is
logged as a record the reader keeps rather than quarantines.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelwatch import batch
from modelwatch.config import FeatureConfig, ModelConfig

MAX_BODY_BYTES = 64 * 1024
"""A larger body is refused unread (413): a request carries one row of features."""

_FIELDS = ("request_id", "features", "context")
_SHOWN_CHARS = 40  # of a bad value echoed in an error message


class InvalidRequest(ValueError):
    """The body cannot be served; `problems` says why, one entry per problem.

    Parameters
    ----------
    problems : list of str
        Each names the field and what was expected, e.g.
        ``features.age: expected a number or null (got 'old')``.
    status_code : int
        The HTTP status to answer with: 400 for a body that is not a JSON object,
        413 for one too large, 422 for an object whose fields are wrong.
    request_id : str, optional
        The body's `request_id`, when it gave a valid one.
    """

    def __init__(self, problems: list[str], status_code: int = 422, request_id: str | None = None):
        super().__init__("; ".join(problems))
        self.problems = problems
        self.status_code = status_code
        self.request_id = request_id


@dataclass(frozen=True)
class PredictionRequest:
    """A checked request: its id, and its features and context as they will be logged."""

    request_id: str
    features: dict[str, Any]
    context: dict[str, str] = field(default_factory=dict)


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…"


def _text_problem(name: str, value: Any, limit: int = batch.MAX_TEXT_CHARS) -> str | None:
    """Why `value` cannot be logged as the text field `name`, or None when it can."""
    if not isinstance(value, str):
        return f"{name}: expected a string (got {_shown(value)})"
    if not value:
        return f"{name}: expected a non-empty string"
    if len(value) > limit:
        return f"{name}: expected at most {limit} characters (got {len(value)})"
    if not batch.is_safe_text(value):
        return f"{name}: expected text without NUL or unpaired surrogates"
    return None


def _feature_problem(feature: FeatureConfig, value: Any) -> str | None:
    """Why `value` is not a valid value of `feature`, or None when it is."""
    name = f"features.{feature.name}"
    if value is None:
        return None
    if feature.type == "numeric":
        # bool is an int in Python, but `true` is no number in the contract.
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{name}: expected a number or null (got {_shown(value)})"
        try:
            finite = math.isfinite(float(value))
        except OverflowError:  # an integer beyond the range of a double
            finite = False
        return None if finite else f"{name}: expected a finite number (got {_shown(value)})"
    if feature.type == "boolean":
        return None if isinstance(value, bool) else f"{name}: expected true, false or null (got {_shown(value)})"
    return _text_problem(name, value)


def _reject_constant(constant: str) -> None:
    raise ValueError(f"{constant} is not a JSON number")


def _decode(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or InvalidRequest (400/413)."""
    if len(body) > MAX_BODY_BYTES:
        raise InvalidRequest([f"body: expected at most {MAX_BODY_BYTES} bytes (got {len(body)})"], 413)
    try:
        # NaN and Infinity are Python's extensions of JSON; the contract has no such numbers.
        decoded = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise InvalidRequest([f"body: expected a JSON object ({exc})"], 400) from None
    if not isinstance(decoded, dict):
        raise InvalidRequest([f"body: expected a JSON object (got {type(decoded).__name__})"], 400)
    return decoded


def _features_problems(model: ModelConfig, features: Any) -> list[str]:
    if not isinstance(features, dict):
        return [f"features: expected an object of feature name to value (got {_shown(features)})"]
    configured = [f.name for f in model.features]
    problems = []
    missing = [name for name in configured if name not in features]
    if missing:
        problems.append(f"features: missing {missing} (give null for a missing value)")
    unknown = sorted(name for name in features if name not in configured)
    if unknown:
        problems.append(f"features: unknown {', '.join(map(_shown, unknown))}; expected {configured}")
    problems += filter(None, (_feature_problem(f, features[f.name]) for f in model.features if f.name in features))
    return problems


def _context_problems(model: ModelConfig, context: Any) -> list[str]:
    if not isinstance(context, dict):
        return [f"context: expected an object of key to string (got {_shown(context)})"]
    unknown = sorted(key for key in context if key not in model.context)
    problems = [f"context: unknown {', '.join(map(_shown, unknown))}; expected some of {model.context}"] if (
        unknown) else []
    problems += filter(None, (_text_problem(f"context.{key}", value) for key, value in context.items()
                              if key in model.context))
    return problems


def parse_request(model: ModelConfig, body: bytes, new_request_id) -> PredictionRequest:
    """Check a `POST /predict` body against `model`.

    Parameters
    ----------
    model : ModelConfig
        Gives the features (names and types) and the context keys.
    body : bytes
        The request body as received.
    new_request_id : callable
        Returns a fresh request id, used when the body names none.

    Returns
    -------
    PredictionRequest
        The request id and the checked features and context.

    Raises
    ------
    InvalidRequest
        Naming every problem found, with the HTTP status to answer.
    """
    decoded = _decode(body)
    problems = [f"{_shown(name)}: unknown field; expected some of {list(_FIELDS)}"
                for name in decoded if name not in _FIELDS]
    request_id = decoded.get("request_id")
    if request_id is not None and (problem := _text_problem("request_id", request_id)):
        problems.append(problem)
        request_id = None
    if "features" not in decoded:
        problems.append("features: missing; expected an object of feature name to value")
    else:
        problems += _features_problems(model, decoded["features"])
    context = {} if decoded.get("context") is None else decoded["context"]
    problems += _context_problems(model, context)
    if problems:
        raise InvalidRequest(problems, request_id=request_id)
    return PredictionRequest(request_id or new_request_id(), decoded["features"], context)


def input_arrays(model: ModelConfig, features: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """One-row arrays per feature, as `modelwatch.model_input.model_frame` takes them.

    Numeric and boolean values become floats (booleans 0/1, null NaN);
    categorical values stay strings (null None).
    """
    arrays = {}
    for feature in model.features:
        value = features[feature.name]
        if feature.type == "categorical":
            arrays[feature.name] = np.array([value], dtype=object)
        else:
            arrays[feature.name] = np.array([np.nan if value is None else float(value)])
    return arrays

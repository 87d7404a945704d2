"""Feature and prediction drift of one interval against a reference.

What is monitored
    Every configured feature, plus two pseudo-features: ``@prediction``
    (``prediction_value`` as a number for regression; the ``prediction``
    labels as categories for classification) and ``@score`` (classification).
    Only answered rows (``status == "ok"``) count; nulls and non-finite
    numbers are left out of the distributions and counted as nulls.

Profiles and references
    `profile_features` summarises one interval per feature: exact counts and
    moments, plus a deterministic uniform sample of the numeric values or
    the exact category counts, stored as JSON text. `reference_from_profiles`
    pools several profiles (samples concatenated, counts summed), so the
    reference of a trailing window costs no re-read of old logs, and profiles
    of row chunks of one interval pool the same way (each chunk's sample
    counts equally, so chunks should be of similar size).
    `reference_from_frame` profiles a reference dataset directly.

Tests per feature
    Numeric: the population stability index (PSI) on `model.drift.bins` bins
    cut at the reference sample's quantiles (method ``psi``) and the
    two-sample Kolmogorov-Smirnov test (method ``ks``). PSI uses every
    current value; KS uses a deterministic uniform subsample of at most
    ``test_sample_size`` current values, which keeps it fast on 10M rows and
    keeps its p-value about differences large enough to matter rather than
    about sample size. A Wasserstein distance would add a third effect size
    with no role in the decision, since PSI already measures effect size, so
    none is computed. Categorical and boolean: PSI over categories (a
    category absent from the reference gets `PSI_EPSILON` reference mass and
    is counted in ``unseen_categories``) and Pearson's chi-square test of
    homogeneity on the reference and current counts (method ``chi2``,
    without continuity correction).

Decision
    The p-values of all monitored features are adjusted together with
    Benjamini-Hochberg. A feature drifted when its PSI exceeds its threshold
    (``feature.drift_threshold``, else ``model.drift.psi_threshold``) *and*
    its adjusted p-value is below ``model.drift.p_value``: a chance p-value
    among many features does not alarm, nor does a negligible shift that a
    huge sample makes significant. Both rows of a feature carry that
    decision in ``drifted``; each row's ``threshold`` is that of its own
    statistic (PSI threshold, or the p-value level). The interval drifted
    when at least ``model.drift.min_drifted_features`` input features did.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from modelwatch import batch
from modelwatch.config import ModelConfig
from modelwatch.metrics import float_values, normalize_interval, ok_rows, require_columns

PREDICTION = "@prediction"
SCORE = "@score"
FEATURE_TYPES = ("numeric", "categorical", "boolean")
PSI_EPSILON = 1e-4
PROFILE_SAMPLE_SIZE = 2_000
REFERENCE_SAMPLE_SIZE = 10_000
TEST_SAMPLE_SIZE = 20_000

PROFILE_COLUMNS = [
    "model_name",
    "interval_start",
    "interval_end",
    "feature",
    "feature_type",
    "row_count",
    "null_count",
    "mean",
    "std",
    "min",
    "max",
    "profile",
]
DRIFT_COLUMNS = [
    "model_name",
    "interval_start",
    "interval_end",
    "feature",
    "method",
    "statistic",
    "p_value",
    "adjusted_p_value",
    "threshold",
    "drifted",
    "reference",
    "sample_size",
    "reference_size",
    "unseen_categories",
]


@dataclass(frozen=True)
class FeatureReference:
    """What one feature looked like in the reference.

    Attributes
    ----------
    feature : str
        Feature name (or ``@prediction`` / ``@score``).
    feature_type : {"numeric", "categorical", "boolean"}
    sample : numpy.ndarray
        Numeric reference values (empty for other types).
    counts : mapping of str to int
        Category counts (empty for numeric features).
    """

    feature: str
    feature_type: str
    sample: np.ndarray = field(default_factory=lambda: np.empty(0))
    counts: Mapping[str, int] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Number of reference values."""
        if self.feature_type == "numeric":
            return len(self.sample)
        return int(sum(self.counts.values()))


@dataclass(frozen=True)
class Reference:
    """The reference distributions of a model's monitored features."""

    features: Mapping[str, FeatureReference] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        """True when no feature has a single reference value."""
        return all(f.size == 0 for f in self.features.values())


@dataclass(frozen=True)
class DriftVerdict:
    """The interval-level drift decision.

    Attributes
    ----------
    drifted : bool
        At least ``model.drift.min_drifted_features`` input features drifted.
    drifted_features : list of str
        Input features (pseudo-features excluded) that drifted.
    prediction_drift : bool
        ``@prediction`` or ``@score`` drifted.
    summary : str
        One line for logs, alerts and the decision's reason.
    """

    drifted: bool
    drifted_features: list[str]
    prediction_drift: bool
    summary: str


@dataclass(frozen=True)
class _Monitored:
    name: str
    feature_type: str
    column: str
    psi_threshold: float


@dataclass(frozen=True)
class _Profile:
    feature: str
    feature_type: str
    row_count: int
    values: np.ndarray | None
    counts: dict[str, int] | None
    sample: np.ndarray | None

    @property
    def null_count(self) -> int:
        present = len(self.values) if self.values is not None else sum(self.counts.values())
        return self.row_count - present

    def reference(self) -> FeatureReference:
        if self.feature_type == "numeric":
            return FeatureReference(self.feature, "numeric", sample=self.sample)
        return FeatureReference(self.feature, self.feature_type, counts=dict(self.counts))


@dataclass(frozen=True)
class _Comparison:
    feature: str
    psi: float
    psi_threshold: float
    method: str
    statistic: float
    p_value: float
    sample_size: int
    test_sample_size: int
    reference_size: int
    unseen_categories: int | None


# ---------------------------------------------------------------------------
# public API


def monitored_columns(model: ModelConfig) -> dict[str, str]:
    """Each monitored feature or pseudo-feature (``@prediction``, ``@score``) and its staged column."""
    return {item.name: item.column for item in _monitored_items(model)}


def psi(reference_counts: Sequence[float], current_counts: Sequence[float]) -> float:
    """Population stability index of two histograms over the same bins.

    ``sum((c - r) * ln(c / r))`` over bins, where ``r`` and ``c`` are the
    reference and current shares; an empty bin's share is `PSI_EPSILON`.

    Parameters
    ----------
    reference_counts, current_counts : sequence of float
        Counts per bin, same length, each with a positive total.
    """
    reference = np.asarray(reference_counts, dtype=float)
    current = np.asarray(current_counts, dtype=float)
    if reference.shape != current.shape or reference.sum() <= 0 or current.sum() <= 0:
        raise ValueError(
            "psi: expected two count vectors of one length, each with a positive total"
        )
    r = reference / reference.sum()
    c = current / current.sum()
    r = np.where(r > 0, r, PSI_EPSILON)
    c = np.where(c > 0, c, PSI_EPSILON)
    return float(np.sum((c - r) * np.log(c / r)))


def profile_features(
    predictions: pd.DataFrame,
    model: ModelConfig,
    interval_start: datetime | str,
    interval_end: datetime | str,
    sample_size: int = PROFILE_SAMPLE_SIZE,
    seed: int = 0,
    *,
    features: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Summarise each monitored feature of one interval's answered rows.

    Parameters
    ----------
    predictions : DataFrame
        Staged predictions; reads ``status`` and `monitored_columns` (``@prediction`` and
        ``@score`` only when their column is present).
    model : ModelConfig
        Gives the features and their types.
    interval_start, interval_end : datetime
        Written to the rows (``end > start``).
    sample_size : int
        Most numeric values kept per feature in the profile.
    seed : int
        Seed of the deterministic sample (the same data gives the same sample).
    features : sequence of str, optional
        Profile only these (to work on a subset of columns); default all.

    Returns
    -------
    DataFrame
        `PROFILE_COLUMNS`, one row per feature. ``mean``, ``std`` (ddof=1),
        ``min`` and ``max`` are exact over the interval for numeric features
        and None otherwise. ``profile`` is JSON: ``{"sample": [...]}`` for
        numeric features, ``{"counts": {value: n}}`` otherwise.
    """
    start, end = normalize_interval(interval_start, interval_end)
    _check_sample_size(sample_size)
    require_columns(predictions, ["status"], "profile_features: predictions")
    ok = ok_rows(predictions)
    items = _monitored(model, predictions.columns, "profile_features", features)
    profiles = [_profile(predictions, ok, item, sample_size, seed) for item in items]
    rows = [_profile_row(p) for p in profiles]
    nullable = {"mean", "std", "min", "max"}
    return _frame(model.name, start, end, rows, PROFILE_COLUMNS, nullable=nullable)


def reference_from_profiles(profiles: pd.DataFrame) -> Reference:
    """Pool stored profiles (several intervals or chunks) into one reference.

    Numeric samples are concatenated and category counts summed. When a
    feature's type changed over the profiles, only the profiles of its most
    recent type (by ``interval_end``, when present) are pooled.

    Parameters
    ----------
    profiles : DataFrame
        Rows as returned by `profile_features`; needs ``feature``,
        ``feature_type`` and ``profile``.

    Returns
    -------
    Reference
        Empty (``is_empty``) when `profiles` has no rows.
    """
    require_columns(
        profiles,
        ["feature", "feature_type", "profile"],
        "reference_from_profiles",
        "rows as returned by profile_features",
    )
    unknown = sorted(set(profiles["feature_type"]) - set(FEATURE_TYPES))
    if unknown:
        raise ValueError(
            f"reference_from_profiles: feature_type must be one of {FEATURE_TYPES} (got {unknown})"
        )
    if "interval_end" in profiles.columns:
        profiles = profiles.sort_values("interval_end", kind="stable")
    features = {}
    for name, rows in profiles.groupby("feature", sort=False):
        kind = rows["feature_type"].iloc[-1]
        texts = rows.loc[rows["feature_type"] == kind, "profile"]
        parsed = [_parse_profile(text, name) for text in texts]
        if kind == "numeric":
            sample = np.concatenate([np.asarray(p.get("sample", []), dtype=float) for p in parsed])
            features[name] = FeatureReference(name, kind, sample=sample)
        else:
            counts: dict[str, int] = {}
            for p in parsed:
                for category, n in p.get("counts", {}).items():
                    counts[category] = counts.get(category, 0) + int(n)
            features[name] = FeatureReference(name, kind, counts=counts)
    return Reference(features)


def reference_from_frame(
    frame: pd.DataFrame,
    model: ModelConfig,
    sample_size: int = REFERENCE_SAMPLE_SIZE,
    seed: int = 0,
) -> Reference:
    """Build a reference from a reference dataset (e.g. the training set).

    Parameters
    ----------
    frame : DataFrame
        One column per configured feature, named either like the feature
        (``income``) or like the staged column (``feature__income``).
        Optional: ``prediction`` and ``score`` (classification) or
        ``prediction_value`` / numeric ``prediction`` (regression) for the
        pseudo-features, and ``status`` (only ``"ok"`` rows are used).
    model : ModelConfig
        Gives the features and their types.
    sample_size : int
        Most numeric values kept per feature.
    seed : int
        Seed of the deterministic sample.

    Returns
    -------
    Reference
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(
            f"reference_from_frame: expected a pandas DataFrame (got {type(frame).__name__})"
        )
    _check_sample_size(sample_size)
    renames = {}
    missing = []
    for feature in model.features:
        staged = batch.feature_column(feature.name)
        if staged not in frame.columns:
            if feature.name in frame.columns:
                renames[feature.name] = staged
            else:
                missing.append(feature.name)
    if missing:
        raise ValueError(
            f"reference_from_frame: model {model.name!r} features {missing} are missing; expected "
            "a column per feature named like the feature or with the 'feature__' prefix"
        )
    columns = set(frame.columns)
    if model.task == "regression" and "prediction" in columns and "prediction_value" not in columns:
        renames["prediction"] = "prediction_value"
    frame = frame.rename(columns=renames)
    ok = ok_rows(frame) if "status" in frame.columns else None
    items = _monitored(model, frame.columns, "reference_from_frame")
    profiles = [_profile(frame, ok, item, sample_size, seed) for item in items]
    return Reference({p.feature: p.reference() for p in profiles})


def detect_drift(
    predictions: pd.DataFrame,
    reference: Reference,
    model: ModelConfig,
    interval_start: datetime | str,
    interval_end: datetime | str,
    reference_label: str,
    *,
    test_sample_size: int = TEST_SAMPLE_SIZE,
    seed: int = 0,
) -> tuple[pd.DataFrame, DriftVerdict]:
    """Compare one interval's answered rows with the reference, feature by feature.

    Parameters
    ----------
    predictions : DataFrame
        Staged predictions; reads ``status`` and `monitored_columns`.
    reference : Reference
        From `reference_from_profiles` or `reference_from_frame`.
    model : ModelConfig
        Gives the features, their PSI thresholds and ``model.drift``.
    interval_start, interval_end : datetime
        Written to the rows (``end > start``).
    reference_label : str
        What the reference is (e.g. ``"trailing 7 intervals"`` or a dataset
        URL); written to the ``reference`` column.
    test_sample_size : int
        Most current values the KS test uses.
    seed : int
        Seed of the KS subsample.

    Returns
    -------
    rows : DataFrame
        `DRIFT_COLUMNS`, two rows per compared feature (``psi`` and ``ks``
        or ``chi2``); no rows when the reference is empty. A feature is left
        out (and named in the summary) when the reference or the interval
        has no values for it, or its type changed since the reference.
    verdict : DriftVerdict
    """
    start, end = normalize_interval(interval_start, interval_end)
    if not isinstance(reference, Reference):
        raise TypeError(f"detect_drift: expected a Reference (got {type(reference).__name__})")
    _check_sample_size(test_sample_size)
    require_columns(predictions, ["status"], "detect_drift: predictions")
    items = _monitored(model, predictions.columns, "detect_drift")
    if reference.is_empty:
        verdict = DriftVerdict(False, [], False, f"no reference yet ({reference_label})")
        return _frame(model.name, start, end, [], DRIFT_COLUMNS, nullable=set()), verdict
    ok = ok_rows(predictions)
    comparisons, skipped = [], []
    for item in items:
        known = reference.features.get(item.name)
        if known is None or known.size == 0:
            skipped.append(f"{item.name} (no reference values)")
        elif known.feature_type != item.feature_type:
            skipped.append(f"{item.name} (type changed from {known.feature_type})")
        else:
            current = _profile(predictions, ok, item)
            if current.row_count == current.null_count:
                skipped.append(f"{item.name} (no values this interval)")
            elif item.feature_type == "numeric":
                comparisons.append(
                    _compare_numeric(
                        item, current.values, known, model.drift.bins, test_sample_size, seed
                    )
                )
            else:
                comparisons.append(_compare_categories(item, current.counts, known))
    adjusted = _adjust(comparisons)
    level = model.drift.p_value
    drifted = {
        c.feature
        for c, q in zip(comparisons, adjusted, strict=True)
        if c.psi > c.psi_threshold and q < level
    }
    rows = _drift_rows(comparisons, adjusted, drifted, level, reference_label)
    nullable = {"p_value", "adjusted_p_value", "unseen_categories"}
    frame = _frame(model.name, start, end, rows, DRIFT_COLUMNS, nullable=nullable)
    return frame, _verdict(model, comparisons, drifted, skipped, reference_label)


# ---------------------------------------------------------------------------
# monitored columns and profiles


def _monitored_items(model: ModelConfig) -> list[_Monitored]:
    threshold = model.drift.psi_threshold
    items = [
        _Monitored(f.name, f.type, batch.feature_column(f.name), f.drift_threshold or threshold)
        for f in model.features
    ]
    if model.task == "binary_classification":
        items += [
            _Monitored(PREDICTION, "categorical", "prediction", threshold),
            _Monitored(SCORE, "numeric", "score", threshold),
        ]
    else:
        items.append(_Monitored(PREDICTION, "numeric", "prediction_value", threshold))
    return items


def _monitored(
    model: ModelConfig, columns: pd.Index, what: str, names: Sequence[str] | None = None
) -> list[_Monitored]:
    """Items to watch: configured features (required) and pseudo-features present."""
    items = _monitored_items(model)
    if names is not None:
        wanted = set(names)
        unknown = sorted(wanted - {item.name for item in items})
        if unknown:
            raise ValueError(
                f"{what}: unknown features {unknown}; model {model.name!r} monitors "
                f"{[item.name for item in items]}"
            )
        items = [item for item in items if item.name in wanted]
    missing = [i.column for i in items if i.column not in columns and not i.name.startswith("@")]
    if missing:
        raise ValueError(
            f"{what}: missing feature columns {missing}; expected the staged prediction columns "
            "of modelwatch.batch.prediction_schema (or pass features=[...] to use a subset)"
        )
    return [item for item in items if item.column in columns]


def _profile(
    frame: pd.DataFrame,
    ok: np.ndarray | None,
    item: _Monitored,
    sample_size: int | None = None,
    seed: int = 0,
) -> _Profile:
    """Values (numeric) or category counts of one column's answered rows.

    With a `sample_size`, numeric values are also sampled for storage.
    """
    series = frame[item.column]
    row_count = len(series) if ok is None else int(ok.sum())
    if item.feature_type == "numeric":
        values = float_values(series, f"column {item.column!r} of numeric feature {item.name!r}")
        values = values if ok is None else values[ok]
        values = values[np.isfinite(values)]
        sample = None if sample_size is None else _sample(values, sample_size, seed, item.name)
        return _Profile(item.name, "numeric", row_count, values, None, sample)
    counts: dict[str, int] = {}
    for value, n in _value_counts(series, ok):
        if not n:  # a categorical column lists categories seen only in other rows
            continue
        category = _category(value, item.feature_type)
        counts[category] = counts.get(category, 0) + int(n)
    return _Profile(item.name, item.feature_type, row_count, None, counts, None)


def _value_counts(series: pd.Series, ok: np.ndarray | None) -> Iterable[tuple[Any, int]]:
    """(value, count) of the non-null values of the selected rows.

    A categorical column is counted from its integer codes, without first
    copying the selected rows.
    """
    if isinstance(series.dtype, pd.CategoricalDtype):
        codes = series.cat.codes.to_numpy()
        if ok is not None:
            codes = codes[ok]
        counts = np.bincount(codes[codes >= 0], minlength=len(series.cat.categories))
        return zip(series.cat.categories, counts.tolist(), strict=False)
    selected = series if ok is None else series[ok]
    return selected.value_counts(dropna=True, sort=False).items()


def _category(value: Any, feature_type: str) -> str:
    """Canonical text of a category: booleans as true/false, 1.0 as 1."""
    if feature_type == "boolean":
        return str(value).lower() if isinstance(value, str) else ("true" if value else "false")
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _sample(values: np.ndarray, size: int, seed: int, name: str) -> np.ndarray:
    """A deterministic uniform sample, in row order, of at most `size` values."""
    if len(values) <= size:
        return values
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    return values[np.sort(rng.choice(len(values), size=size, replace=False))]


def _profile_row(profile: _Profile) -> dict[str, Any]:
    row = {
        "feature": profile.feature,
        "feature_type": profile.feature_type,
        "row_count": profile.row_count,
        "null_count": profile.null_count,
        "mean": None,
        "std": None,
        "min": None,
        "max": None,
    }
    if profile.feature_type == "numeric":
        values = profile.values
        if len(values):
            row.update(mean=float(values.mean()), min=float(values.min()), max=float(values.max()))
        if len(values) > 1:
            row["std"] = float(values.std(ddof=1))
        row["profile"] = json.dumps({"sample": profile.sample.tolist()})
    else:
        row["profile"] = json.dumps({"counts": profile.counts}, sort_keys=True)
    return row


def _parse_profile(text: Any, feature: str) -> dict[str, Any]:
    try:
        parsed = json.loads(text)
    except (TypeError, ValueError):
        parsed = None
    if not isinstance(parsed, dict):
        raise ValueError(
            f"reference_from_profiles: profile of {feature!r} is not a JSON object "
            f"with 'sample' or 'counts' (got {str(text)[:80]!r})"
        )
    return parsed


def _check_sample_size(size: Any) -> None:
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise ValueError(f"expected a positive integer sample size (got {size!r})")


def _frame(
    model_name: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    nullable: set[str],
) -> pd.DataFrame:
    """Rows of one interval as a frame; `nullable` columns keep None (object dtype)."""
    data: dict[str, Any] = {"model_name": model_name, "interval_start": start, "interval_end": end}
    for column in columns[3:]:
        values = [row[column] for row in rows]
        data[column] = pd.Series(values, dtype=object if column in nullable or not rows else None)
    return pd.DataFrame(data, index=pd.RangeIndex(len(rows)), columns=list(columns))


# ---------------------------------------------------------------------------
# comparisons and decision


def _compare_numeric(
    item: _Monitored,
    current: np.ndarray,
    known: FeatureReference,
    bins: int,
    test_size: int,
    seed: int,
) -> _Comparison:
    """PSI on reference-quantile bins, and KS on a subsample of the current values."""
    edges = np.unique(np.quantile(known.sample, np.linspace(0, 1, bins + 1)[1:-1]))
    cells = len(edges) + 1
    reference_counts = np.bincount(np.searchsorted(edges, known.sample), minlength=cells)
    current_counts = np.bincount(np.searchsorted(edges, current), minlength=cells)
    tested = _sample(current, test_size, seed, item.name)
    ks = stats.ks_2samp(known.sample, tested)
    return _Comparison(
        feature=item.name,
        psi=psi(reference_counts, current_counts),
        psi_threshold=item.psi_threshold,
        method="ks",
        statistic=float(ks.statistic),
        p_value=float(ks.pvalue),
        sample_size=len(current),
        test_sample_size=len(tested),
        reference_size=known.size,
        unseen_categories=None,
    )


def _compare_categories(
    item: _Monitored, current: Mapping[str, int], known: FeatureReference
) -> _Comparison:
    """PSI over the union of categories, and the chi-square test of homogeneity."""
    categories = sorted(set(known.counts) | set(current))
    reference_counts = np.array([known.counts.get(c, 0) for c in categories], dtype=float)
    current_counts = np.array([current.get(c, 0) for c in categories], dtype=float)
    if len(categories) > 1:
        table = np.vstack([reference_counts, current_counts])
        chi2 = stats.chi2_contingency(table, correction=False)
        statistic, p_value = float(chi2.statistic), float(chi2.pvalue)
    else:
        statistic, p_value = 0.0, 1.0
    n = int(current_counts.sum())
    return _Comparison(
        feature=item.name,
        psi=psi(reference_counts, current_counts),
        psi_threshold=item.psi_threshold,
        method="chi2",
        statistic=statistic,
        p_value=p_value,
        sample_size=n,
        test_sample_size=n,
        reference_size=known.size,
        unseen_categories=int(((reference_counts == 0) & (current_counts > 0)).sum()),
    )


def _adjust(comparisons: Sequence[_Comparison]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values across all compared features."""
    if not comparisons:
        return []
    p_values = np.array([c.p_value for c in comparisons])
    return stats.false_discovery_control(p_values, method="bh").tolist()


def _drift_rows(
    comparisons: Sequence[_Comparison],
    adjusted: Sequence[float],
    drifted: set[str],
    level: float,
    reference_label: str,
) -> list[dict[str, Any]]:
    rows = []
    for c, q in zip(comparisons, adjusted, strict=True):
        common = {
            "feature": c.feature,
            "drifted": c.feature in drifted,
            "reference": reference_label,
            "reference_size": c.reference_size,
            "unseen_categories": c.unseen_categories,
        }
        rows.append(
            {
                **common,
                "method": "psi",
                "statistic": c.psi,
                "p_value": None,
                "adjusted_p_value": None,
                "threshold": c.psi_threshold,
                "sample_size": c.sample_size,
            }
        )
        rows.append(
            {
                **common,
                "method": c.method,
                "statistic": c.statistic,
                "p_value": c.p_value,
                "adjusted_p_value": q,
                "threshold": level,
                "sample_size": c.test_sample_size,
            }
        )
    return rows


def _verdict(
    model: ModelConfig,
    comparisons: Sequence[_Comparison],
    drifted: set[str],
    skipped: Sequence[str],
    reference_label: str,
) -> DriftVerdict:
    inputs = [c.feature for c in comparisons if not c.feature.startswith("@")]
    drifted_inputs = [name for name in inputs if name in drifted]
    prediction_drift = bool(drifted & {PREDICTION, SCORE})
    is_drift = len(drifted_inputs) >= model.drift.min_drifted_features
    listed = f" ({', '.join(drifted_inputs)})" if drifted_inputs else ""
    parts = [
        f"{'drift' if is_drift else 'no drift'}: {len(drifted_inputs)} of {len(inputs)} "
        f"features drifted{listed} against {reference_label}"
    ]
    if prediction_drift:
        parts.append("prediction drift (" + ", ".join(sorted(drifted & {PREDICTION, SCORE})) + ")")
    if skipped:
        parts.append("not compared: " + ", ".join(skipped))
    return DriftVerdict(is_drift, drifted_inputs, prediction_drift, "; ".join(parts))

"""Quality metrics, system KPIs and the label join, checked against scikit-learn and numpy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from modelwatch import metrics
from modelwatch.batch import ALL
from modelwatch.config import ModelConfig

START, END = "2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z"

pytestmark = pytest.mark.filterwarnings("error")


def _model(task: str) -> ModelConfig:
    return ModelConfig(
        name="m",
        task=task,
        features=[
            {"name": "x", "type": "numeric"},
            {"name": "country", "type": "categorical"},
        ],
        context=["channel"],
        segments=["country", "channel"],
    )


def _served(n: int, seed: int) -> pd.DataFrame:
    """Staged-like predictions: two versions, error rows, null segment values."""
    rng = np.random.default_rng(seed)
    served_at = pd.Timestamp(START) + pd.to_timedelta(rng.integers(0, 86_400_000, n), "ms")
    status = np.where(rng.random(n) < 0.08, "error", "ok")
    error = np.where(status == "error", rng.choice(["Timeout", "OOM"], n), None)
    country = rng.choice(["DE", "FR", "ES"], n).astype(object)
    country[rng.random(n) < 0.05] = None
    return pd.DataFrame(
        {
            "request_id": [f"r{i}" for i in range(n)],
            "timestamp": served_at,
            "model_version": rng.choice(["3", "4"], n, p=[0.7, 0.3]),
            "status": status,
            "error": error,
            "latency_ms": rng.gamma(2.0, 10.0, n),
            "feature__x": rng.normal(size=n),
            "feature__country": pd.Series(country, dtype="str"),
            "context__channel": rng.choice(["web", "app"], n),
        }
    )


def _classification(n: int = 6000, seed: int = 0) -> pd.DataFrame:
    frame = _served(n, seed)
    rng = np.random.default_rng(seed + 1)
    truth = rng.random(n) < 0.35
    score = np.clip(rng.normal(0.3 + 0.35 * truth, 0.2), 0, 1).round(2)  # rounding makes ties
    error = frame["status"] == "error"
    labeled = rng.random(n) < 0.6
    frame["prediction"] = pd.Series(np.where(score >= 0.5, "1", "0"), dtype="str").mask(error)
    frame["prediction_value"] = (score >= 0.5).astype(float)
    frame.loc[error, "prediction_value"] = np.nan
    frame["score"] = np.where(error, np.nan, score)
    frame["label"] = pd.Series(np.where(truth, "1", "0"), dtype="str").where(labeled)
    frame["label_value"] = np.where(labeled, truth.astype(float), np.nan)
    return frame


def _regression(n: int = 6000, seed: int = 0) -> pd.DataFrame:
    frame = _served(n, seed)
    rng = np.random.default_rng(seed + 1)
    truth = rng.gamma(3.0, 10.0, n).round()
    truth[rng.random(n) < 0.05] = 0.0  # zero labels, left out of mape
    predicted = truth + rng.normal(0, 5, n)
    error = (frame["status"] == "error").to_numpy()
    labeled = rng.random(n) < 0.6
    frame["prediction"] = pd.Series(predicted.astype(str), dtype="str").mask(error)
    frame["prediction_value"] = np.where(error, np.nan, predicted)
    frame["score"] = np.nan
    frame["label"] = pd.Series(truth.astype(str), dtype="str").where(labeled)
    frame["label_value"] = np.where(labeled, truth, np.nan)
    return frame


def _groups(frame: pd.DataFrame) -> dict[tuple[str, str], pd.DataFrame]:
    """Every (model_version, segment) group quality_metrics reports, by plain pandas."""
    groups = {(ALL, ALL): frame}
    for version, rows in frame.groupby("model_version"):
        groups[(version, ALL)] = rows
    for key, column in (("country", "feature__country"), ("channel", "context__channel")):
        values = frame[column].fillna(metrics.MISSING)
        for value, rows in frame.groupby(values):
            groups[(ALL, f"{key}={value}")] = rows
    return groups


def _value(result: pd.DataFrame, version: str, segment: str, metric: str) -> pd.Series:
    row = result[
        (result.model_version == version) & (result.segment == segment) & (result.metric == metric)
    ]
    assert len(row) == 1, (version, segment, metric)
    return row.iloc[0]


def _expected_binary(rows: pd.DataFrame) -> dict[str, tuple[float | None, int]]:
    ok = rows[rows.status == "ok"]
    judged = ok[ok.label.notna()]
    y, predicted, score = judged.label == "1", judged.prediction == "1", judged.score
    nan = {"zero_division": np.nan}
    calibrated = np.searchsorted(np.linspace(0, 1, 11)[1:-1], score)
    prob_true, prob_pred = calibration_curve(y, score, n_bins=10, strategy="uniform")
    weights = np.bincount(calibrated, minlength=10)
    weights = weights[weights > 0] / len(y)
    n = len(judged)
    return {
        "accuracy": (skm.accuracy_score(y, predicted), n),
        "precision": (skm.precision_score(y, predicted, **nan), n),
        "recall": (skm.recall_score(y, predicted, **nan), n),
        "f1": (skm.f1_score(y, predicted, **nan), n),
        "auc_roc": (skm.roc_auc_score(y, score), n),
        "log_loss": (skm.log_loss(y, score, labels=[False, True]), n),
        "brier_score": (skm.brier_score_loss(y, score), n),
        "positive_rate": ((ok.prediction == "1").mean(), len(ok)),
        "calibration_error": (float(np.sum(weights * np.abs(prob_true - prob_pred))), n),
    }


def _expected_regression(rows: pd.DataFrame) -> dict[str, tuple[float | None, int]]:
    judged = rows[(rows.status == "ok") & rows.label.notna()]
    y, p = judged.label_value, judged.prediction_value
    nonzero = y != 0
    n = len(judged)
    return {
        "mae": (skm.mean_absolute_error(y, p), n),
        "rmse": (skm.root_mean_squared_error(y, p), n),
        "mape": (skm.mean_absolute_percentage_error(y[nonzero], p[nonzero]), int(nonzero.sum())),
        "r2": (skm.r2_score(y, p, force_finite=False), n),
    }


@pytest.mark.parametrize(
    ("task", "make", "expected"),
    [
        ("binary_classification", _classification, _expected_binary),
        ("regression", _regression, _expected_regression),
    ],
)
def test_quality_metrics_agree_with_sklearn_overall_and_per_group(task, make, expected):
    frame = make()
    result = metrics.quality_metrics(frame, _model(task), START, END)

    assert list(result.columns) == metrics.METRIC_COLUMNS
    assert set(result.kind) == {"quality"}
    groups = _groups(frame)
    assert len(result) == len(groups) * len(expected(frame))
    for (version, segment), rows in groups.items():
        ok = rows[rows.status == "ok"]
        for metric, (value, size) in expected(rows).items():
            row = _value(result, version, segment, metric)
            assert row.value == pytest.approx(value, rel=1e-9), (version, segment, metric)
            assert row.sample_size == size
            assert row.label_coverage == ok.label.notna().sum() / len(ok)


def test_label_coverage_is_the_labeled_share_of_answered_rows():
    frame = _classification(n=10, seed=3)
    frame["model_version"] = "3"
    frame["status"] = ["ok"] * 8 + ["error"] * 2
    frame["prediction"] = ["1", "0"] * 4 + [None, None]
    frame["score"] = [0.9, 0.1, 0.8, 0.3, 0.7, 0.2, 0.6, 0.4, np.nan, np.nan]
    frame["label"] = ["1", "0", "1", None, None, None, "0", None, "1", "0"]

    result = metrics.quality_metrics(frame, _model("binary_classification"), START, END)

    overall = result[(result.model_version == ALL) & (result.segment == ALL)]
    assert set(overall.label_coverage) == {4 / 8}
    assert _value(result, ALL, ALL, "accuracy").sample_size == 4
    assert _value(result, ALL, ALL, "positive_rate").sample_size == 8
    assert _value(result, ALL, ALL, "accuracy").value == pytest.approx(3 / 4)


def test_undefined_metrics_are_none_with_their_sample_size():
    frame = _classification(n=400, seed=5)
    frame["model_version"] = np.where(np.arange(400) < 200, "3", "4")
    frame.loc[frame.model_version == "3", "label"] = "0"  # one class only
    frame.loc[frame.model_version == "4", "label"] = None  # nothing labeled
    frame.loc[frame.model_version == "4", "status"] = "ok"

    result = metrics.quality_metrics(frame, _model("binary_classification"), START, END)

    one_class = result[result.model_version == "3"].set_index("metric")
    assert one_class.loc["auc_roc", "value"] is None
    assert one_class.loc["recall", "value"] is None
    assert one_class.loc["auc_roc", "sample_size"] > 0
    assert one_class.loc["log_loss", "value"] is not None
    unlabeled = result[result.model_version == "4"].set_index("metric")
    assert unlabeled.drop(index="positive_rate")["value"].map(lambda v: v is None).all()
    assert (unlabeled.drop(index="positive_rate")["sample_size"] == 0).all()
    assert set(unlabeled.label_coverage) == {0.0}


def test_no_answered_rows_gives_an_overall_row_of_none():
    frame = _classification(n=50, seed=6)
    frame["status"] = "error"

    result = metrics.quality_metrics(frame, _model("binary_classification"), START, END)

    assert set(zip(result.model_version, result.segment, strict=True)) == {(ALL, ALL)}
    assert list(result.metric) == list(metrics.CLASSIFICATION_METRICS)
    assert result.value.map(lambda v: v is None).all()
    assert result.label_coverage.map(lambda v: v is None).all()


def test_constant_regression_labels_give_r2_none():
    frame = _regression(n=100, seed=7)
    frame["label_value"] = 5.0
    frame["label"] = "5"

    result = metrics.quality_metrics(frame, _model("regression"), START, END)

    assert _value(result, ALL, ALL, "r2").value is None
    assert _value(result, ALL, ALL, "mae").value is not None


def _system_frame() -> pd.DataFrame:
    minute = pd.Timedelta(minutes=1)
    t0 = pd.Timestamp(START)
    timestamps = [t0] * 3 + [t0 + 5 * minute + pd.Timedelta(seconds=s) for s in (1, 2, 3, 59)]
    timestamps += [t0 + 90 * minute, t0 + 90 * minute + pd.Timedelta(seconds=30)]
    return pd.DataFrame(
        {
            "timestamp": pd.Series(timestamps, dtype="datetime64[us, UTC]"),
            "model_version": ["1", "1", "2", "1", "1", "2", "2", "2", "1"],
            "status": ["ok", "error", "ok", "ok", "error", "error", "ok", "ok", "ok"],
            "error": [None, "Timeout", None, None, "OOM", "Timeout", None, None, None],
            "latency_ms": [10.0, 2000.0, 12.0, 7.0, 3.5, 1500.0, 20.0, 22.0, 9.0],
            "context__channel": ["web", "web", "app", "app", None, "web", "app", "web", "web"],
        }
    )


def test_system_kpis_on_a_hand_built_frame():
    frame = _system_frame()

    result = metrics.system_kpis(frame, "m", START, END, segments={"channel": "context__channel"})

    assert list(result.columns) == metrics.METRIC_COLUMNS
    assert set(result.kind) == {"system"}
    assert result.label_coverage.map(lambda v: v is None).all()
    latency = frame.latency_ms.to_numpy()
    p50, p95, p99 = np.percentile(latency, [50, 95, 99])
    overall = result[(result.model_version == ALL) & (result.segment == ALL)]
    assert dict(zip(overall.metric, overall.value, strict=True)) == pytest.approx(
        {
            "request_count": 9,
            "error_rate": 3 / 9,
            "throughput_mean_rps": 9 / 86_400,
            "throughput_peak_rps": 4 / 60,
            "latency_p50_ms": p50,
            "latency_p95_ms": p95,
            "latency_p99_ms": p99,
            "latency_max_ms": 2000.0,
            "error_count.OOM": 1,
            "error_count.Timeout": 2,
        }
    )
    assert set(overall.sample_size) == {9}
    version_2 = result[result.model_version == "2"].set_index("metric")
    v2_latency = latency[frame.model_version == "2"]
    assert version_2.loc["request_count", "value"] == 4
    assert version_2.loc["throughput_peak_rps", "value"] == pytest.approx(2 / 60)
    assert version_2.loc["latency_p95_ms", "value"] == pytest.approx(np.percentile(v2_latency, 95))
    assert version_2.loc["error_count.OOM", "value"] == 0
    assert version_2.loc["error_count.Timeout", "value"] == 1
    segments = result[result.segment != ALL]
    assert set(segments.metric) == {"request_count", "error_rate"}
    web = segments[segments.segment == "channel=web"].set_index("metric")
    assert web.loc["request_count", "value"] == 5
    assert web.loc["error_rate", "value"] == pytest.approx(2 / 5)
    missing = segments[segments.segment == f"channel={metrics.MISSING}"].set_index("metric")
    assert missing.loc["error_rate", "value"] == 1.0


def test_system_kpis_of_an_empty_frame():
    frame = _system_frame().iloc[:0]

    result = metrics.system_kpis(frame, "m", START, END)

    overall = result.set_index("metric")
    assert overall.loc["request_count", "value"] == 0
    assert overall.loc["throughput_peak_rps", "value"] == 0
    assert overall.loc["error_rate", "value"] is None
    assert overall.loc["latency_p99_ms", "value"] is None


def test_join_labels_takes_the_latest_label_and_counts_orphans():
    predictions = pd.DataFrame(
        {"request_id": ["a", "b", "c", "d"], "prediction": ["1", "0", "1", "0"]}
    )
    stamp = pd.Timestamp("2026-03-05T00:00:00Z")
    feedback = pd.DataFrame(
        {
            "request_id": ["b", "a", "a", "x", "y", "y"],
            "label": ["0", "1", "0", "1", "0", "1"],
            "label_value": [0.0, 1.0, 0.0, 1.0, 0.0, 1.0],
            "label_timestamp": [stamp, stamp + pd.Timedelta(days=2), stamp, stamp, stamp, stamp],
        }
    )

    joined, orphans = metrics.join_labels(predictions, feedback)

    assert orphans == 2
    assert joined.request_id.tolist() == ["a", "b", "c", "d"]
    assert joined.label.tolist()[:2] == ["1", "0"]
    assert joined.label.iloc[2:].isna().all()
    assert joined.label_value.tolist()[:2] == [1.0, 0.0]
    assert joined.label_timestamp.iloc[0] == stamp + pd.Timedelta(days=2)
    assert list(predictions.columns) == ["request_id", "prediction"]


def test_an_interval_without_feedback_yet_has_no_label_metrics():
    predictions = _classification(n=300).drop(columns=["label", "label_value"])
    no_feedback = pd.DataFrame(columns=["request_id", "label", "label_value", "label_timestamp"])

    labeled, orphans = metrics.join_labels(predictions, no_feedback)
    result = metrics.quality_metrics(labeled, _model("binary_classification"), START, END)

    assert orphans == 0
    scored = result[result.metric != "positive_rate"]
    assert scored.value.map(lambda v: v is None).all()
    assert (scored.sample_size == 0).all()
    assert set(result.label_coverage) == {0.0}


def test_boundary_errors_say_what_was_expected():
    frame = _classification(n=20).drop(columns=["score"])
    model = _model("binary_classification")
    with pytest.raises(ValueError, match=r"missing columns \['score'\]"):
        metrics.quality_metrics(frame, model, START, END)
    with pytest.raises(ValueError, match="must be after"):
        metrics.quality_metrics(_classification(n=20), model, END, START)
    with pytest.raises(TypeError, match="expected a pandas DataFrame"):
        metrics.system_kpis([], "m", START, END)
    with pytest.raises(ValueError, match=r"feedback: missing columns .*FEEDBACK_SCHEMA"):
        metrics.join_labels(_served(5, 0), _classification(n=5)[["request_id", "label"]])
    feedback = _classification(n=5)[["request_id", "label", "label_value"]].assign(
        label_timestamp=pd.Timestamp(END)
    )
    with pytest.raises(ValueError, match="predictions already have label columns"):
        metrics.join_labels(_classification(n=5), feedback)


def test_column_helpers_name_what_the_functions_read():
    model = _model("binary_classification")
    frame = _classification(n=500)
    labeled = frame[[*metrics.quality_columns(model), "label"]]
    assert len(metrics.quality_metrics(labeled, model, START, END))
    subset = frame[metrics.system_columns(model)]
    segments = metrics.segment_columns(model)
    assert len(metrics.system_kpis(subset, "m", START, END, segments=segments))


def test_a_million_rows_run():
    frame = _classification(n=1_000_000, seed=11)
    model = _model("binary_classification")

    quality = metrics.quality_metrics(frame, model, START, END)
    system = metrics.system_kpis(frame, "m", START, END, segments=metrics.segment_columns(model))

    assert _value(quality, ALL, ALL, "accuracy").sample_size > 500_000
    assert _value(system, ALL, ALL, "request_count").value == 1_000_000

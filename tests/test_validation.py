"""Data-quality validation with real Great Expectations on staged prediction frames."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from modelwatch import validation
from modelwatch.batch import feature_column, prediction_schema
from modelwatch.config import ModelConfig, parse_config
from modelwatch.validation import RESULT_COLUMNS, build_expectations, validate_batch

START = datetime(2026, 3, 2, tzinfo=UTC)
END = START + timedelta(days=1)
ROWS = 200
HISTORY = [ROWS] * 7

MODEL = {
    "name": "credit_risk",
    "task": "binary_classification",
    "context": ["channel"],
    "segments": ["country", "channel"],
    "features": [
        {"name": "income", "type": "numeric", "min": 0, "max": 1_000_000, "max_null_fraction": 0.1},
        {"name": "age", "type": "numeric", "min": 18, "max": 100},
        {"name": "country", "type": "categorical", "allowed_values": ["DE", "FR"]},
        {"name": "has_card", "type": "boolean"},
    ],
}


def make_model(**data_quality) -> ModelConfig:
    return parse_config({"models": [{**MODEL, "data_quality": data_quality}]}).models[0]


def staged_frame(
    model: ModelConfig, rows: int = ROWS, *, last: datetime = END - timedelta(minutes=1)
) -> pd.DataFrame:
    """A clean staged prediction frame, as extract writes it.

    Every 20th row is an error record: no prediction, no score, null features.
    """
    ok = np.arange(rows) % 20 != 0
    answered = lambda values: [v if o else None for v, o in zip(values, ok, strict=False)]  # noqa: E731
    features = {
        "income": [50_000.0 + i for i in range(rows)],
        "age": [float(20 + i % 60) for i in range(rows)],
        "country": ["DE" if i % 2 else "FR" for i in range(rows)],
        "has_card": [bool(i % 3) for i in range(rows)],
    }
    data = {
        "request_id": [f"req-{i:05d}" for i in range(rows)],
        "timestamp": pd.date_range(START, last, periods=rows, unit="us"),
        "model_name": [model.name] * rows,
        "model_version": ["3"] * rows,
        "status": ["ok" if o else "error" for o in ok],
        "error": [None if o else "Timeout" for o in ok],
        "prediction": answered(["1" if i % 2 else "0" for i in range(rows)]),
        "prediction_value": answered([float(i % 2) for i in range(rows)]),
        "score": answered([(i % 100) / 100 for i in range(rows)]),
        "latency_ms": [10.0 + i % 7 for i in range(rows)],
        "extra_features": [None] * rows,
        "missing_features": [None] * rows,
        "source_file": ["predictions/dt=2026-03-02/part-0.jsonl"] * rows,
        "line_number": list(range(1, rows + 1)),
        **{feature_column(name): answered(values) for name, values in features.items()},
        "context__channel": ["web"] * rows,
    }
    return pa.Table.from_pydict(data, schema=prediction_schema(model)).to_pandas()


def halves(frame: pd.DataFrame) -> list[pd.DataFrame]:
    middle = len(frame) // 2
    return [frame.iloc[:middle], frame.iloc[middle:]]


def validate(chunks, model: ModelConfig, history=HISTORY, end: datetime = END):
    return validate_batch(
        chunks, model, interval_start=START, interval_end=end, recent_volumes=history
    )


def by_name(outcome) -> dict[str, dict]:
    return outcome.rows.set_index("expectation").to_dict("index")


def failed(outcome) -> set[str]:
    return set(outcome.rows.loc[~outcome.rows["success"], "expectation"])


@pytest.fixture(scope="module")
def model() -> ModelConfig:
    return make_model()


@pytest.fixture(scope="module")
def broken(model):
    """One frame with one of each break, validated in two chunks and in one."""
    frame = staged_frame(model, last=START + timedelta(hours=12))
    ok_rows = frame.index[frame["status"] == "ok"]
    frame.loc[ok_rows[20:60], "feature__income"] = np.nan  # 40 of 190 ok rows
    frame.loc[[3, 150], "feature__age"] = [150.0, 5.0]
    frame.loc[7, "feature__country"] = "XX"
    frame.loc[160, "request_id"] = frame.loc[10, "request_id"]  # one in each chunk
    frame.loc[11, "score"] = 1.5
    frame.loc[12, "latency_ms"] = -4.0
    frame.loc[[13, 14], "extra_features"] = json.dumps({"zip": "10115"})
    frame.loc[15, ["missing_features", "feature__age"]] = ["age", np.nan]
    history = [1000] * 7
    return validate(halves(frame), model, history), validate([frame], model, history)


BREAKS = {
    "null_fraction:feature__income": (40, "warning"),
    "range:feature__age": (2, "warning"),
    "null_fraction:feature__age": (1, "warning"),
    "allowed_values:feature__country": (1, "warning"),
    "unique:request_id": (2, "critical"),
    "score_in_unit_interval": (1, "critical"),
    "latency_non_negative": (1, "critical"),
    "schema:unexpected_features": (2, "warning"),
    "schema:missing_features": (1, "warning"),
    "volume": (0, "warning"),
    "freshness": (0, "warning"),
}


def test_clean_frame_passes_everything(model):
    outcome = validate(halves(staged_frame(model)), model)

    assert list(outcome.rows.columns) == RESULT_COLUMNS
    assert outcome.rows["success"].all(), outcome.summary
    assert not outcome.critical_failure
    assert outcome.rows["unexpected_count"].sum() == 0
    assert f"all {len(outcome.rows)} expectations passed" in outcome.summary


@pytest.mark.parametrize("name", sorted(BREAKS))
def test_each_break_is_caught(broken, name):
    chunked, _ = broken
    row = by_name(chunked)[name]
    unexpected, severity = BREAKS[name]

    assert not row["success"]
    assert (row["unexpected_count"], row["severity"]) == (unexpected, severity)
    assert name in chunked.summary


def test_nothing_else_fails(broken):
    chunked, _ = broken
    assert failed(chunked) == set(BREAKS)
    assert chunked.critical_failure


def test_observed_text_names_what_was_found(broken):
    rows = by_name(broken[0])
    assert "zip" in rows["schema:unexpected_features"]["observed"]
    assert "age (1)" in rows["schema:missing_features"]["observed"]
    assert "XX" in rows["allowed_values:feature__country"]["observed"]
    assert "req-00010" in rows["unique:request_id"]["observed"]
    assert "1000" in rows["volume"]["observed"]
    income = rows["null_fraction:feature__income"]
    assert income["element_count"] == 190
    assert income["unexpected_percent"] == pytest.approx(100 * 40 / 190)


def test_chunked_result_equals_unchunked(broken):
    chunked, whole = broken
    pd.testing.assert_frame_equal(chunked.rows, whole.rows)
    assert chunked.critical_failure == whole.critical_failure


def test_answered_rows_first_and_interleaved_give_the_same_result(model):
    """Answered rows in one run are sliced, interleaved ones masked: the counts agree."""
    frame = staged_frame(model)
    frame.loc[frame.index[frame["status"] == "ok"][:30], "feature__income"] = np.nan
    frame.loc[[2, 3], "feature__age"] = 500.0
    answered_first = pd.concat([frame[frame["status"] == "ok"], frame[frame["status"] != "ok"]])

    interleaved = validate(halves(frame), model).rows
    sliced = validate(halves(answered_first), model).rows

    assert set(interleaved.loc[~interleaved["success"], "expectation"]) == {
        "null_fraction:feature__income", "range:feature__age",
    }
    pd.testing.assert_frame_equal(interleaved, sliced)


def test_null_fraction_is_decided_on_merged_counts(model):
    """The first chunk alone has 15 of 95 ok rows null (> 10%); the batch has 15 of 190."""
    frame = staged_frame(model)
    frame.loc[range(21, 36), "feature__income"] = np.nan

    row = by_name(validate(halves(frame), model))["null_fraction:feature__income"]

    assert row["success"]
    assert (row["element_count"], row["unexpected_count"]) == (190, 15)


def test_warning_failures_alone_are_not_critical(model):
    frame = staged_frame(model)
    frame.loc[5, "feature__age"] = 150.0

    outcome = validate([frame], model)

    assert failed(outcome) == {"range:feature__age"}
    assert not outcome.critical_failure
    assert "range:feature__age [warning]" in outcome.summary


def test_severity_overrides_by_prefix_and_exact_name():
    model = make_model(severities={"range": "critical", "range:feature__age": "warning"})
    frame = staged_frame(model)
    frame.loc[5, ["feature__age", "feature__income"]] = [150.0, -1.0]

    rows = by_name(outcome := validate([frame], model))

    assert rows["range:feature__income"]["severity"] == "critical"
    assert rows["range:feature__age"]["severity"] == "warning"
    assert outcome.critical_failure


def test_unknown_severity_key_is_rejected():
    model = make_model(severities={"rnage": "critical"})
    expected = r"data_quality\.severities: .*'rnage' \(did you mean 'range'\?\)"
    with pytest.raises(ValueError, match=expected):
        build_expectations(model, expected_volume=None, interval_end=END)


def test_missing_features_in_most_rows_escalate_unless_pinned(model):
    frame = staged_frame(model)
    frame.loc[frame["status"] == "ok", "missing_features"] = "has_card"
    pinned = make_model(severities={"schema:missing_features": "warning"})

    escalated = by_name(validate([frame], model))["schema:missing_features"]
    kept = by_name(validate([frame], pinned))["schema:missing_features"]

    assert (escalated["success"], escalated["severity"]) == (False, "critical")
    assert (kept["success"], kept["severity"]) == (False, "warning")


def test_empty_batch_fails_only_volume_and_freshness(model):
    no_chunks = validate([], model)
    empty_chunk = validate([staged_frame(model, 0)], model)

    for outcome in (no_chunks, empty_chunk):
        assert failed(outcome) == {"volume", "freshness"}
        assert not outcome.critical_failure
        assert by_name(outcome)["freshness"]["observed"].startswith("no records")


def test_volume_without_history_passes(model):
    row = by_name(validate([staged_frame(model, 10)], model, history=[]))["volume"]
    assert row["success"]
    assert "no history" in row["observed"]


def test_chunk_missing_a_column_fails_column_exists(model):
    first, second = halves(staged_frame(model))

    rows = by_name(outcome := validate([first, second.drop(columns="feature__age")], model))

    assert not rows["column_exists:feature__age"]["success"]
    assert rows["column_exists:feature__age"]["severity"] == "critical"
    assert rows["column_exists:feature__age"]["unexpected_count"] == len(second)
    assert rows["range:feature__age"]["observed"].startswith("not evaluated")
    assert outcome.critical_failure


def test_wrong_column_type_is_reported(model):
    first, second = halves(staged_frame(model))
    second = second.assign(feature__age=second["feature__age"].astype("str"))

    row = by_name(validate([first, second], model))["type:feature__age"]

    assert not row["success"]
    assert row["unexpected_count"] == len(second)
    assert "str" in row["observed"]


def test_suite_follows_the_configuration(model):
    specs = build_expectations(model, expected_volume=100.0, interval_end=END)
    severity = {spec.name: spec.severity for spec in specs}

    assert len(severity) == len(specs)
    assert "range:feature__income" in severity and "allowed_values:feature__country" in severity
    assert "range:feature__country" not in severity and "range:feature__has_card" not in severity
    assert severity["not_null:request_id"] == "critical"
    assert severity["null_fraction:feature__income"] == "warning"
    income = next(spec for spec in specs if spec.name == "null_fraction:feature__income")
    assert income.mostly == pytest.approx(0.9)


def test_bad_input_gets_a_clear_error(model):
    with pytest.raises(ValueError, match="interval_end must be timezone-aware"):
        validate(model=model, chunks=[], end=datetime(2026, 3, 3))
    with pytest.raises(TypeError, match="chunk 1: expected a pandas DataFrame"):
        validate([{"request_id": "a"}], model)


def test_the_report_of_unnamed_features_names_a_bounded_few():
    check = validation._UnexpectedFeatures()
    check.observe(pd.DataFrame({"extra_features": [json.dumps({f"f{i:02d}": 1}) for i in range(30)]}))
    observed = check._result().observed
    assert observed.startswith("unnamed features in 30 of 30 rows: f00, f01")
    assert observed.endswith(f"f19 and {30 - validation.UNEXPECTED_NAMES_SHOWN} more")

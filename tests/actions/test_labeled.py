"""Labeled predictions read back from real staged batches of several intervals."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from logfiles import label, make_model, partition, prediction, write_records
from pipelines import interval

from modelwatch import pipeline, staging
from modelwatch.actions.labeled import count_labeled, first_served, intervals_ending_at, read_labeled
from modelwatch.config import ProjectConfig
from modelwatch.model_input import staged_model_frame

MISSING_FEATURES = {"income": None, "country": None, "has_card": None}


@pytest.fixture(scope="module")
def staged(tmp_path_factory) -> tuple[ProjectConfig, str]:
    """Days 2, 3 and 5 of March staged; day 4 never extracted, so it has no published batch.

    Day 2: r1 labeled the same day; r2 (all features missing) labeled on day 4,
    which only day 5's feedback holds; r3 labeled 0 on day 3, corrected to 1 on
    day 4; r4 never labeled; r5 an error, labeled anyway. Day 3: s1, served by
    version 4, labeled 0 on day 3.
    """
    folder = tmp_path_factory.mktemp("labeled")
    root = str(folder / "logs")
    write_records(partition(root, "predictions", "2026-03-02") + "/a.jsonl", [
        prediction("r1", "2026-03-02T09:00:00Z"),
        prediction("r2", "2026-03-02T10:00:00Z", features=MISSING_FEATURES),
        prediction("r3", "2026-03-02T11:00:00Z", features={"income": 10.0, "country": "FR", "has_card": False}),
        prediction("r4", "2026-03-02T12:00:00Z"),
        prediction("r5", "2026-03-02T13:00:00Z", status="error", error="Timeout", prediction=None, score=None),
    ])
    write_records(partition(root, "predictions", "2026-03-03") + "/a.jsonl",
                  [prediction("s1", "2026-03-03T09:00:00Z", model_version="4")])
    write_records(partition(root, "feedback", "2026-03-02") + "/a.jsonl", [label("r1", 1, "2026-03-02T18:00:00Z")])
    write_records(partition(root, "feedback", "2026-03-03") + "/a.jsonl", [
        label("r3", 0, "2026-03-03T08:00:00Z"),
        label("r5", 1, "2026-03-03T08:00:00Z"),
        label("s1", 0, "2026-03-03T20:00:00Z"),
    ])
    write_records(partition(root, "feedback", "2026-03-04") + "/a.jsonl", [
        label("r2", 0, "2026-03-04T08:00:00Z"),
        label("r3", 1, "2026-03-04T09:00:00Z"),
    ])
    config = ProjectConfig(staging_root=str(folder / "staging"), models=[make_model(root)])
    for day in (2, 3, 5):
        pipeline.extract("credit_risk", *interval(day), config=config)
    return config, config.staging_url


def test_labels_come_from_the_feedback_of_later_intervals_and_the_latest_wins(staged):
    config, url = staged
    model = config.models[0]
    rows = read_labeled(model, url, [interval(2), interval(3), interval(4)], labels_until=interval(5)[1])

    assert list(rows.labels) == [1, 0, 1, 0]  # r1, r2 (day 4's label, staged by day 5), r3 corrected, s1
    assert list(rows.served_versions) == ["3", "3", "3", "4"]
    assert list(rows.interval_positions) == [0, 0, 0, 1]
    assert rows.labels_per_interval() == [3, 1, 0]
    assert rows.unpublished == (interval(4),)
    assert rows.inputs.columns.tolist() == ["income", "country", "has_card"]
    assert rows.inputs.iloc[0].tolist() == [52000.5, "DE", 1.0]
    assert np.isnan(rows.inputs.loc[1, "income"]) and rows.inputs.loc[1, "country"] is None
    assert np.isnan(rows.inputs.loc[1, "has_card"]) and rows.inputs.loc[2, "has_card"] == 0.0


def test_only_labels_known_by_labels_until_count(staged):
    config, url = staged
    model = config.models[0]

    as_of_day_3 = read_labeled(model, url, [interval(2)], labels_until=interval(3)[1])
    assert list(as_of_day_3.labels) == [1, 0]  # r1, and r3's first label; r2's arrives on day 4
    assert read_labeled(model, url, [interval(2)], labels_until=interval(2)[1]).labels.tolist() == [1]
    with pytest.raises(ValueError, match=r"labels_until .* is before the end of a requested interval"):
        read_labeled(model, url, [interval(2), interval(3)], labels_until=interval(2)[1])


def test_count_labeled_counts_the_same_rows_and_can_start_at_a_moment(staged):
    config, url = staged
    model = config.models[0]
    days = [interval(2), interval(3), interval(4)]

    assert count_labeled(model, url, days, interval(5)[1]) == 4
    assert count_labeled(model, url, days, interval(5)[1], served_since=datetime(2026, 3, 2, 10, tzinfo=UTC)) == 3
    assert count_labeled(model, url, days, interval(5)[1], served_since=interval(3)[0]) == 1


def test_first_served_is_the_earliest_request_a_version_answered(staged):
    config, url = staged
    model = config.models[0]
    days = [interval(4), interval(3), interval(2)]

    assert first_served(model, url, days, "3") == datetime(2026, 3, 2, 9, tzinfo=UTC)
    assert first_served(model, url, days, "4") == datetime(2026, 3, 3, 9, tzinfo=UTC)
    assert first_served(model, url, days, "9") is None


def test_intervals_without_batches_give_no_rows_and_are_reported(staged):
    config, url = staged
    model = config.models[0]
    before = intervals_ending_at(model, interval(1)[0], 2)

    rows = read_labeled(model, url, before, labels_until=interval(1)[0])
    assert len(rows) == 0 and rows.labels_per_interval() == [0, 0]
    assert rows.unpublished == tuple(before)
    assert rows.inputs.columns.tolist() == ["income", "country", "has_card"]
    assert count_labeled(model, url, before, interval(1)[0]) == 0


def test_regression_labels_are_values_and_text_labels_are_left_out(tmp_path):
    root = str(tmp_path / "logs")
    model = make_model(root, task="regression")
    write_records(partition(root, "predictions", "2026-03-02") + "/a.jsonl",
                  [prediction(f"r{i}", "2026-03-02T09:00:00Z", prediction=20.5, score=None) for i in range(3)])
    write_records(partition(root, "feedback", "2026-03-02") + "/a.jsonl",
                  [label("r0", 18.25), label("r1", "late"), label("r2", 3)])
    config = ProjectConfig(staging_root=str(tmp_path / "staging"), models=[model])
    pipeline.extract("credit_risk", *interval(2), config=config)

    rows = read_labeled(model, config.staging_url, [interval(2)], labels_until=interval(2)[1])
    assert rows.labels.tolist() == [18.25, 3.0]
    assert count_labeled(model, config.staging_url, [interval(2)], interval(2)[1]) == 2


def test_staged_model_frame_reads_categoricals_and_nullable_booleans(staged):
    config, url = staged
    model = config.models[0]
    predictions = staging.published(url, model.name, *interval(2)).read(staging.PREDICTIONS)
    assert isinstance(predictions["feature__country"].dtype, pd.CategoricalDtype)
    assert predictions["feature__has_card"].dtype == "boolean"

    frame = staged_model_frame(model, predictions)
    assert frame.dtypes.astype(str).tolist() == ["float64", "object", "float64"]
    assert frame["country"].tolist() == ["DE", None, "FR", "DE", "DE"]
    with pytest.raises(ValueError, match="lack the feature columns"):
        staged_model_frame(model, predictions.drop(columns=["feature__income"]))

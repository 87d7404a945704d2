"""The staged folder: attempts of their own, atomic files, publishing, and checks against the manifest."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow as pa
import pytest
from logfiles import make_model, partition, prediction, write_records
from pipelines import interval

from modelwatch import pipeline, staging
from modelwatch.config import ProjectConfig
from modelwatch.staging import StagedBatch, StagingError
from modelwatch.warehouse.load import read_frame


@pytest.fixture
def config(tmp_path):
    root = str(tmp_path / "logs")
    write_records(partition(root, "predictions", "2026-03-02") + "/a.jsonl",
                  [prediction(f"r{i}", "2026-03-02T10:00:00Z") for i in range(5)])
    return ProjectConfig(staging_root=str(tmp_path / "staging"), models=[make_model(root)])


def test_attempt_names_are_path_safe_and_unique():
    names = {staging.attempt_name("manual__2026-03-03T00:00:00+00:00.try1") for _ in range(50)}
    assert len(names) == 50
    assert all(name.startswith("manual__2026-03-03T00_00_00_00_00.try1.") for name in names)
    assert "/" not in staging.attempt_name("../../etc") and not staging.attempt_name("../../etc").startswith(".")


def test_a_staged_file_appears_whole_or_not_at_all(tmp_path):
    staged = StagedBatch.create(str(tmp_path), "m", *interval(2), "a")
    schema = pa.schema([pa.field("x", pa.int64())])
    with pytest.raises(RuntimeError), staged.sink("rows.parquet", schema) as sink:
        sink.write(pa.table({"x": [1, 2]}))
        raise RuntimeError("the disk filled up")
    assert not staged.exists("rows.parquet")
    assert os.listdir(staged.folder) == [staging.ATTEMPT]
    with staged.sink("rows.parquet", schema) as sink:
        sink.write(pa.table({"x": [1, 2]}))
    assert staged.num_rows("rows.parquet") == 2


def test_load_refuses_a_staged_batch_that_disagrees_with_its_manifest(config, warehouse_url):
    start, end = interval(2)
    staged = pipeline.extract("credit_risk", start, end, config=config)
    pipeline.validate("credit_risk", staged["folder"], start, end, config=config, warehouse_url=warehouse_url)
    pipeline.measure("credit_risk", staged["folder"], start, end, config=config, warehouse_url=warehouse_url)
    batch = StagedBatch(staged["folder"])
    # What a second run truncating the shared file used to leave: a valid, empty predictions file.
    batch.write_frame(staging.PREDICTIONS, batch.read(staging.PREDICTIONS).iloc[:0])
    with pytest.raises(StagingError, match=r"predictions.parquet holds 0 rows but the manifest promises 5"):
        pipeline.load("credit_risk", staged["folder"], start, end, "run-1", config=config,
                      warehouse_url=warehouse_url)
    runs = read_frame(pipeline.warehouse_engine(warehouse_url), "SELECT status FROM monitoring_runs")
    assert "success" not in runs["status"].tolist()


def test_load_refuses_a_staged_batch_of_another_interval(config, warehouse_url):
    staged = pipeline.extract("credit_risk", *interval(2), config=config)
    with pytest.raises(StagingError, match="not credit_risk 2026-03-03"):
        pipeline.load("credit_risk", staged["folder"], *interval(3), "run-1", config=config,
                      warehouse_url=warehouse_url)


def test_publishing_points_later_readers_at_the_newest_attempt_and_drops_stale_ones(config):
    start, end = interval(2)
    first = pipeline.extract("credit_risk", start, end, config=config, attempt="first")
    abandoned = StagedBatch.create(config.staging_url, "credit_risk", start, end, "abandoned")
    recent = StagedBatch.create(config.staging_url, "credit_risk", start, end, "still-running")
    long_ago = datetime.now(UTC) - staging.STALE_ATTEMPT_AGE - timedelta(minutes=1)
    abandoned.write_json(staging.ATTEMPT, {"created_at": long_ago.isoformat()})
    assert staging.published(config.staging_url, "credit_risk", start, end).folder == first["folder"]

    second = pipeline.extract("credit_risk", start, end, config=config, attempt="second")

    assert staging.published(config.staging_url, "credit_risk", start, end).folder == second["folder"]
    assert not os.path.exists(abandoned.folder)
    assert os.path.exists(recent.folder) and os.path.exists(first["folder"])
    assert staging.published(config.staging_url, "credit_risk", *interval(3)) is None
    frame = StagedBatch(second["folder"]).read(staging.PREDICTIONS)
    assert isinstance(frame, pd.DataFrame) and len(frame) == 5

"""The log contract's bad-input table, one case per row, checked for the exact outcome."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime

import fsspec
import pandas as pd
import pytest
from logfiles import label, make_model, partition, prediction, write_jsonl, write_lines, write_records

from modelwatch import extract, logs, staging
from modelwatch.staging import FEEDBACK, PREDICTIONS, QUARANTINE, StagedBatch

DAY_START = datetime(2026, 3, 2, tzinfo=UTC)
DAY_END = datetime(2026, 3, 3, tzinfo=UTC)


@pytest.fixture
def root(tmp_path):
    return str(tmp_path / "logs")


def run_extract(root: str, staging: str, start=DAY_START, end=DAY_END, **model_overrides):
    model = make_model(root, **model_overrides)
    manifest = extract.extract_interval(model, start, end, staging)
    predictions = StagedBatch(manifest.folder).read(PREDICTIONS)
    quarantine = StagedBatch(manifest.folder).read(QUARANTINE)
    return manifest, predictions, quarantine


def reasons_by_id(quarantine: pd.DataFrame) -> dict[str, str]:
    out = {}
    for raw, reason in zip(quarantine["raw"], quarantine["reason"], strict=False):
        try:
            out[json.loads(raw).get("request_id", raw)] = reason
        except ValueError:
            out[raw] = reason
    return out


BAD_RECORDS = [
    ("missing_field:request_id", {k: v for k, v in prediction("x").items() if k != "request_id"}),
    ("missing_field:timestamp", {k: v for k, v in prediction("no-ts").items() if k != "timestamp"}),
    ("missing_field:features", {k: v for k, v in prediction("no-features").items() if k != "features"}),
    ("missing_field:score", {k: v for k, v in prediction("no-score").items() if k != "score"}),
    ("missing_field:error", prediction("no-error", status="error", prediction=None, score=None)),
    ("wrong_type:latency_ms", prediction("lat-str", latency_ms="fast")),
    ("wrong_type:model_version", prediction("ver-int", model_version=3)),
    ("wrong_type:features.income",
     prediction("inc-str", features={"income": "abc", "country": "DE", "has_card": True})),
    ("wrong_type:features.has_card",
     prediction("card-str", features={"income": 1.0, "country": "DE", "has_card": "yes"})),
    ("wrong_type:features", prediction("feat-list", features=[1, 2])),
    ("invalid_timestamp:timestamp", prediction("ts-naive", timestamp="2026-03-02T10:00:00")),
    ("invalid_status", prediction("bad-status", status="maybe")),
    ("timestamp_outside_partition", prediction("wrong-day", timestamp="2026-03-03T01:00:00Z")),
    ("model_name_mismatch", prediction("other-model", model_name="fraud")),
    ("score_out_of_range", prediction("score-high", score=1.5)),
    ("negative_latency", prediction("lat-neg", latency_ms=-3.0)),
]


def test_every_bad_record_is_quarantined_with_its_reason(root, tmp_path):
    good = [prediction(f"g{i}") for i in range(3)]
    records = good + [r for _, r in BAD_RECORDS]
    write_jsonl(partition(root, "predictions", "2026-03-02") + "/part-0.jsonl", records)

    manifest, predictions, quarantine = run_extract(root, str(tmp_path / "staging"))

    assert sorted(predictions["request_id"]) == ["g0", "g1", "g2"]
    assert manifest.rows_read == len(records)
    assert manifest.rows_quarantined == len(BAD_RECORDS)
    assert sorted(quarantine["reason"]) == sorted(reason for reason, _ in BAD_RECORDS)
    source = partition(root, "predictions", "2026-03-02") + "/part-0.jsonl"
    assert set(quarantine["source_file"]) == {source}
    expected_lines = {reason: 4 + i for i, (reason, _) in enumerate(BAD_RECORDS)}
    for reason, line in zip(quarantine["reason"], quarantine["line_number"], strict=False):
        assert expected_lines[reason] == line
    assert all(json.loads(raw) for raw in quarantine["raw"])


def test_invalid_json_and_non_finite_numbers_are_quarantined(root, tmp_path):
    lines = [
        json.dumps(prediction("ok-1")),
        '{"request_id": "cut", "timestamp": ',
        "[1, 2, 3]",
        json.dumps(prediction("nan-latency")).replace('"latency_ms": 12.4', '"latency_ms": NaN'),
        json.dumps(prediction("inf-score")).replace('"score": 0.83', '"score": Infinity'),
    ]
    write_lines(partition(root, "predictions", "2026-03-02") + "/a.jsonl", lines)

    _manifest, predictions, quarantine = run_extract(root, str(tmp_path / "staging"))

    assert list(predictions["request_id"]) == ["ok-1"]
    by_line = dict(zip(quarantine["line_number"], quarantine["reason"], strict=False))
    assert by_line[2].startswith("invalid_json")
    assert by_line[3] == "not_a_json_object"
    assert by_line[4] == "non_finite:latency_ms"
    assert by_line[5] == "non_finite:score"
    assert quarantine.set_index("line_number").loc[2, "raw"] == lines[1]


def test_identical_duplicates_kept_once_and_conflicts_quarantined(root, tmp_path):
    day = partition(root, "predictions", "2026-03-02")
    write_jsonl(day + "/a.jsonl", [prediction("dup"), prediction("conflict", score=0.1), prediction("solo")])
    write_records(day + "/b.parquet", [prediction("dup"), prediction("conflict", score=0.9)])

    manifest, predictions, quarantine = run_extract(root, str(tmp_path / "staging"))

    assert sorted(predictions["request_id"]) == ["dup", "solo"]
    assert manifest.duplicates_dropped == 1
    assert manifest.conflicting_duplicates == 1
    conflicts = quarantine[quarantine["reason"] == "conflicting_duplicate"]
    assert sorted(conflicts["source_file"]) == [day + "/a.jsonl", day + "/b.parquet"]
    assert manifest.rows_read == 5
    assert manifest.rows_valid + manifest.rows_quarantined + manifest.duplicates_dropped == 5


def test_truncated_gzip_keeps_readable_records_and_reports_the_file(root, tmp_path):
    day = partition(root, "predictions", "2026-03-02")
    body = "\n".join(json.dumps(prediction(f"r{i}")) for i in range(2000)).encode()
    compressed = gzip.compress(body, mtime=0)
    fs, path = fsspec.core.url_to_fs(day + "/cut.jsonl.gz")
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(compressed[: len(compressed) // 2])

    manifest, predictions, quarantine = run_extract(root, str(tmp_path / "staging"))

    assert [d["file"] for d in manifest.damaged_files] == [path]
    assert 0 < len(predictions) < 2000
    kept_and_cut = len(predictions) + len(quarantine)
    assert kept_and_cut == manifest.rows_read
    assert set(quarantine["reason"].str.split(":").str[0]) <= {"invalid_json"}


def test_corrupt_parquet_is_reported_and_other_files_still_read(root, tmp_path):
    day = partition(root, "predictions", "2026-03-02")
    write_records(day + "/good.parquet", [prediction("p1"), prediction("p2")])
    _fs, path = fsspec.core.url_to_fs(day + "/bad.parquet")
    with open(path, "wb") as handle:
        handle.write(b"PAR1 this is not a parquet file")

    manifest, predictions, _ = run_extract(root, str(tmp_path / "staging"))

    assert sorted(predictions["request_id"]) == ["p1", "p2"]
    assert [d["file"] for d in manifest.damaged_files] == [path]


def test_unknown_and_missing_features_are_kept_for_schema_drift(root, tmp_path):
    write_jsonl(
        partition(root, "predictions", "2026-03-02") + "/a.jsonl",
        [
            prediction("extra", features={"income": 1.0, "country": "DE", "has_card": False, "tenure": 4}),
            prediction("missing", features={"income": 1.0}),
            prediction("explicit-null", features={"income": None, "country": "DE", "has_card": True}),
            prediction("error-empty", status="error", error="Timeout", features={}, prediction=None, score=None),
        ],
    )
    _, predictions, quarantine = run_extract(root, str(tmp_path / "staging"))

    assert quarantine.empty
    rows = predictions.set_index("request_id")
    assert json.loads(rows.loc["extra", "extra_features"]) == {"tenure": 4}
    assert rows.loc["missing", "missing_features"] == "country,has_card"
    assert pd.isna(rows.loc["explicit-null", "missing_features"])
    assert pd.isna(rows.loc["explicit-null", "feature__income"])
    assert pd.isna(rows.loc["error-empty", "missing_features"])


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".parquet"])
def test_each_format_gives_the_same_batch(tmp_path, suffix):
    records = [prediction(f"r{i}", timestamp=f"2026-03-02T{i:02d}:30:00Z", score=i / 30) for i in range(24)]
    records.append(prediction("err", status="error", error="OOM", prediction=None, score=None))
    reference_root = str(tmp_path / "jsonl")
    write_records(partition(reference_root, "predictions", "2026-03-02") + "/a.jsonl", records)
    root = str(tmp_path / suffix.strip("."))
    write_records(partition(root, "predictions", "2026-03-02") + "/a" + suffix, records)

    _, expected, _ = run_extract(reference_root, str(tmp_path / "s1"))
    _, actual, quarantine = run_extract(root, str(tmp_path / "s2"))

    assert quarantine.empty
    content = [c for c in expected.columns if c != "source_file"]
    pd.testing.assert_frame_equal(
        expected[content].sort_values("request_id").reset_index(drop=True),
        actual[content].sort_values("request_id").reset_index(drop=True),
    )


def test_staged_predictions_hold_answered_rows_first(tmp_path):
    records = [
        prediction(f"r{i}", timestamp=f"2026-03-02T{i:02d}:00:00Z")
        if i % 3
        else prediction(f"r{i}", timestamp=f"2026-03-02T{i:02d}:00:00Z", status="error", error="OOM",
                        prediction=None, score=None)
        for i in range(12)
    ]
    root = str(tmp_path / "logs")
    write_records(partition(root, "predictions", "2026-03-02") + "/a.jsonl", records)

    _, staged, _ = run_extract(root, str(tmp_path / "staging"))

    assert staged["status"].tolist() == ["ok"] * 8 + ["error"] * 4
    assert staged["request_id"].tolist() == [f"r{i}" for i in range(12) if i % 3] + [f"r{i}" for i in (0, 3, 6, 9)]


def test_memory_root_and_memory_staging():
    root = "memory://mw-test/logs"
    write_records(partition(root, "predictions", "2026-03-02") + "/a.parquet", [prediction("m1")])
    write_records(partition(root, "feedback", "2026-03-02") + "/a.jsonl", [label("m1", 0)])
    manifest, predictions, _ = run_extract(root, "memory://mw-test/staging")
    labels = StagedBatch(manifest.folder).read(FEEDBACK)
    assert list(predictions["request_id"]) == ["m1"]
    assert list(labels["label"]) == ["0"]
    assert manifest.folder.startswith("memory://")


def test_latest_label_wins_and_future_labels_are_not_known_yet(root, tmp_path):
    write_records(partition(root, "predictions", "2026-03-02") + "/a.jsonl", [prediction("a"), prediction("b")])
    fb = partition(root, "feedback", "2026-03-02")
    write_records(fb + "/a.jsonl", [label("a", 0, "2026-03-02T11:00:00Z"), label("b", 1, "2026-03-02T12:00:00Z")])
    write_records(fb + "/b.parquet", [label("a", 1, "2026-03-02T15:00:00Z")])
    write_records(partition(root, "feedback", "2026-03-03") + "/a.jsonl", [label("b", 0, "2026-03-03T09:00:00Z")])

    manifest, _, _ = run_extract(root, str(tmp_path / "staging"))
    labels = StagedBatch(manifest.folder).read(FEEDBACK).set_index("request_id")

    assert labels["label"].to_dict() == {"a": "1", "b": "1"}
    assert manifest.label_corrections == 1
    assert manifest.labels_read == 3


def test_label_window_reaches_back_for_maturing_intervals(root, tmp_path):
    write_records(partition(root, "feedback", "2026-02-28") + "/a.jsonl", [label("old", 1, "2026-02-28T10:00:00Z")])
    write_records(partition(root, "feedback", "2026-02-27") + "/a.jsonl", [label("too-old", 1, "2026-02-27T10:00:00Z")])
    write_records(partition(root, "predictions", "2026-03-02") + "/a.jsonl", [prediction("x")])
    manifest, _, _ = run_extract(root, str(tmp_path / "staging"), label_maturity_intervals=2)
    labels = StagedBatch(manifest.folder).read(FEEDBACK)
    assert list(labels["request_id"]) == ["old"]
    assert manifest.label_window_start == "2026-02-28T00:00:00+00:00"


def test_bad_feedback_is_quarantined(root, tmp_path):
    write_records(partition(root, "predictions", "2026-03-02") + "/a.jsonl", [prediction("a")])
    write_lines(
        partition(root, "feedback", "2026-03-02") + "/a.jsonl",
        [
            json.dumps(label("a", 1)),
            json.dumps({"request_id": "b", "label_timestamp": "2026-03-02T10:00:00Z"}),
            json.dumps(label("c", True)),
            json.dumps(label("d", 1, "2026-03-05T10:00:00Z")),
            "not json",
        ],
    )
    manifest, _, quarantine = run_extract(root, str(tmp_path / "staging"))
    fb = quarantine[quarantine["kind"] == "feedback"]
    assert dict(zip(fb["line_number"], fb["reason"].str.split(":").str[0], strict=False)) == {
        2: "missing_field", 3: "wrong_type", 4: "timestamp_outside_partition", 5: "invalid_json",
    }
    assert manifest.labels_quarantined == 4
    assert manifest.labels_kept == 1


def test_missing_partition_differs_from_empty(root, tmp_path):
    model = make_model(root)
    assert logs.missing_prediction_partitions(model, DAY_START, DAY_END) == [
        partition(root, "predictions", "2026-03-02")
    ]
    write_lines(partition(root, "predictions", "2026-03-02") + "/empty.jsonl", [])
    assert logs.missing_prediction_partitions(model, DAY_START, DAY_END) == []
    manifest, predictions, _ = run_extract(root, str(tmp_path / "staging"))
    assert manifest.empty_partitions == [partition(root, "predictions", "2026-03-02")]
    assert manifest.missing_partitions == []
    assert predictions.empty


def test_hourly_interval_reads_only_its_hour_and_week_reads_every_day(root, tmp_path):
    write_records(
        partition(root, "predictions", "2026-03-02") + "/a.jsonl",
        [prediction(f"h{h}", timestamp=f"2026-03-02T{h:02d}:10:00Z") for h in range(24)]
        + [prediction("bad-hour-5", timestamp="2026-03-02T05:20:00Z", score=7.0)],
    )
    write_records(partition(root, "predictions", "2026-03-04") + "/a.jsonl",
                  [prediction("later", timestamp="2026-03-04T01:00:00Z")])
    hour = (datetime(2026, 3, 2, 5, tzinfo=UTC), datetime(2026, 3, 2, 6, tzinfo=UTC))
    manifest, predictions, quarantine = run_extract(root, str(tmp_path / "h"), *hour)
    assert list(predictions["request_id"]) == ["h5"]
    assert manifest.rows_outside_interval == 23
    assert list(quarantine["reason"]) == ["score_out_of_range"]

    week = (datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 9, tzinfo=UTC))
    manifest, predictions, _ = run_extract(root, str(tmp_path / "w"), *week)
    assert len(predictions) == 25
    assert len(manifest.missing_partitions) == 5


def test_small_chunks_give_the_same_batch(root, tmp_path, monkeypatch):
    records = [prediction(f"r{i % 40}", timestamp=f"2026-03-02T{i % 24:02d}:00:00Z") for i in range(100)]
    write_records(partition(root, "predictions", "2026-03-02") + "/a.jsonl", records[:50])
    write_records(partition(root, "predictions", "2026-03-02") + "/b.parquet", records[50:])
    whole, expected, expected_q = run_extract(root, str(tmp_path / "big"))
    monkeypatch.setattr(logs, "CHUNK_ROWS", 7)
    chunked, actual, actual_q = run_extract(root, str(tmp_path / "small"))
    assert (whole.rows_valid, whole.duplicates_dropped) == (chunked.rows_valid, chunked.duplicates_dropped)
    key = ["request_id"]
    pd.testing.assert_frame_equal(
        expected.sort_values(key).reset_index(drop=True), actual.sort_values(key).reset_index(drop=True)
    )
    assert sorted(expected_q["reason"]) == sorted(actual_q["reason"])


def test_a_rerun_stages_its_own_attempt_and_publishes_it(root, tmp_path):
    day = partition(root, "predictions", "2026-03-02")
    write_records(day + "/a.jsonl", [prediction("a"), prediction("b")])
    first, _, _ = run_extract(root, str(tmp_path / "staging"))
    fsspec.filesystem("file").rm(day + "/a.jsonl")
    write_records(day + "/a.jsonl", [prediction("a")])
    second, predictions, _ = run_extract(root, str(tmp_path / "staging"))
    assert first.folder != second.folder
    assert list(predictions["request_id"]) == ["a"]
    # The first attempt's files are left whole for a run that may still read them.
    assert list(StagedBatch(first.folder).read(PREDICTIONS)["request_id"]) == ["a", "b"]
    published = staging.published(str(tmp_path / "staging"), "credit_risk", DAY_START, DAY_END)
    assert published.folder == second.folder


def test_other_files_in_a_partition_are_listed_not_read(root, tmp_path):
    day = partition(root, "predictions", "2026-03-02")
    write_records(day + "/a.jsonl", [prediction("a")])
    write_lines(day + "/_SUCCESS", [""])
    manifest, predictions, _ = run_extract(root, str(tmp_path / "staging"))
    assert manifest.ignored_files == [day + "/_SUCCESS"]
    assert len(predictions) == 1


def test_parquet_extras_are_per_row_and_absent_struct_fields_are_missing(root, tmp_path):
    write_records(
        partition(root, "predictions", "2026-03-02") + "/a.parquet",
        [
            prediction("plain", features={"income": 1.0, "country": "DE", "has_card": True}),
            prediction("extra", features={"income": 1.0, "country": "DE", "has_card": True, "tenure": 4}),
        ],
    )
    _, predictions, quarantine = run_extract(root, str(tmp_path / "staging"))
    rows = predictions.set_index("request_id")
    assert quarantine.empty
    assert pd.isna(rows.loc["plain", "extra_features"])
    assert json.loads(rows.loc["extra", "extra_features"]) == {"tenure": 4}


def test_the_raw_text_of_conflicting_duplicates_is_bounded(root, tmp_path):
    from modelwatch import batch

    day = partition(root, "predictions", "2026-03-02")
    wordy = {"income": 1.0, "country": "DE", "has_card": True, "note": "n" * 3000}
    write_jsonl(day + "/a.jsonl", [prediction("conflict", score=0.1, features=wordy)])
    write_jsonl(day + "/b.jsonl", [prediction("conflict", score=0.9, features=wordy)])

    _, _, quarantine = run_extract(root, str(tmp_path / "staging"))

    assert quarantine["reason"].tolist() == ["conflicting_duplicate"] * 2
    assert quarantine["raw"].str.len().max() == batch.RAW_TEXT_LIMIT + 1  # cut, with its ellipsis
    assert quarantine["raw"].str.endswith("…").all()

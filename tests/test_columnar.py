"""The columnar fast path stages exactly what the record-by-record path stages, block by block.

Every block of every file below is staged twice: by `logs.stage_predictions`
(columns where the rules surely hold, records for the rest) and by the record
path alone. Rows, quarantine and counts must be equal; clean blocks must be
decided by the columns.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import test_hostile_records as hostile
from logfiles import label, make_model, partition, prediction, write_lines, write_records

from modelwatch import batch, columnar, extract, logs, staging
from modelwatch.staging import StagedBatch

DAY = date(2026, 3, 2)
START, END = datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC)
SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")


def staged_both_ways(path: str, model, kind: str = "predictions") -> float:
    """Assert that both paths stage every block of `path` alike; return the share of rows the columns decided."""
    if kind == "predictions":
        fields, names, context = logs.PREDICTION_FIELDS, [f.name for f in model.features], batch.context_keys(model)
        schema = columnar.prediction_json_schema(model)
    else:
        fields, names, context, schema = logs.FEEDBACK_FIELDS, [], [], columnar.FEEDBACK_JSON_SCHEMA
    decided = total = 0
    for block in logs.iter_blocks(path, fields, names, context, [], schema):
        if kind == "predictions":
            both = logs.stage_predictions(block, model, DAY, START, END)
            alone = logs.normalize_predictions(block.raw(None), model, DAY, START, END)
            fast = block.records is not None and columnar.predictions(
                block.records, model, DAY, START, END, block.source_file, block.line_numbers[block.typed], block.keys)
        else:
            both = logs.stage_feedback(block, DAY, START, END, END)
            alone = logs.normalize_feedback(block.raw(None), DAY, START, END, END)
            fast = block.records is not None and columnar.feedback(
                block.records, DAY, START, END, END, block.source_file, block.line_numbers[block.typed])
        assert both.rows.equals(alone.rows), _difference(both.rows, alone.rows)
        pd.testing.assert_frame_equal(both.quarantined.reset_index(drop=True),
                                      alone.quarantined.reset_index(drop=True), check_dtype=False)
        assert both.outside_interval == alone.outside_interval
        decided += int((~fast.slow).sum()) if fast else 0
        total += len(block)
    return decided / total if total else 0.0


def _difference(left: pa.Table, right: pa.Table) -> str:
    if left.schema != right.schema or left.num_rows != right.num_rows:
        return f"{left.schema} ({left.num_rows} rows) != {right.schema} ({right.num_rows} rows)"
    return "; ".join(f"{name}: {left[name].to_pylist()} != {right[name].to_pylist()}"
                     for name in left.column_names if not left[name].equals(right[name]))


@pytest.fixture
def model(tmp_path):
    return make_model(str(tmp_path / "logs"), segments=["country", "channel"])


def folder(tmp_path: Path) -> str:
    return partition(str(tmp_path / "logs"), "predictions", DAY.isoformat())


def features(**values) -> dict:
    return {"income": 52000.5, "country": "DE", "has_card": True, **values}


CLEAN = [prediction(f"r{i}", f"2026-03-02T{i % 24:02d}:15:00Z", score=(i % 10) / 10, latency_ms=i * 1.5,
                    features=features(income=1000.0 * i, country=["DE", "FR"][i % 2], has_card=i % 3 == 0))
         for i in range(40)]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_clean_records_are_decided_by_columns(tmp_path, model, suffix):
    path = f"{folder(tmp_path)}/a{suffix}"
    write_records(path, CLEAN)

    assert staged_both_ways(path, model) == 1.0


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_null_absent_and_unnamed_features_stage_alike(tmp_path, model, suffix):
    records = [
        prediction("null-income", features=features(income=None)),
        prediction("no-income", features={"country": "DE", "has_card": False}),
        prediction("null-country", features=features(country=None)),
        prediction("extra", features=features(age=41)),
        prediction("null-extra", features=features(age=None)),
        prediction("error-no-features", status="error", error="Timeout", prediction=None, score=None, features={}),
        prediction("country-in-context-too", context={"channel": "web", "country": "DE"},
                   features={"income": 1.0, "has_card": True}),
        *CLEAN[:5],
    ]
    path = f"{folder(tmp_path)}/a{suffix}"
    write_records(path, records)

    assert staged_both_ways(path, model) >= 0.5


@pytest.mark.parametrize("suffix", (".jsonl", ".jsonl.gz"))
def test_lines_arrow_cannot_type_send_their_block_to_the_record_path(tmp_path, model, suffix):
    good = [json.dumps(r) for r in CLEAN[:6]]
    lines = [
        *good[:3],
        json.dumps(prediction("latency-as-text", latency_ms="12.4")),
        json.dumps(prediction("score-as-text", score="0.5")),
        '{"request_id": "cut", "timestamp": ',
        json.dumps(prediction("two-on-a-line")) + json.dumps(prediction("second")),
        json.dumps(prediction("twice", model_version="1"))[:-1] + ', "model_version": "2"}',
        "\u00a0\u2028",
        json.dumps(prediction("escaped-nul", error="a\x00b", status="error")),
        json.dumps(prediction("surrogate", model_version="\ud800")),
        json.dumps(prediction("accent", model_version="v\u00e9")),
        json.dumps(prediction("infinite", latency_ms=1.0)).replace("1.0", "Infinity"),
        "\ufeff" + json.dumps(prediction("byte-order-mark")),
        *good[3:],
    ]
    path = f"{folder(tmp_path)}/a{suffix}"
    write_lines(path, lines)

    staged_both_ways(path, model)


@pytest.mark.parametrize("suffix", (".jsonl", ".jsonl.gz"))
def test_a_byte_order_mark_on_the_first_line_goes_to_the_record_path(tmp_path, model, suffix):
    path = f"{folder(tmp_path)}/a{suffix}"
    write_lines(path, ["\ufeff" + json.dumps(CLEAN[0]), *map(json.dumps, CLEAN[1:4])])

    staged_both_ways(path, model)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_values_near_the_rules_edges_stage_alike(tmp_path, model, suffix):
    records = [
        prediction("offset", "2026-03-02T10:15:03.120+02:00"),
        prediction("micros", "2026-03-02T10:15:03.123456Z"),
        prediction("nanos", "2026-03-02T10:15:03.123456789Z"),
        prediction("naive", "2026-03-02T10:15:03"),
        prediction("space", "2026-03-02 10:15:03Z"),
        prediction("lower-z", "2026-03-02T10:15:03z"),
        prediction("next-day-by-offset", "2026-03-02T23:30:00-02:00"),
        prediction("feb-30", "2026-02-30T10:00:00Z"),
        prediction("score-edge", score=1.0, latency_ms=0.0),
        prediction("class-as-float", prediction=1.0),
        prediction("class-as-text", prediction="yes"),
        prediction("long-version", model_version="v" * batch.MAX_TEXT_CHARS),
        prediction("too-long-version", model_version="v" * (batch.MAX_TEXT_CHARS + 1)),
        prediction("long-error", status="error", error="e" * (batch.MAX_ERROR_CHARS + 1), prediction=None,
                   score=None),
        prediction("category-code", features=features(country=7)),
        prediction("category-float", features=features(country=7.5)),
        prediction("flag-as-number", features=features(has_card=1)),
        prediction("unicode", features=features(country="Éire"), context={"channel": "wéb"}),
        prediction("other-model", model_name="fraud"),
        prediction("bad-status", status="maybe"),
        prediction("huge-latency", latency_ms=1e308),
        *CLEAN[:3],
    ]
    if suffix == ".parquet":  # one type per column: zoned times, numeric classes and codes, boolean flags
        mixed = {"class-as-text", "category-code", "category-float", "flag-as-number", "feb-30"}
        records = [r for r in records if r["timestamp"].endswith("Z") and r["request_id"] not in mixed]
    path = f"{folder(tmp_path)}/a{suffix}"
    write_records(path, records)

    staged_both_ways(path, model)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_regression_predictions_are_written_as_the_record_path_writes_them(tmp_path, suffix):
    model = make_model(str(tmp_path / "logs"), task="regression")
    values = [0.0, -0.0, 1.0, 2.5, 123.456, 1e-7, 0.0001234, 1e15 + 0.5, 1e16, 1e20, 2.0**60, 1 / 3, -7.25,
              105764396496701.62, 3, 12345678901234567890]
    records = [prediction(f"p{i}", prediction=value, score=None) for i, value in enumerate(values)]
    path = f"{folder(tmp_path)}/a{suffix}"
    if suffix == ".parquet":  # one column type per file: the integers as doubles
        records = [r | {"prediction": float(r["prediction"])} for r in records]
    write_records(path, records)

    assert staged_both_ways(path, model) >= 0.5


def test_a_field_whose_type_changes_between_blocks_stages_alike(tmp_path, model, monkeypatch):
    monkeypatch.setattr(logs, "CHUNK_ROWS", 4)
    codes = [prediction(f"code-{i}", features=features(country=i), prediction=i % 2) for i in range(4)]
    names = [prediction(f"name-{i}", features=features(country="DE"), prediction="yes") for i in range(4)]
    mixed = [prediction("int", prediction=1), prediction("float", prediction=0.5), *CLEAN[:2]]
    path = f"{folder(tmp_path)}/a.jsonl"
    write_records(path, codes + names + mixed)

    assert staged_both_ways(path, model) == 1.0


@pytest.mark.parametrize("case", hostile.CASES, ids=[case.id for case in hostile.CASES])
def test_every_hostile_record_stages_alike(tmp_path, case):
    model = make_model(str(tmp_path / "logs"), label_maturity_intervals=0)
    hostile.write_case(case)(str(tmp_path / "logs"))
    for kind in ("predictions", "feedback"):
        day = Path(partition(str(tmp_path / "logs"), kind, DAY.isoformat()))
        for path in sorted(day.glob("*")) if day.exists() else []:
            staged_both_ways(str(path), model, kind)


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_labels_stage_alike(tmp_path, model, suffix):
    labels = [
        label("a", 1, "2026-03-02T20:00:00Z"), label("b", "yes", "2026-03-02T21:00:00Z"),
        label("c", 0.5, "2026-03-02T22:00:00+01:00"), label("d", None, "2026-03-02T20:00:00Z"),
        label("e", 1, "2026-03-03T01:00:00Z"), label("f", 1, "2026-03-02T20:00:00"),
        {"request_id": "g", "label": 1}, label("h" * (batch.MAX_TEXT_CHARS + 1), 1, "2026-03-02T20:00:00Z"),
    ]
    path = partition(str(tmp_path / "logs"), "feedback", DAY.isoformat()) + f"/a{suffix}"
    if suffix == ".parquet":  # one type per column: text labels, zoned times
        labels = [r | {"label": None if r["label"] is None else str(r["label"])} for r in labels
                  if r.get("label_timestamp", "Z").endswith("Z")]
    write_records(path, labels)

    staged_both_ways(path, model, "feedback")


def test_an_extract_stages_the_same_day_without_the_columns(tmp_path, model, monkeypatch):
    """The whole extract, duplicates across fast and slow blocks included, with and without the fast path."""
    day = folder(tmp_path)
    write_records(day + "/a.parquet", [*CLEAN[:20], prediction("dup"), prediction("conflict", score=0.1)])
    write_records(day + "/b.jsonl", [*CLEAN[10:30], prediction("dup"), prediction("extra", features=features(x=1))])
    write_lines(day + "/c.jsonl.gz", [json.dumps(prediction("conflict", score=0.9)), "not json",
                                      json.dumps(prediction("dup"))])
    feedback = partition(str(tmp_path / "logs"), "feedback", DAY.isoformat())
    write_records(feedback + "/l.jsonl", [label(f"r{i}", i % 2, "2026-03-02T23:00:00Z") for i in range(30)])

    def staged(root: str) -> tuple[dict, dict]:
        manifest = extract.extract_interval(model, START, END, str(tmp_path / root))
        folder_ = StagedBatch(manifest.folder)
        files = {name: folder_.read(name) for name in (staging.PREDICTIONS, staging.FEEDBACK, staging.QUARANTINE)}
        counts = {k: v for k, v in manifest.to_dict().items() if k != "folder"}
        return counts, files

    counts, files = staged("with-columns")
    monkeypatch.setattr(columnar, "predictions", lambda *args: None)
    monkeypatch.setattr(columnar, "feedback", lambda *args: None)
    alone_counts, alone_files = staged("records-only")

    assert counts == alone_counts
    # r10..r19 in two files, "dup" in three, "conflict" twice with different scores.
    assert (counts["duplicates_dropped"], counts["conflicting_duplicates"]) == (12, 1)
    for name, frame in files.items():
        pd.testing.assert_frame_equal(frame, alone_files[name], obj=name)


def test_text_hashes_depend_on_the_text_only():
    texts = ["a", "ab", "abcdefgh", "abcdefghi", "", "ünïcödé-id", "x" * 70, "req-000001"]
    one_block = columnar.text_hashes(pa.array(texts))
    # Other neighbours change the width words are padded to, and non-ASCII text the way bytes are laid out.
    alone = [columnar.text_hashes(pa.array([text]))[0] for text in texts]
    ascii_only = columnar.text_hashes(pa.chunked_array([pa.array(["req-000001", "a"]), pa.array(["ab"])]))
    assert list(one_block) == alone
    assert list(ascii_only) == [alone[7], alone[0], alone[1]]
    assert len(set(one_block.tolist())) == len(texts)
    assert columnar.text_hashes(pa.array([], pa.string())).shape == (0,)


def test_text_hashes_of_distinct_ids_are_distinct():
    ids = pa.array([f"{n:08x}-{n * 7919 % 65536:04x}" for n in range(200_000)])
    hashes = columnar.text_hashes(ids)
    assert len(pd.unique(hashes)) == len(ids)


BOOLEANS = pa.array([True, None, False, True, True, False, True, True, True, False] * 3)
DOUBLES = pa.array([1.5, None, float("nan"), float("inf"), -2.0, 0.0] * 3)


@pytest.mark.parametrize("array", [BOOLEANS, BOOLEANS.slice(3), BOOLEANS.slice(5, 7), pa.nulls(4, pa.bool_()),
                                   pa.array([], pa.bool_())], ids=["whole", "from-3", "5-to-12", "nulls", "empty"])
def test_masks_read_the_bits_as_arrow_does(array):
    expected = pc.fill_null(array, False).to_numpy(zero_copy_only=False).astype(bool)
    assert columnar._mask(array).tolist() == expected.tolist()
    assert columnar._nulls(array).tolist() == pc.is_null(array).to_numpy(zero_copy_only=False).tolist()


@pytest.mark.parametrize("array", [DOUBLES, DOUBLES.slice(2), DOUBLES.slice(1, 4), pa.nulls(3, pa.float64())],
                         ids=["whole", "from-2", "1-to-5", "nulls"])
def test_numbers_are_finite_or_null_as_arrow_says(array):
    _, usable = columnar._number(array)
    assert usable.tolist() == pc.or_kleene(pc.is_null(array), pc.is_finite(array)).to_numpy(
        zero_copy_only=False).tolist()


@pytest.mark.parametrize("array", [pa.array(["a", None, "ccc"]).slice(1), pa.nulls(5, pa.string()),
                                   pa.array(["xx", "y" * 9], pa.large_string()).slice(1), pa.array([], pa.string()),
                                   pa.array(["é", "abc", None, "zzzz"]).slice(2, 2), pa.array([b"ab", b"\xff" * 9])],
                         ids=["sliced", "nulls", "large", "empty", "non-ascii-sliced", "binary"])
def test_the_longest_value_is_read_from_the_offsets(array):
    assert columnar.longest_bytes(array) == (pc.max(pc.binary_length(array)).as_py() or 0)


def test_text_that_is_not_utf8_is_refused_and_ascii_is_taken_as_it_is():
    ascii_text = pa.array(["req-1", None, "req-22"])
    assert columnar._text(ascii_text) is ascii_text
    assert columnar._text(pa.array(["ünïcödé", "ok"])).to_pylist() == ["ünïcödé", "ok"]
    # A value ending in half a character, the next one holding its rest: the bytes together are UTF-8.
    split = "é".encode()
    data = b"ok" + split[:1] + split[1:] + b"!"
    offsets = np.array([0, 3, 5], dtype=np.int32)
    invalid = pa.StringArray.from_buffers(2, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data))
    assert columnar._text(invalid) is None


@pytest.mark.parametrize("values", [[0, 1, 1, None, 0] * 40, list(range(200)), [-(2**62), 2**62, None]],
                         ids=["few-distinct", "all-distinct", "extremes"])
def test_integers_are_written_as_text_whatever_they_repeat(values):
    integers = pa.array(values, pa.int64())
    assert columnar._integer_text(integers).to_pylist() == [None if v is None else str(v) for v in values]

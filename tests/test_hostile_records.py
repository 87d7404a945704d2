"""Hostile records: each is quarantined with a clear reason and the run goes on, on SQLite and PostgreSQL.

Every case writes an otherwise normal day (good records and the hostile input
in one file), runs extract, validate, measure and load, and checks that every
good record is kept, the hostile one is quarantined with its reason and a
storable raw text, and that no text the warehouse holds is unstorable or over
its bound.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem
from logfiles import (
    arrow_table,
    label,
    make_model,
    partition,
    prediction,
    write_bytes,
    write_lines,
    write_records,
    write_table,
)

from modelwatch import batch, logs, pipeline
from modelwatch.config import ProjectConfig
from modelwatch.staging import PREDICTIONS, StagedBatch
from modelwatch.warehouse import schema
from modelwatch.warehouse.load import read_frame

START, END = datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC)
DAY = "2026-03-02"
HOSTILE = "hostile"  # request_id of the hostile record, where it has one
LONG = "x" * (batch.MAX_TEXT_CHARS + 1)


def good_predictions() -> list[dict]:
    return [
        prediction("good-0", "2026-03-02T01:00:00Z"),
        prediction("good-1", "2026-03-02T02:00:00Z", prediction=0, score=0.2),
        prediction("good-2", "2026-03-02T03:00:00Z", model_version="1"),
        prediction("good-3", "2026-03-02T04:00:00Z", status="error", error="Timeout", prediction=None, score=None,
                   features={}),
    ]


def good_labels() -> list[dict]:
    return [label("good-0", 1, "2026-03-02T20:00:00Z"), label("good-1", 0, "2026-03-02T21:00:00Z")]


# ---------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Case:
    """One hostile input; `write(folder, good)` writes `good` and it into one file of the partition."""

    id: str
    reason: str | None  # None: the record is kept, not quarantined
    write: Callable[[str, list[dict]], None]
    kind: str = "predictions"


def line(id: str, reason: str | None, text: str, kind: str = "predictions") -> Case:
    """A case whose hostile input is one JSONL line, written as it is (encoded as UTF-8)."""
    return Case(id, reason, lambda folder, good: write_lines(folder + "/a.jsonl", [*map(json.dumps, good), text]),
                kind)


def record(id: str, reason: str | None, **overrides) -> Case:
    """A case whose hostile input is a prediction with `overrides`, as JSONL."""
    return line(id, reason, json.dumps(prediction(overrides.pop("request_id", HOSTILE), **overrides)))


def features(**values) -> dict:
    return {"income": 52000.5, "country": "DE", "has_card": True, **values}


def parquet(id: str, reason: str | None, alter: Callable[[pa.Table], pa.Table] = lambda t: t, **overrides) -> Case:
    """A case whose hostile input is the last row of a Parquet file, `alter`ed as an Arrow table."""

    def write(folder: str, good: list[dict]) -> None:
        write_table(folder + "/a.parquet", alter(arrow_table([*good, prediction(HOSTILE, **overrides)])))

    return Case(id, reason, write)


def replaced(name: str, array: pa.Array) -> Callable[[pa.Table], pa.Table]:
    return lambda table: table.set_column(table.schema.get_field_index(name), name, array)


def invalid_utf8_request_id(table: pa.Table) -> pa.Table:
    values = pa.array([v.encode() for v in table["request_id"].to_pylist()[:-1]] + [b"hostile-\xff\xfe"])
    return replaced("request_id", pa.Array.from_buffers(pa.string(), len(values), values.buffers()))(table)


def context_as_map(table: pa.Table) -> pa.Table:
    rows = [list(c.items()) for c in table["context"].to_pylist()]
    rows[-1] = [("channel", "web\x00")]
    return replaced("context", pa.array(rows, pa.map_(pa.string(), pa.string())))(table)


def dictionary_version(table: pa.Table) -> pa.Table:
    versions = [*table["model_version"].to_pylist()[:-1], "3\x00"]
    return replaced("model_version", pa.array(versions).dictionary_encode())(table)


def year_ten_thousand(table: pa.Table) -> pa.Table:
    micros = [*pc.cast(table["timestamp"], pa.int64()).to_pylist()[:-1], 300_000_000_000_000_000]
    return replaced("timestamp", pa.array(micros, pa.int64()).cast(pa.timestamp("us", tz="UTC")))(table)


def feedback(id: str, reason: str, text: str) -> Case:
    return line(id, reason, text, "feedback")


CASES = [
    # NUL, escaped in JSON
    record("nul-request-id", "invalid_text:request_id", request_id="hostile\x00"),
    record("nul-model-name", "invalid_text:model_name", model_name="credit_risk\x00"),
    record("nul-model-version", "invalid_text:model_version", model_version="1\x00"),
    record("nul-status", "invalid_text:status", status="ok\x00"),
    record("nul-error", "invalid_text:error", status="error", error="Time\x00out", prediction=None, score=None),
    record("nul-prediction", "invalid_text:prediction", prediction="yes\x00"),
    record("nul-category", "invalid_text:features.country", features=features(country="DE\x00")),
    record("nul-context", "invalid_text:context.channel", context={"channel": "web\x00"}),
    record("nul-unnamed-feature-name", "invalid_text:features", features=features(**{"tenure\x00": 4})),
    # a raw NUL byte is not JSON at all
    line("raw-nul-byte", "invalid_json: Invalid control character at at column 112",
         json.dumps(prediction(HOSTILE, model_version="1")).replace('"1"', '"1\x00"')),
    # unpaired surrogates; a valid pair is an ordinary character
    record("lone-surrogate-version", "invalid_text:model_version", model_version="3\ud800"),
    record("lone-low-surrogate-category", "invalid_text:features.country", features=features(country="\udc00DE")),
    record("lone-surrogate-context", "invalid_text:context.channel", context={"channel": "web\udbff"}),
    record("surrogate-pair-is-kept", None, context={"channel": "web\U0001f600"}),
    # lengths
    record("long-request-id", "value_too_long:request_id", request_id=LONG),
    record("long-model-version", "value_too_long:model_version", model_version=LONG),
    record("long-status", "value_too_long:status", status=LONG),
    record("long-prediction", "value_too_long:prediction", prediction=LONG),
    record("long-category", "value_too_long:features.country", features=features(country=LONG)),
    record("long-category-code", "value_too_long:features.country", features=features(country=10**300)),
    record("long-context", "value_too_long:context.channel", context={"channel": LONG}),
    record("long-error", "value_too_long:error", status="error", prediction=None, score=None,
           error="e" * (batch.MAX_ERROR_CHARS + 1)),
    record("long-unnamed-features", "value_too_long:features",
           features=features(notes="n" * batch.MAX_EXTRA_FEATURES_CHARS)),
    record("values-at-their-bounds-are-kept", None, request_id="r" * batch.MAX_TEXT_CHARS,
           model_version="v" * batch.MAX_TEXT_CHARS, status="error", prediction=None, score=None,
           error="e" * batch.MAX_ERROR_CHARS, context={"channel": "c" * batch.MAX_TEXT_CHARS}),
    line("record-too-large", "record_too_large",
         json.dumps(prediction(HOSTILE, features=features(country="D" * batch.MAX_RECORD_BYTES)))),
    # pathological JSON
    line("nested-10000-deep", "invalid_json: nested too deeply", "[" * 10_000 + "]" * 10_000),
    record("unnamed-feature-nested-too-deeply", "wrong_type:features",
           features=features(tree=json.loads("[" * batch.MAX_JSON_DEPTH + "]" * batch.MAX_JSON_DEPTH))),
    record("unnamed-feature-nested-to-the-limit-is-kept", None,
           features=features(tree=json.loads("[" * (batch.MAX_JSON_DEPTH - 1) + "]" * (batch.MAX_JSON_DEPTH - 1)))),
    record("prediction-nested-near-the-parser-limit", "wrong_type:prediction",
           prediction=json.loads("[" * 900 + "]" * 900)),
    record("unnamed-feature-nested-near-the-parser-limit", "wrong_type:features",
           features=features(tree=json.loads("[" * 900 + "]" * 900))),
    line("integer-of-5000-digits", "invalid_json: Exceeds the limit (4300 digits) for integer string conversion",
         json.dumps(prediction(HOSTILE)).replace('"latency_ms": 12.4', '"latency_ms": ' + "9" * 5000)),
    line("huge-exponent", "non_finite:latency_ms",
         json.dumps(prediction(HOSTILE)).replace('"latency_ms": 12.4', '"latency_ms": 1e999')),
    record("integer-beyond-double", "non_finite:latency_ms", latency_ms=10**400),
    record("negative-integer-beyond-double", "non_finite:score", score=-(10**400)),
    record("infinite-category-code", "non_finite:features.country", features=features(country=float("inf"))),
    line("bom-and-garbage", "invalid_json: Unexpected UTF-8 BOM (decode using utf-8-sig) at column 1",
         "\ufeff" + json.dumps(prediction(HOSTILE))),
    # Parquet
    parquet("parquet-nul-version", "invalid_text:model_version", model_version="3\x00"),
    parquet("parquet-nul-struct-category", "invalid_text:features.country", features=features(country="DE\x00")),
    parquet("parquet-nul-map-context", "invalid_text:context.channel", context_as_map),
    parquet("parquet-nul-dictionary-version", "invalid_text:model_version", dictionary_version),
    parquet("parquet-nul-field-name", "invalid_text:features", features=features(**{"tenure\x00": 4})),
    parquet("parquet-long-category", "value_too_long:features.country",
            features=features(country="D" * (10 * batch.RAW_TEXT_LIMIT))),
    parquet("parquet-long-unnamed-feature", "value_too_long:features",
            features=features(notes="n" * (10 * batch.MAX_EXTRA_FEATURES_CHARS))),
    parquet("parquet-huge-binary-in-raw", "invalid_status", status="maybe", blob=b"\x00" * 10 * batch.RAW_TEXT_LIMIT),
    parquet("parquet-timestamp-beyond-year-9999", "invalid_timestamp:timestamp", year_ten_thousand),
    # bytes that are not UTF-8 read as U+FFFD, in Parquet as in JSONL
    parquet("parquet-invalid-utf8-is-replaced", None, invalid_utf8_request_id),
    Case("jsonl-invalid-utf8-is-replaced", None, lambda folder, good: write_bytes(
        folder + "/a.jsonl",
        "\n".join(map(json.dumps, good)).encode() + b"\n"
        + json.dumps(prediction(HOSTILE)).encode().replace(b'"3"', b'"3\xff"'),
    )),
    # feedback
    feedback("feedback-nul-label", "invalid_text:label", json.dumps(label(HOSTILE, "yes\x00"))),
    feedback("feedback-surrogate-request-id", "invalid_text:request_id", json.dumps(label("hostile\udfff"))),
    feedback("feedback-long-label", "value_too_long:label", json.dumps(label(HOSTILE, LONG))),
]


# ---------------------------------------------------------------- running a day


def run_day(tmp_path: Path, url: str, write: Callable[[str], None] | None = None) -> dict:
    """Write good logs (and `write` the partition), run every task of the day; return the manifest."""
    root = str(tmp_path / "logs")
    model = make_model(root, label_maturity_intervals=0)
    config = ProjectConfig(staging_root=str(tmp_path / "staging"), models=[model])
    if write is not None:
        write(root)
    name = model.name
    staged = pipeline.extract(name, START, END, config=config)
    pipeline.validate(name, staged["folder"], START, END, config=config, warehouse_url=url)
    pipeline.measure(name, staged["folder"], START, END, config=config, warehouse_url=url)
    pipeline.load(name, staged["folder"], START, END, "run-1", config=config, warehouse_url=url)
    return staged


def write_case(case: Case) -> Callable[[str], None]:
    def write(root: str) -> None:
        predictions = partition(root, "predictions", DAY)
        if case.kind == "predictions":
            case.write(predictions, good_predictions())
        else:
            write_records(predictions + "/a.jsonl", good_predictions())
            case.write(partition(root, "feedback", DAY), good_labels())

    return write


def warehouse_text(url: str) -> dict[tuple[str, str], list[str]]:
    """Every text value the warehouse holds, by (table, column)."""
    engine = pipeline.warehouse_engine(url)
    found: dict[tuple[str, str], list[str]] = {}
    for table in schema.metadata.sorted_tables:
        frame = read_frame(engine, table.select())
        for column in frame.columns:
            found[(table.name, column)] = [v for v in frame[column] if isinstance(v, str)]
    return found


def assert_storable(text: str) -> None:
    assert "\x00" not in text
    text.encode("utf-8")  # raises on an unpaired surrogate


def assert_within_bounds(url: str, folder: str) -> None:
    """No stored text is unstorable, and none is over its bound, in the warehouse or the staged batch."""
    for (table, column), values in warehouse_text(url).items():
        for value in values:
            assert_storable(value)
            assert len(value) <= batch.RAW_TEXT_LIMIT + 1, (table, column, len(value))
    staged = StagedBatch(folder).read(PREDICTIONS)
    bounds = {"request_id": batch.MAX_TEXT_CHARS, "model_version": batch.MAX_TEXT_CHARS,
              "status": batch.MAX_TEXT_CHARS, "prediction": batch.MAX_TEXT_CHARS, "error": batch.MAX_ERROR_CHARS,
              "extra_features": batch.MAX_EXTRA_FEATURES_CHARS, "feature__country": batch.MAX_TEXT_CHARS,
              "context__channel": batch.MAX_TEXT_CHARS}
    for column, bound in bounds.items():
        for value in staged[column].dropna().astype(str):
            assert_storable(value)
            assert len(value) <= bound, (column, len(value))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_hostile_record_is_quarantined_and_the_day_loads(case: Case, tmp_path, warehouse_url):
    manifest = run_day(tmp_path, warehouse_url, write_case(case))

    kept = 0 if case.reason else 1
    quarantined = read_frame(pipeline.warehouse_engine(warehouse_url),
                             "SELECT kind, source_file, line_number, reason, raw FROM quarantined_records")
    if case.kind == "predictions":
        assert manifest["rows_valid"] == len(good_predictions()) + kept
        assert manifest["rows_read"] == len(good_predictions()) + 1
    else:
        assert manifest["labels_kept"] == len(good_labels())
    assert manifest["damaged_files"] == []
    assert quarantined["reason"].tolist() == ([case.reason] if case.reason else [])
    for row in quarantined.itertuples():
        assert row.kind == case.kind
        assert row.line_number == (len(good_labels()) if case.kind == "feedback" else len(good_predictions())) + 1
        assert row.source_file.endswith("/a.jsonl") or row.source_file.endswith("/a.parquet")
        assert_storable(row.raw)
        assert 0 < len(row.raw) <= batch.RAW_TEXT_LIMIT + 1
    assert_within_bounds(warehouse_url, manifest["folder"])


def test_a_version_with_a_nul_does_not_count_as_its_prefix(tmp_path, warehouse_url):
    run_day(tmp_path, warehouse_url, write_case(record("nul", "invalid_text:model_version", model_version="1\x00")))
    versions = read_frame(
        pipeline.warehouse_engine(warehouse_url),
        "SELECT model_version, sample_size FROM model_metrics WHERE metric = 'request_count' AND segment = 'all'",
    )
    assert dict(zip(versions["model_version"], versions["sample_size"], strict=True)) == {"all": 4, "1": 1, "3": 3}


def test_raw_text_is_escaped_by_the_one_rule(tmp_path, warehouse_url):
    text = json.dumps(prediction(HOSTILE, model_version="1\x00", context={"channel": "\ud800"}))
    run_day(tmp_path, warehouse_url, write_case(line("escaped", "invalid_text:model_version", text)))
    raw = read_frame(pipeline.warehouse_engine(warehouse_url), "SELECT raw FROM quarantined_records")["raw"][0]
    assert raw == text  # json.dumps already wrote NUL and the surrogate as \u escapes: read verbatim
    assert json.loads(raw)["model_version"] == "1\x00"


def test_a_file_name_that_is_not_utf8_is_escaped(tmp_path, warehouse_url):
    def write(root: str) -> None:
        folder = partition(root, "predictions", DAY)
        write_records(folder + "/a.jsonl", good_predictions())
        os.makedirs(folder, exist_ok=True)
        with open(os.fsencode(folder) + b"/b\xff.jsonl", "wb") as handle:
            handle.write(json.dumps(prediction(HOSTILE, status="maybe")).encode())

    manifest = run_day(tmp_path, warehouse_url, write)

    assert manifest["rows_valid"] == len(good_predictions())
    quarantined = read_frame(pipeline.warehouse_engine(warehouse_url), "SELECT source_file FROM quarantined_records")
    assert quarantined["source_file"].tolist() == [partition(str(tmp_path / "logs"), "predictions", DAY)
                                                   + "/b\\udcff.jsonl"]
    assert_within_bounds(warehouse_url, manifest["folder"])


# ---------------------------------------------------------------- files that are not files


def test_a_fifo_or_directory_named_like_a_log_is_skipped_and_reported(tmp_path, warehouse_url):
    root = str(tmp_path / "logs")
    folder = partition(root, "predictions", DAY)
    write_records(folder + "/a.jsonl", good_predictions())
    write_records(str(tmp_path / "elsewhere.jsonl"), [prediction("linked")])
    os.mkfifo(folder + "/stuck.jsonl")
    os.symlink(folder + "/stuck.jsonl", folder + "/to-stuck.jsonl")
    os.symlink(str(tmp_path / "elsewhere.jsonl"), folder + "/linked.jsonl")
    os.symlink(str(tmp_path / "nowhere.jsonl"), folder + "/broken.jsonl")
    os.makedirs(folder + "/folder.parquet")
    result: dict = {}

    def extract() -> None:
        try:
            result.update(run_day(tmp_path, warehouse_url))
        except Exception as exc:  # raised again in the test's thread
            result["error"] = exc

    worker = threading.Thread(target=extract, daemon=True)
    worker.start()
    worker.join(timeout=30)
    if worker.is_alive():
        os.close(os.open(folder + "/stuck.jsonl", os.O_WRONLY | os.O_NONBLOCK))  # unblock the reader
        pytest.fail("extract blocked on a FIFO")
    if "error" in result:
        raise result["error"]

    assert result["rows_valid"] == len(good_predictions()) + 1  # a link to a regular file is read
    assert result["ignored_files"] == [
        f"{folder}/broken.jsonl (broken link)",
        f"{folder}/folder.parquet (not a regular file)",
        f"{folder}/stuck.jsonl (not a regular file)",
        f"{folder}/to-stuck.jsonl (not a regular file)",
    ]


# ---------------------------------------------------------------- reading without unbounded memory


def test_jsonl_chunks_are_bounded_in_bytes(tmp_path, monkeypatch):
    path = str(tmp_path / "a.jsonl")
    records = [prediction(f"r{i}") for i in range(10)]
    write_records(path, records)
    size = len(json.dumps(records[0])) + 1
    monkeypatch.setattr(batch, "MAX_CHUNK_BYTES", 3 * size)
    chunks = [block.raw(None) for block in logs.iter_blocks(path, logs.PREDICTION_FIELDS, [], [], [])]
    assert [len(c) for c in chunks] == [3, 3, 3, 1]


def test_an_oversized_line_is_skipped_not_read(tmp_path):
    path = str(tmp_path / "a.jsonl")
    huge = json.dumps(prediction(HOSTILE, features=features(country="D" * (3 * batch.MAX_RECORD_BYTES))))
    write_lines(path, [json.dumps(prediction("before")), huge, json.dumps(prediction("after"))])
    (block,) = logs.iter_blocks(path, logs.PREDICTION_FIELDS, ["country"], [], [])
    chunk = block.raw(None)
    assert chunk.reasons.tolist() == [None, "record_too_large", None]
    assert chunk.fields["request_id"].tolist() == ["before", logs._MISSING, "after"]
    assert chunk.line_numbers.tolist() == [1, 2, 3]
    assert chunk.raw_text([1]) == [huge[: batch.RAW_TEXT_LIMIT] + "…"]


class _RemoteFile(AbstractBufferedFile):
    """A file as remote fsspec filesystems (s3, gcs, ...) hand them out: its readline takes no size."""

    def _fetch_range(self, start: int, end: int) -> bytes:
        return self.fs.data[start:end]


class _RemoteFileSystem(AbstractFileSystem):
    protocol = "remote-test"

    def __init__(self, data: bytes):
        super().__init__(skip_instance_cache=True)
        self.data = data

    def _open(self, path, mode="rb", **kwargs):
        return _RemoteFile(self, path, mode, size=len(self.data), block_size=1 << 16)


def test_an_oversized_line_is_skipped_on_remote_storage_too():
    lines = [json.dumps(prediction("before")), "x" * (2 * batch.MAX_RECORD_BYTES), json.dumps(prediction("after"))]
    read = list(logs._iter_jsonl_lines(_RemoteFileSystem("\n".join(lines).encode()), "a.jsonl", []))
    assert [(number, text[:10].decode(), size) for number, text, size in read] == [
        (1, lines[0][:10], len(lines[0]) + 1),
        (2, "x" * 10, batch.MAX_RECORD_BYTES + 1),
        (3, lines[2][:10], len(lines[2])),
    ]


PEAK_RSS = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from datetime import UTC, datetime
    from logfiles import make_model
    from modelwatch import pipeline
    from modelwatch.config import ProjectConfig

    model = make_model({root!r})
    config = ProjectConfig(staging_root={staging!r}, models=[model])
    pipeline.extract(model.name, datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC), config=config)
    # ru_maxrss would count the parent's pages the child had before exec; VmHWM is this process's own peak.
    print(dict(line.split(":") for line in open("/proc/self/status"))["VmHWM"].split()[0])
    """
)


def peak_rss_kb(tmp_path: Path, name: str, suffix: str, hostile: dict | None) -> int:
    """Peak RSS of a child process that extracts a day of 20,000 records (and `hostile`)."""
    root = str(tmp_path / name / "logs")
    records = [prediction(f"r{i}", f"2026-03-02T{i % 24:02d}:{i % 60:02d}:00Z") for i in range(20_000)]
    write_records(partition(root, "predictions", DAY) + "/a" + suffix, records + ([hostile] if hostile else []))
    code = PEAK_RSS.format(tests=str(Path(__file__).parent), root=root, staging=str(tmp_path / name / "staging"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_a_50_mb_value_keeps_extract_memory_flat(tmp_path, suffix):
    value_bytes = 50 * 2**20
    hostile = prediction(HOSTILE, features=features(country="D" * value_bytes))
    without = peak_rss_kb(tmp_path, "without", suffix, None)
    with_value = peak_rss_kb(tmp_path, "with", suffix, hostile)
    print(f"{suffix}: peak RSS {without / 1024:.0f} MB without, {with_value / 1024:.0f} MB with a 50 MB value")
    assert with_value <= 2 * without
    if suffix == ".jsonl":  # never read whole: far less than the value itself
        assert with_value - without < value_bytes / 1024 / 5


# ---------------------------------------------------------------- the one cleaning rule


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("a\x00b", "a\\u0000b"),
        ("\ud800", "\\ud800"),
        ("x\udcffy", "x\\udcffy"),
        ("é and \U0001f600", "é and \U0001f600"),
    ],
)
def test_safe_text_escapes_nul_and_unpaired_surrogates_only(text, expected):
    assert batch.safe_text(text) == expected
    assert batch.is_safe_text(expected)
    assert batch.is_safe_text(text) == (text == expected)

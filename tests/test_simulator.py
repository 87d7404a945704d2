"""The production simulator: real files, a real MLflow mlflow_store, small volumes."""

from __future__ import annotations

import argparse
import gzip
import json
import math
import zlib
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelwatch import registry, settings, simulator
from modelwatch.config import load_config, parse_config
from modelwatch.simulation import (
    DEFAULT_SCHEDULE,
    KINDS,
    Incident,
    IncidentError,
    load_incidents,
    parse_incident,
    simulate,
)
from modelwatch.simulation.incidents import QUALITY_BREAK_COUNTS

START = date(2026, 3, 1)
REQUESTS = 500
NUMBER = (int, float)


# --- reading logs back


def read_bytes(name: str, data: bytes) -> tuple[list[dict], int]:
    """Records of one file and the number of lines that are not valid JSON."""
    if name.endswith(".parquet"):
        return pq.read_table(pa.BufferReader(data)).to_pylist(), 0
    if name.endswith(".gz"):
        data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)
    records, bad = [], 0
    for line in data.decode().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            bad += 1
    return records, bad


def partitions(root: str, model: str, kind: str) -> dict[str, dict[str, bytes]]:
    """dt -> file name -> bytes, through fsspec so any root works."""
    fs, base = fsspec.core.url_to_fs(root)
    found: dict[str, dict[str, bytes]] = defaultdict(dict)
    for path in sorted(fs.find(f"{base}/{model}/{kind}")):
        dt = path.split("dt=")[1].split("/")[0]
        found[dt][path.rsplit("/", 1)[1]] = fs.cat_file(path)
    return dict(found)


def records(root: str, model: str, kind: str, skip: tuple[str, ...] = ()) -> list[dict]:
    """Every readable record with `_dt` and `_file` added (files named in `skip` left out)."""
    rows = []
    for dt, files in partitions(root, model, kind).items():
        for name, data in files.items():
            if any(part in name for part in skip):
                continue
            for record in read_bytes(name, data)[0]:
                rows.append({**record, "_dt": dt, "_file": name})
    return rows


def instant(value) -> datetime:
    if isinstance(value, datetime):
        return value
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value)


def by_day(rows: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        grouped[row["_dt"]].append(row)
    return grouped


def day(offset: int) -> str:
    return (START + timedelta(days=offset)).isoformat()


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def joined(root: str, model: str, days: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(label, prediction, score) of answered requests of `days`, latest label per request."""
    latest: dict[str, tuple[datetime, float]] = {}
    for row in records(root, model, "feedback"):
        when = instant(row["label_timestamp"])
        if row["request_id"] not in latest or when >= latest[row["request_id"]][0]:
            latest[row["request_id"]] = (when, row["label"])
    rows = [
        r for r in records(root, model, "predictions") if r["_dt"] in days and r["status"] == "ok"
    ]
    rows = [r for r in rows if r["request_id"] in latest]
    label = np.array([latest[r["request_id"]][1] for r in rows], dtype=float)
    prediction = np.array([r["prediction"] for r in rows], dtype=float)
    score = np.array([r.get("score") or 0.0 for r in rows], dtype=float)
    return label, prediction, score


# --- fixtures


@pytest.fixture(scope="module")
def config():
    return load_config(settings.SHIPPED_CONFIG)


def run(config, root, **options):
    options = {
        "start": START,
        "requests_per_day": REQUESTS,
        "progress": lambda line: None,
        **options,
    }
    return simulate(config, root=str(root), **options)


@pytest.fixture(scope="module")
def demo(tmp_path_factory, mlflow_store, config):
    """The default schedule over 14 days, at 500 requests a day."""
    root = tmp_path_factory.mktemp("demo")
    return str(root), run(config, root, days=14)


@pytest.fixture(scope="module")
def clean(tmp_path_factory, mlflow_store, config):
    """Six days without incidents."""
    root = tmp_path_factory.mktemp("clean")
    return str(root), run(config, root, days=6, incidents=[])


# --- determinism and layout


def test_same_seed_writes_identical_bytes_and_reuses_registered_versions(tmp_path, demo, config):
    root, first = demo
    versions_before = {name: len(registry.list_versions(name)) for name in first.models}
    second = run(config, tmp_path, days=14)
    for model in ("credit_risk", "delivery_time"):
        for kind in ("predictions", "feedback"):
            assert partitions(root, model, kind) == partitions(str(tmp_path), model, kind)
        assert second.models[model].trained == []
        assert second.models[model].reused == sorted(first.models[model].trained, key=int)
        assert len(registry.list_versions(model)) == versions_before[model]


def test_another_seed_writes_other_data(tmp_path, clean, config):
    root, _ = clean
    run(config, tmp_path, days=1, seed=8, models=["delivery_time"], incidents=[])
    mine = partitions(str(tmp_path), "delivery_time", "predictions")[day(0)]
    theirs = partitions(root, "delivery_time", "predictions")[day(0)]
    assert sorted(mine) != [] and all(mine[name] != theirs.get(name) for name in mine)


def test_every_day_mixes_all_three_formats(demo):
    root, _ = demo
    for model in ("credit_risk", "delivery_time"):
        for dt, files in partitions(root, model, "predictions").items():
            assert {name.split(".", 1)[1] for name in files} == {"jsonl", "jsonl.gz", "parquet"}, dt


def test_gzip_and_parquet_files_are_reproducible_in_form(demo):
    root, _ = demo
    files = partitions(root, "credit_risk", "predictions")[day(0)]
    gz = next(data for name, data in files.items() if name.endswith(".gz"))
    assert gz[4:8] == b"\x00\x00\x00\x00"  # gzip mtime field
    parquet = next(name for name in files if name.endswith(".parquet"))
    schema = pq.read_schema(pa.BufferReader(files[parquet]))
    assert schema.field("timestamp").type == pa.timestamp("ms", tz="UTC")
    assert pa.types.is_struct(schema.field("features").type)
    assert pa.types.is_struct(schema.field("context").type)
    assert schema.metadata is None or b"pandas" not in schema.metadata


def test_days_are_written_in_blocks_of_bounded_size(tmp_path, mlflow_store, config):
    summary = run(
        config,
        tmp_path,
        days=1,
        requests_per_day=6000,
        block_rows=1000,
        models=["delivery_time"],
        incidents=[],
    )
    files = partitions(str(tmp_path), "delivery_time", "predictions")[day(0)]
    sizes = [len(read_bytes(name, data)[0]) for name, data in files.items()]
    assert sum(sizes) == summary.day_rows[0].requests
    assert len(files) >= 6 and max(sizes) < 1300


def test_memory_root(mlflow_store, config):
    root = "memory://modelwatch-simulator-test"
    summary = run(config, root, days=2, models=["credit_risk"], incidents=[])
    rows = records(root, "credit_risk", "predictions")
    assert len(rows) == summary.totals()["credit_risk"]["requests"]
    assert records(root, "credit_risk", "feedback")
    fsspec.filesystem("memory").rm("/modelwatch-simulator-test", recursive=True)


def test_a_configured_reference_dataset_is_written(tmp_path, mlflow_store, config):
    from modelwatch import drift

    run(config, tmp_path, days=1, incidents=[])

    delivery = config.model("delivery_time")
    reference = pq.read_table(settings.resolve_root(delivery.reference.dataset)).to_pandas()
    assert len(reference) == 50_000
    assert set(reference.columns) == {f.name for f in delivery.features} | {"prediction"}
    assert reference["prediction"].between(0, 200).all()
    built = drift.reference_from_frame(reference, delivery)
    assert set(built.features) == set(drift.monitored_columns(delivery))
    # credit_risk compares against its trailing intervals: nothing to write for it.
    assert config.model("credit_risk").reference.dataset is None
    written = fsspec.filesystem("file").find(settings.resolve_root("reference"))
    assert [path.rsplit("/", 1)[1] for path in written] == ["delivery_time.parquet"]


def test_a_rerun_replaces_the_partitions_of_its_period(tmp_path, mlflow_store, config):
    run(config, tmp_path, days=1, models=["credit_risk"], incidents=[])
    run(config, tmp_path, days=1, models=["credit_risk"], incidents=[], formats=["parquet"])
    files = partitions(str(tmp_path), "credit_risk", "predictions")[day(0)]
    assert files and all(name.endswith(".parquet") for name in files)


# --- the log contract


def check_prediction(record: dict, model, dt: str) -> None:
    """One prediction record against the log contract and the model's configuration."""
    assert isinstance(record["request_id"], str) and record["request_id"]
    assert instant(record["timestamp"]).astimezone(UTC).date().isoformat() == dt
    assert record["model_name"] == model.name
    assert isinstance(record["model_version"], str)
    assert isinstance(record["latency_ms"], NUMBER) and math.isfinite(record["latency_ms"])
    assert record["latency_ms"] >= 0
    assert all(isinstance(v, str) for v in record["context"].values())
    assert "channel" in record["context"]
    features = record["features"]
    if record["status"] == "error":
        assert isinstance(record["error"], str)
        assert record.get("prediction") is None and record.get("score") is None
        if not any(v is not None for v in features.values()):
            return
    else:
        assert record["status"] == "ok" and record.get("error") is None
        assert isinstance(record["prediction"], NUMBER)
        if model.task == "binary_classification":
            assert 0.0 <= record["score"] <= 1.0 and record["prediction"] in (0, 1)
    assert set(features) == {f.name for f in model.features}
    for feature in model.features:
        value = features[feature.name]
        if feature.type == "numeric":
            assert isinstance(value, NUMBER) and not isinstance(value, bool)
            assert feature.min <= value <= feature.max
        elif feature.type == "categorical":
            assert value in feature.allowed_values
        else:
            assert isinstance(value, bool)


def test_records_follow_the_contract(demo, clean, config):
    damaged = ("credit_risk", day(2))
    for root, _ in (clean, demo):
        for model in config.models:
            for record in records(root, model.name, "predictions"):
                if (model.name, record["_dt"]) != damaged:
                    check_prediction(record, model, record["_dt"])
            for record in records(root, model.name, "feedback"):
                assert isinstance(record["request_id"], str)
                assert isinstance(record["label"], NUMBER)
                assert instant(record["label_timestamp"]).date().isoformat() == record["_dt"]


def test_errors_are_about_two_percent_with_types_and_latency(clean):
    root, summary = clean
    rows = records(root, "credit_risk", "predictions")
    failed = [r for r in rows if r["status"] == "error"]
    assert 0.01 < len(failed) / len(rows) < 0.035
    assert {r["error"] for r in failed} <= {"UpstreamError", "Timeout", "InvalidInput", "OOM"}
    assert any(
        r["features"] == {} or all(v is None for v in r["features"].values()) for r in failed
    )
    latency = np.array([r["latency_ms"] for r in rows if r["status"] == "ok"])
    assert 10 < np.median(latency) < 60
    assert sum(row.errors for row in summary.day_rows if row.model == "credit_risk") == len(failed)


def test_traffic_follows_a_daily_curve(clean):
    root, _ = clean
    hours = Counter(
        instant(r["timestamp"]).hour for r in records(root, "delivery_time", "predictions")
    )
    assert hours[19] > 3 * hours[3]


def test_labels_arrive_late_with_corrections_and_orphans(clean):
    root, summary = clean
    predictions = records(root, "credit_risk", "predictions")
    served = {r["request_id"]: instant(r["timestamp"]) for r in predictions}
    feedback = records(root, "credit_risk", "feedback")
    end = datetime(2026, 3, 7, tzinfo=UTC)
    assert all(instant(r["label_timestamp"]) < end for r in feedback)

    orphans = [r for r in feedback if r["request_id"] not in served]
    assert orphans and all("-99-" in r["request_id"] for r in orphans)
    labels_of: dict[str, list[dict]] = defaultdict(list)
    for r in feedback:
        labels_of[r["request_id"]].append(r)
    corrected = [rows for rows in labels_of.values() if len(rows) > 1]
    assert corrected and all(len({r["label"] for r in rows}) == 2 for rows in corrected)

    delays = [
        (instant(r["label_timestamp"]) - served[r["request_id"]]).total_seconds() / 86400
        for r in feedback
        if r["request_id"] in served
    ]
    assert min(delays) > 0 and 1.0 < float(np.median(delays)) < 3.0
    first_day = [r for r in predictions if r["_dt"] == day(0) and r["status"] == "ok"]
    coverage = sum(r["request_id"] in labels_of for r in first_day) / len(first_day)
    assert 0.75 < coverage < 0.93
    assert sum(row.labels for row in summary.day_rows if row.model == "credit_risk") == len(
        feedback
    )


# --- incidents


def test_default_schedule_has_each_kind_once():
    assert sorted(i.kind for i in DEFAULT_SCHEDULE) == sorted(KINDS)
    assert len({i.offset(START) for i in DEFAULT_SCHEDULE if i.model == "credit_risk"}) == 4


def test_error_burst_raises_the_error_share(demo):
    root, _ = demo
    share = {
        dt: np.mean([r["status"] == "error" for r in rows])
        for dt, rows in by_day(records(root, "credit_risk", "predictions")).items()
    }
    assert share[day(5)] > 0.1
    assert max(v for dt, v in share.items() if dt != day(5)) < 0.05


def test_latency_spike_raises_p99(demo):
    root, _ = demo
    p99 = {
        dt: np.percentile([r["latency_ms"] for r in rows if r["status"] == "ok"], 99)
        for dt, rows in by_day(records(root, "delivery_time", "predictions")).items()
    }
    others = [v for dt, v in p99.items() if dt != day(3)]
    assert p99[day(3)] > 3 * np.median(others) and p99[day(3)] > 150


def _daily_mean(root: str, model: str, feature: str) -> dict[str, float]:
    return {
        dt: float(np.mean([r["features"][feature] for r in rows if r["status"] == "ok"]))
        for dt, rows in by_day(records(root, model, "predictions")).items()
    }


def test_gradual_drift_moves_a_feature_progressively(demo):
    root, _ = demo
    mean = _daily_mean(root, "delivery_time", "distance_km")
    before = np.mean([mean[day(i)] for i in range(6)])
    assert mean[day(7)] < mean[day(10)] < mean[day(13)]
    assert mean[day(6)] < 1.15 * before and mean[day(13)] > 1.4 * before


def test_sudden_drift_jumps_on_its_first_day(demo):
    root, _ = demo
    share = {
        dt: np.mean([r["features"]["country"] == "PL" for r in rows if r["status"] == "ok"])
        for dt, rows in by_day(records(root, "credit_risk", "predictions")).items()
    }
    assert max(share[day(i)] for i in range(7)) < 0.2
    assert min(share[day(i)] for i in range(7, 14)) > 0.35


def test_concept_drift_changes_labels_not_features(tmp_path, clean, config):
    root, _ = clean
    run(
        config,
        tmp_path,
        days=4,
        models=["delivery_time"],
        incidents=[Incident("concept_drift", 2, "delivery_time")],
    )
    mine = partitions(str(tmp_path), "delivery_time", "predictions")
    theirs = partitions(root, "delivery_time", "predictions")
    assert all(mine[day(i)] == theirs[day(i)] for i in range(4))
    before = joined(str(tmp_path), "delivery_time", [day(0), day(1)])
    after = joined(str(tmp_path), "delivery_time", [day(2), day(3)])
    assert np.mean(np.abs(after[0] - after[1])) > 3 * np.mean(np.abs(before[0] - before[1]))


def test_bad_version_serves_from_its_day_and_moves_the_champion(tmp_path, demo, config):
    root, summary = demo
    versions = {
        dt: {r["model_version"] for r in rows}
        for dt, rows in by_day(records(root, "credit_risk", "predictions")).items()
    }
    baseline = summary.models["credit_risk"].baseline_version
    bad = summary.models["credit_risk"].champion_version
    assert bad != baseline
    assert all(versions[day(i)] == {baseline} for i in range(11))
    assert all(versions[day(i)] == {bad} for i in range(11, 14))
    tags = {v.version: v.tags for v in registry.list_versions("credit_risk")}
    assert tags[bad]["modelwatch.simulator.role"] == "bad_version"

    run(config, tmp_path, days=1, models=["credit_risk"], incidents=[])
    assert registry.champion_version("credit_risk") == baseline
    again = run(
        config,
        tmp_path,
        days=2,
        models=["credit_risk"],
        incidents=[Incident("bad_version", 1, "credit_risk")],
    )
    assert again.models["credit_risk"].reused == sorted([baseline, bad], key=int)
    assert registry.champion_version("credit_risk") == bad
    good = joined(root, "credit_risk", [day(i) for i in range(6, 11)])
    worse = joined(root, "credit_risk", [day(11), day(12)])
    assert auc(good[0], good[2]) - auc(worse[0], worse[2]) > 0.1


def test_label_delay_makes_labels_late(demo):
    root, _ = demo
    served = {
        r["request_id"]: (r["_dt"], instant(r["timestamp"]))
        for r in records(root, "delivery_time", "predictions")
    }
    delays: dict[str, list[float]] = defaultdict(list)
    for r in records(root, "delivery_time", "feedback"):
        if r["request_id"] in served:
            dt, when = served[r["request_id"]]
            delays[dt].append((instant(r["label_timestamp"]) - when).total_seconds() / 86400)
    normal = np.median(np.concatenate([delays[day(i)] for i in range(3)]))
    late = np.median(np.concatenate([delays[day(i)] for i in range(4, 7)]))
    assert late > 2.5 * normal


def test_data_quality_break_writes_known_counts_of_each_kind(demo, config):
    root, summary = demo
    dt = day(2)
    report = summary.models["credit_risk"].quality_breaks[dt]
    written = report["records"]
    assert {k: written[k] for k in QUALITY_BREAK_COUNTS} == QUALITY_BREAK_COUNTS
    model = config.model("credit_risk")
    files = partitions(root, "credit_risk", "predictions")[dt]

    cut = report["files"]["cut"]
    rows, _ = read_bytes(cut, files[cut])
    assert len(rows) == written["truncated_gz_readable"] < written["truncated_gz"]
    with pytest.raises(EOFError):
        gzip.decompress(files[cut])

    bad_lines = sum(read_bytes(name, data)[1] for name, data in files.items() if name != cut)
    assert bad_lines == written["malformed_json"]

    rows = [
        r
        for r in records(root, "credit_risk", "predictions")
        if r["_dt"] == dt and r["_file"] != cut
    ]
    ok = [r for r in rows if r["status"] == "ok"]
    feature = report["features"]
    income_max = model.feature(feature["out_of_range"]).max
    counts = {
        "nulls": sum(r["features"][feature["nulls"]] is None for r in ok),
        "out_of_range": sum(
            isinstance(v := r["features"][feature["out_of_range"]], NUMBER) and v > income_max
            for r in ok
        ),
        "new_category": sum(
            r["features"][feature["new_category"]]
            not in model.feature(feature["new_category"]).allowed_values
            for r in ok
        ),
        "wrong_type": sum(isinstance(r["features"][feature["wrong_type"]], str) for r in ok),
        "wrong_partition": sum(instant(r["timestamp"]).date().isoformat() != dt for r in rows),
        "model_name_mismatch": sum(r["model_name"] != "credit_risk" for r in rows),
        "score_out_of_range": sum(not 0 <= r["score"] <= 1 for r in ok),
        "negative_latency": sum(r["latency_ms"] < 0 for r in rows),
        "non_finite_latency": sum(not math.isfinite(r["latency_ms"]) for r in rows),
    }
    assert counts == {kind: written[kind] for kind in counts}

    seen: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        content = {k: v for k, v in r.items() if not k.startswith("_")}
        seen[r["request_id"]].append(json.dumps(content, sort_keys=True, default=str))
    repeated = [versions for versions in seen.values() if len(versions) > 1]
    assert sum(len(set(v)) == 1 for v in repeated) == written["duplicates"]
    assert sum(len(set(v)) > 1 for v in repeated) == written["conflicting_duplicates"]


# --- specs, files and the CLI


def test_incident_spec_grammar():
    incident = parse_incident("sudden_drift@5:credit_risk,feature=income,factor=1.8")
    assert incident == Incident(
        "sudden_drift", 5, "credit_risk", None, {"feature": "income", "factor": 1.8}
    )
    spec = parse_incident(
        "bad_version@2026-03-06,duration=2,mode=dropped_features,drop=debt_ratio|income"
    )
    assert spec.start == date(2026, 3, 6) and spec.model is None and spec.duration_days == 2
    assert spec.params["drop"] == ["debt_ratio", "income"]
    assert parse_incident(incident.spec()) == incident
    for bad in (
        "sudden_drift",
        "melting@1",
        "error_burst@x",
        "error_burst@1,rate",
        "latency_spike@1,speed=2",
    ):
        with pytest.raises(IncidentError):
            parse_incident(bad)


def test_incidents_file(tmp_path):
    path = tmp_path / "incidents.yaml"
    path.write_text(
        "incidents:\n"
        "  - {kind: error_burst, start: 3, model: credit_risk, duration_days: 1,\n"
        "     params: {rate: 0.3}}\n"
        "  - {kind: latency_spike, start: 2026-03-04}\n"
    )
    burst, spike = load_incidents(path)
    assert burst == Incident("error_burst", 3, "credit_risk", 1, {"rate": 0.3})
    assert spike.start == date(2026, 3, 4) and spike.active_on(13, START)
    path.write_text("- {kind: error_burst}\n")
    with pytest.raises(IncidentError, match="incident 0"):
        load_incidents(path)


def test_an_incident_naming_a_missing_feature_is_rejected_before_anything_is_written(
    tmp_path, mlflow_store, config
):
    with pytest.raises(IncidentError, match="no feature"):
        run(
            config,
            tmp_path,
            days=1,
            incidents=[Incident("sudden_drift", 0, "delivery_time", None, {"feature": "income"})],
        )
    assert not any(tmp_path.iterdir())


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    simulator.add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_runs_and_prints_a_summary(mlflow_store, capsys):
    code = simulator.run(
        _parse(
            "--days",
            "1",
            "--requests-per-day",
            "200",
            "--models",
            "credit_risk",
            "--no-incidents",
            "--root",
            "memory://modelwatch-cli-test",
            "--quiet",
            "--start",
            "2026-03-01",
        )
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "credit_risk" in out and "delivery_time" not in out.split("\n\n")[0]
    fsspec.filesystem("memory").rm("/modelwatch-cli-test", recursive=True)


def test_cli_options_and_errors(capsys):
    args = _parse("--incident", "error_burst@1:credit_risk")
    assert args.days == 14 and args.formats == ["jsonl", "jsonl.gz", "parquet"]
    assert _parse("--models", "a,b", "c").models == ["a", "b", "c"]
    assert simulator.chosen_incidents(args) == [Incident("error_burst", 1, "credit_risk")]
    assert simulator.chosen_incidents(_parse()) == DEFAULT_SCHEDULE
    assert simulator.chosen_incidents(_parse("--no-incidents")) == []
    assert simulator.default_start(14, today=date(2026, 3, 15)) == START
    assert simulator.run(_parse("--incident", "error_burst@1:unknown_model")) == 2
    assert "unknown model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _parse("--formats", "csv")


# --- any models file


def test_any_models_file_gets_a_generic_world(tmp_path, mlflow_store):
    numeric = [
        {"name": f"n{i}", "type": "numeric", **bounds}
        for i, bounds in enumerate(
            [{"min": 0, "max": 1}, {"min": -5, "max": 5}, {"min": 0}, {"max": 100}, {}] * 2
        )
    ]
    categorical = [
        {"name": "tier", "type": "categorical", "allowed_values": ["a", "b", "c"]},
        {"name": "free_text", "type": "categorical"},
    ]
    flags = [{"name": f"flag{i}", "type": "boolean"} for i in range(3)]
    config = parse_config(
        {
            "models": [
                {
                    "name": "bench_cls",
                    "task": "binary_classification",
                    "context": ["region"],
                    "segments": ["tier", "region"],
                    "features": numeric + categorical + flags,
                },
                {"name": "bench_reg", "task": "regression", "features": numeric[:3] + flags[:1]},
            ]
        }
    )
    summary = run(
        config,
        tmp_path,
        days=2,
        requests_per_day=300,
        incidents=[
            Incident("data_quality_break", 1, "bench_cls", 1),
            Incident("sudden_drift", 0, "bench_reg", None, {"feature": "n2", "factor": 2.0}),
        ],
    )
    for model in config.models:
        for record in records(str(tmp_path), model.name, "predictions"):
            if record["_dt"] == day(0) and record["status"] == "ok":
                features = record["features"]
                for feature in model.features:
                    value = features[feature.name]
                    if feature.type == "numeric":
                        assert (feature.min is None or value >= feature.min) and (
                            feature.max is None or value <= feature.max
                        )
                    elif feature.allowed_values:
                        assert value in feature.allowed_values
                if model.name == "bench_cls":
                    assert set(record["context"]) == {"region"} and 0 <= record["score"] <= 1
    assert summary.models["bench_cls"].quality_breaks[day(1)]["records"]["nulls"] == 20

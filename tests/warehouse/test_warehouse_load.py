"""`load_run`: exact, idempotent, atomic and safe under concurrency."""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, insert, select

from modelwatch.warehouse import schema
from modelwatch.warehouse.load import (
    LoadError,
    RunBundle,
    load_run,
    mark_run_failed,
    mark_run_started,
    previous_profiles,
    read_frame,
    recent_volumes,
    unfinished_runs,
)

from .builders import (
    DAY,
    JAN,
    bundle,
    drift,
    metrics,
    plain,
    profiles,
    quality,
    quarantine,
    run_fields,
    table_contents,
    warehouse_state,
)


def full_bundle(
    start: datetime = JAN[0], run_id: str | None = None, scale: float = 1.0
) -> RunBundle:
    """A bundle with rows in every table; `scale` changes the values, not the keys."""
    return bundle(
        "credit_risk",
        start,
        run_id,
        run=run_fields(rows_read=int(1000 * scale), damaged_files=["part-9.jsonl"]),
        model_metrics=pd.concat(
            [
                metrics(start, {"auc_roc": 0.8 * scale, "accuracy": 0.9}, label_coverage=0.5),
                metrics(start, {"latency_p99_ms": 300.0 * scale}),
                metrics(start, {"auc_roc": 0.7 * scale}, segment="region=eu"),
            ]
        ),
        feature_drift=drift([("age", "psi", 0.3 * scale, True), ("age", "ks", 0.1, False)]),
        feature_profiles=profiles({"age": 40.0 * scale, "income": 10.0}),
        data_quality_results=quality([("expect_x", "", True, "critical", 0.0)]),
        quarantined_records=quarantine("predictions", "invalid JSON", [1, 2, 3]),
    )


def count(engine, table_name: str, **where) -> int:
    table = schema.metadata.tables[table_name]
    statement = select(func.count()).select_from(table)
    for name, value in where.items():
        statement = statement.where(table.c[name] == value)
    with engine.connect() as connection:
        return connection.execute(statement).scalar_one()


def assert_same_state(before: dict[str, pd.DataFrame], after: dict[str, pd.DataFrame]) -> None:
    for name in before:
        pd.testing.assert_frame_equal(before[name], after[name], obj=name)


def test_load_writes_exact_rows(warehouse_engine):
    counts = load_run(warehouse_engine, full_bundle())
    assert counts == {
        "monitoring_runs": 1,
        "model_metrics": 4,
        "feature_drift": 2,
        "feature_profiles": 2,
        "data_quality_results": 1,
        "quarantined_records": 3,
    }
    for name, expected in counts.items():
        assert count(warehouse_engine, name) == expected, name
    run = table_contents(warehouse_engine, "monitoring_runs").iloc[0]
    assert run["status"] == "success"
    assert run["run_id"] == "scheduled__2026-01-01"
    assert json.loads(run["damaged_files"]) == ["part-9.jsonl"]
    assert run["interval_end"] == pd.Timestamp(JAN[1])
    profile = table_contents(warehouse_engine, "feature_profiles").iloc[0]
    assert json.loads(profile["profile"]) == {"sample": [39.0, 40.0, 41.0]}


def test_reloading_the_same_bundle_changes_nothing(warehouse_engine):
    load_run(warehouse_engine, full_bundle())
    before = warehouse_state(warehouse_engine)
    load_run(warehouse_engine, full_bundle())
    assert_same_state(before, warehouse_state(warehouse_engine))


def test_reload_replaces_the_interval_rows(warehouse_engine):
    load_run(warehouse_engine, full_bundle())
    load_run(warehouse_engine, full_bundle(JAN[1]))
    smaller = full_bundle()
    smaller.feature_drift = drift([("age", "psi", 0.01, False)])
    smaller.quarantined_records = None
    smaller.run["status"] = "failed"
    load_run(warehouse_engine, smaller)
    assert count(warehouse_engine, "feature_drift", interval_start=JAN[0]) == 1
    assert count(warehouse_engine, "quarantined_records", interval_start=JAN[0]) == 0
    assert count(warehouse_engine, "feature_drift", interval_start=JAN[1]) == 2
    assert count(warehouse_engine, "quarantined_records", interval_start=JAN[1]) == 3
    assert count(warehouse_engine, "monitoring_runs", status="failed") == 1


def test_recomputed_earlier_metrics_replace_that_intervals_quality_rows(warehouse_engine):
    load_run(warehouse_engine, full_bundle(JAN[0]))
    later = full_bundle(JAN[1])
    recomputed = metrics(JAN[0], {"auc_roc": 0.95}, label_coverage=0.9, sample_size=900)
    later.model_metrics = pd.concat([later.model_metrics, recomputed])
    load_run(warehouse_engine, later)
    load_run(warehouse_engine, later)

    rows = read_frame(
        warehouse_engine,
        select(schema.model_metrics).where(schema.model_metrics.c.interval_start == JAN[0]),
    ).set_index(["segment", "metric"])
    # The recomputation is the whole quality picture of 1 January: keys it no longer has are gone.
    assert sorted(rows.index) == [("all", "auc_roc"), ("all", "latency_p99_ms")]
    assert rows.loc[("all", "auc_roc"), "value"] == pytest.approx(0.95)
    assert rows.loc[("all", "auc_roc"), "label_coverage"] == pytest.approx(0.9)
    assert rows.loc[("all", "auc_roc"), "sample_size"] == 900
    assert rows.loc[("all", "auc_roc"), "labels_as_of"] == JAN[1] + DAY
    assert rows.loc[("all", "latency_p99_ms"), "kind"] == "system"  # only its own run replaces system rows
    assert count(warehouse_engine, "model_metrics") == 2 + 4
    assert count(warehouse_engine, "feature_drift", interval_start=JAN[0]) == 2


def test_a_rerun_drops_metric_keys_that_no_longer_occur(warehouse_engine):
    first = full_bundle(JAN[0])
    vanished = metrics(JAN[0], {"auc_roc": 0.5, "request_count": 7.0}, model_version="2")
    first.model_metrics = pd.concat([first.model_metrics, vanished])
    load_run(warehouse_engine, first)
    assert count(warehouse_engine, "model_metrics", model_version="2") == 2
    load_run(warehouse_engine, full_bundle(JAN[0]))
    assert count(warehouse_engine, "model_metrics", model_version="2") == 0
    assert count(warehouse_engine, "model_metrics") == 4


def test_an_older_rerun_keeps_quality_rows_made_from_later_labels(warehouse_engine):
    later = full_bundle(JAN[1])
    later.model_metrics = pd.concat([later.model_metrics, metrics(JAN[0], {"auc_roc": 0.95})])
    load_run(warehouse_engine, later)
    rerun = full_bundle(JAN[0])
    rerun.model_metrics = metrics(JAN[0], {"auc_roc": 0.6, "latency_p99_ms": 99.0})
    counts = load_run(warehouse_engine, rerun)
    stored = read_frame(
        warehouse_engine,
        select(schema.model_metrics).where(schema.model_metrics.c.interval_start == JAN[0]),
    ).set_index("metric")
    assert stored.loc["auc_roc", "value"] == pytest.approx(0.95)
    assert stored.loc["latency_p99_ms", "value"] == pytest.approx(99.0)
    assert counts["model_metrics"] == 1


def test_missing_values_load_as_null(warehouse_engine):
    frame = metrics(JAN[0], {"auc_roc": np.nan, "accuracy": None, "f1": np.float32(0.5)})
    frame["sample_size"] = np.array([0, 0, 7], dtype=np.int64)
    frame["label_coverage"] = [pd.NA, np.nan, 0.25]
    load_run(
        warehouse_engine, bundle("m", JAN[0], model_metrics=frame, run={"rows_read": np.int64(3)})
    )
    rows = {
        row.metric: (row.value, row.sample_size, row.label_coverage)
        for row in table_contents(warehouse_engine, "model_metrics").itertuples()
    }
    assert {name: tuple(plain(v) for v in values) for name, values in rows.items()} == {
        "accuracy": (None, 0, None),
        "auc_roc": (None, 0, None),
        "f1": (0.5, 7, 0.25),
    }
    with warehouse_engine.connect() as connection:
        run = connection.execute(select(schema.monitoring_runs)).one()
    assert (run.rows_read, run.status, run.started_at) == (3, "success", None)
    assert run.finished_at is not None


def test_frames_may_name_their_interval(warehouse_engine):
    frame = drift([("age", "psi", 0.1, False)], interval_start=JAN[0], interval_end=JAN[1])
    load_run(warehouse_engine, bundle("m", JAN[0], feature_drift=frame))
    assert count(warehouse_engine, "feature_drift", interval_start=JAN[0]) == 1


def test_large_frames_load_and_reload(warehouse_engine):
    rows = 20_000
    big = bundle(
        "m",
        JAN[0],
        model_metrics=pd.DataFrame(
            {
                "model_version": "all",
                "segment": [f"shop={i}" for i in range(rows)],
                "metric": "request_count",
                "kind": "system",
                "value": np.arange(rows, dtype=float),
                "sample_size": np.arange(rows),
            }
        ),
        quarantined_records=quarantine(
            "predictions", "bad\ttab\nnewline \\ quote'\"", list(range(rows))
        ),
    )
    load_run(warehouse_engine, big)
    load_run(warehouse_engine, big)
    assert count(warehouse_engine, "model_metrics") == rows
    assert count(warehouse_engine, "quarantined_records") == rows
    with warehouse_engine.connect() as connection:
        reasons = connection.execute(select(schema.quarantined_records.c.reason).distinct()).all()
        total = connection.execute(select(func.sum(schema.model_metrics.c.value))).scalar_one()
    assert reasons == [("bad\ttab\nnewline \\ quote'\"",)]
    assert total == pytest.approx(rows * (rows - 1) / 2)


def test_failed_load_leaves_nothing_of_the_run(warehouse_engine):
    good = full_bundle()
    load_run(warehouse_engine, good)
    before = warehouse_state(warehouse_engine)

    bad = full_bundle(run_id="manual__retry", scale=2.0)
    bad.feature_drift.loc[1, "statistic"] = None
    with pytest.raises(LoadError, match=r"could not load credit_risk .* run manual__retry"):
        load_run(warehouse_engine, bad)
    assert_same_state(before, warehouse_state(warehouse_engine))

    fresh = full_bundle(JAN[1])
    fresh.quarantined_records.loc[2, "reason"] = None
    with pytest.raises(LoadError):
        load_run(warehouse_engine, fresh)
    assert_same_state(before, warehouse_state(warehouse_engine))


def test_concurrent_loads_of_one_interval_leave_one_set(warehouse_engine):
    first = full_bundle(run_id="run_a")
    second = full_bundle(run_id="run_b", scale=2.0)
    second.feature_drift = drift([(f"f{i}", "psi", 0.5, True) for i in range(5)])
    for _ in range(4):
        errors = load_concurrently(warehouse_engine, [first, second])
        assert errors == []
        run_id = table_contents(warehouse_engine, "monitoring_runs")["run_id"].tolist()
        assert run_id in (["run_a"], ["run_b"])
        winner = first if run_id == ["run_a"] else second
        assert count(warehouse_engine, "feature_drift") == len(winner.feature_drift)
        assert count(warehouse_engine, "model_metrics") == len(winner.model_metrics)
        assert count(warehouse_engine, "quarantined_records") == 3
        drift_rows = table_contents(warehouse_engine, "feature_drift")
        assert set(drift_rows["feature"]) == set(winner.feature_drift["feature"])


def test_concurrent_recomputation_of_a_shared_interval(warehouse_engine):
    load_run(warehouse_engine, full_bundle(JAN[0]))
    later = []
    for offset, auc in ((1, 0.91), (2, 0.92), (3, 0.93)):
        run = full_bundle(JAN[offset])
        run.model_metrics = pd.concat(
            [run.model_metrics, metrics(JAN[0], {"auc_roc": auc, "f1": auc}, label_coverage=auc)]
        )
        later.append(run)
    assert load_concurrently(warehouse_engine, later) == []
    recomputed = read_frame(
        warehouse_engine,
        select(schema.model_metrics).where(
            schema.model_metrics.c.interval_start == JAN[0],
            schema.model_metrics.c.segment == "all",
        ),
    ).set_index("metric")
    assert sorted(recomputed.index) == ["auc_roc", "f1", "latency_p99_ms"]
    # Whichever loads last, the run that knew the most labels (3 days later) wins.
    assert recomputed.loc["auc_roc", "value"] == pytest.approx(0.93)
    assert recomputed.loc["f1", "value"] == pytest.approx(0.93)
    assert count(warehouse_engine, "model_metrics", interval_start=JAN[0]) == 3
    assert count(warehouse_engine, "model_metrics") == 3 + 3 * 4
    assert count(warehouse_engine, "monitoring_runs") == 4


def test_load_outlasts_a_conflicting_writer(warehouse_engine, caplog):
    """A writer outside load_run holds a clashing metric row while the load runs."""
    caplog.set_level(logging.WARNING, logger="modelwatch.warehouse.load")
    clash = {
        "model_name": "credit_risk",
        "interval_start": JAN[0],
        "interval_end": JAN[1],
        "model_version": "all",
        "segment": "all",
        "metric": "auc_roc",
        "kind": "quality",
        "value": -1.0,
        "sample_size": 1,
    }
    errors: list[BaseException] = []
    with warehouse_engine.begin() as connection:
        connection.execute(insert(schema.model_metrics), clash)
        loader = threading.Thread(
            target=lambda: errors.extend(load_concurrently(warehouse_engine, [full_bundle()]))
        )
        loader.start()
        time.sleep(1.0)
    loader.join()
    assert errors == []
    assert count(warehouse_engine, "model_metrics") == 4
    assert count(warehouse_engine, "model_metrics", value=-1.0) == 0
    if warehouse_engine.dialect.name == "postgresql":
        assert "retrying" in caplog.text


def load_concurrently(engine, bundles: list[RunBundle]) -> list[BaseException]:
    """Start one thread per bundle at the same moment; return the errors they raised."""
    start = threading.Barrier(len(bundles))
    errors: list[BaseException] = []

    def run(one: RunBundle) -> None:
        start.wait()
        try:
            load_run(engine, one)
        except BaseException as exc:  # collected for the caller's assertion
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(one,)) for one in bundles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


BAD_FRAMES = {
    "unknown column": (
        lambda b: b.feature_drift.assign(colour="red"),
        r"feature_drift: unknown columns \['colour'\]",
    ),
    "vocabulary": (
        lambda b: b.feature_drift.assign(method="magic"),
        r"feature_drift.method: expected one of \['psi', 'ks', 'wasserstein', 'chi2'\]",
    ),
    "duplicate key": (
        lambda b: b.feature_drift.assign(method="psi"),
        r"feature_drift: more than one row for key .*'feature': 'age', 'method': 'psi'",
    ),
    "other interval": (
        lambda b: b.feature_drift.assign(interval_start=JAN[3]),
        r"feature_drift.interval_start: every row must have the bundle's interval_start",
    ),
    "other model": (
        lambda b: b.feature_drift.assign(model_name="other"),
        r"feature_drift.model_name: every row must have the bundle's model_name",
    ),
    "naive timestamps": (
        lambda b: b.feature_drift.assign(interval_end=datetime(2026, 1, 2)),
        r"feature_drift.interval_end: expected timezone-aware timestamps",
    ),
    "fractional count": (
        lambda b: b.feature_drift.assign(sample_size=1.5),
        r"feature_drift.sample_size: .*cast",
    ),
}

BAD_BUNDLES = {
    "empty interval": ({"interval_end": JAN[0]}, "RunBundle interval is empty"),
    "naive start": (
        {"interval_start": datetime(2026, 1, 1)},
        "RunBundle.interval_start: expected a timezone-aware",
    ),
    "no run id": ({"run_id": ""}, "RunBundle.run_id: expected a non-empty string"),
    "status": ({"run": {"status": "done"}}, r"RunBundle.run\['status'\]: expected one of"),
    "unknown run column": (
        {"run": {"rows": 3}},
        r"RunBundle.run: unknown monitoring_runs columns \['rows'\]",
    ),
    "misplaced key": (
        {"run": {"run_id": "x"}},
        r"RunBundle.run: \['run_id'\] are set on the bundle itself",
    ),
}


def test_bad_frames_are_refused_before_writing(warehouse_engine):
    for case, (change, message) in BAD_FRAMES.items():
        bad = full_bundle()
        bad.feature_drift = change(bad)
        with pytest.raises(ValueError, match=message):
            load_run(warehouse_engine, bad)
            pytest.fail(f"{case}: accepted")
    assert count(warehouse_engine, "monitoring_runs") == 0


def test_bad_bundles_are_refused(warehouse_engine):
    values = {"model_name": "m", "interval_start": JAN[0], "interval_end": JAN[1], "run_id": "r"}
    for case, (fields, message) in BAD_BUNDLES.items():
        with pytest.raises(ValueError, match=message):
            load_run(warehouse_engine, RunBundle(**(values | fields)))
            pytest.fail(f"{case}: accepted")
    assert count(warehouse_engine, "monitoring_runs") == 0


def test_mark_run_started_then_load(warehouse_engine):
    mark_run_started(warehouse_engine, "m", JAN[0], JAN[1], "first")
    with warehouse_engine.connect() as connection:
        started = connection.execute(select(schema.monitoring_runs)).one()
    assert (started.status, started.run_id, started.finished_at) == ("running", "first", None)
    assert started.started_at.tzinfo == UTC

    load_run(warehouse_engine, bundle("m", JAN[0], "first", run={"status": "halted"}))
    with warehouse_engine.connect() as connection:
        loaded = connection.execute(select(schema.monitoring_runs)).one()
    assert (loaded.status, loaded.started_at) == ("halted", started.started_at)
    assert loaded.finished_at >= loaded.started_at

    mark_run_started(warehouse_engine, "m", JAN[0], JAN[1], "second")
    with warehouse_engine.connect() as connection:
        again = connection.execute(select(schema.monitoring_runs)).one()
    assert (again.status, again.run_id, again.finished_at) == ("running", "second", None)


def test_a_run_that_fails_after_its_load_keeps_its_results_as_history(warehouse_engine):
    load_run(warehouse_engine, bundle("m", JAN[0], "first", run={"status": "success", "finished_at": None}))
    assert unfinished_runs(warehouse_engine, "m", JAN[0], JAN[1]) == [JAN[0]]  # loaded, not yet judged

    mark_run_failed(warehouse_engine, "m", JAN[0], JAN[1], "first", "rollback (try 2 of 2): MlflowException")
    with warehouse_engine.connect() as connection:
        ended = connection.execute(select(schema.monitoring_runs)).one()
    assert (ended.status, ended.failure_reason) == ("success", "rollback (try 2 of 2): MlflowException")
    assert ended.finished_at is not None
    assert unfinished_runs(warehouse_engine, "m", JAN[0], JAN[1]) == []

    # A new run of the interval that fails before its own load is failed, whatever the last load said.
    mark_run_started(warehouse_engine, "m", JAN[0], JAN[1], "second")
    mark_run_failed(warehouse_engine, "m", JAN[0], JAN[1], "second", "extract (try 4 of 4): OSError")
    with warehouse_engine.connect() as connection:
        assert connection.execute(select(schema.monitoring_runs.c.status)).scalar() == "failed"


def history(engine, statuses: list[str]) -> None:
    """One run per day from Jan 1 with the given statuses, rows_read 100, 200, ..."""
    for day, status in enumerate(statuses):
        load_run(
            engine,
            bundle(
                "m",
                JAN[day],
                run=run_fields(status=status, rows_read=100 * (day + 1)),
                feature_profiles=profiles({"age": float(day), "income": 1.0}),
            ),
        )


def test_previous_profiles_are_the_latest_successful_intervals(warehouse_engine):
    history(warehouse_engine, ["success", "success", "halted", "success", "success"])
    frame = previous_profiles(warehouse_engine, "m", before=JAN[4], n=2)
    assert list(zip(frame["interval_start"], frame["feature"], frame["mean"], strict=True)) == [
        (pd.Timestamp(JAN[1]), "age", 1.0),
        (pd.Timestamp(JAN[1]), "income", 1.0),
        (pd.Timestamp(JAN[3]), "age", 3.0),
        (pd.Timestamp(JAN[3]), "income", 1.0),
    ]
    assert json.loads(frame["profile"].iloc[0]) == {"sample": [0.0, 1.0, 2.0]}
    assert previous_profiles(warehouse_engine, "m", before=JAN[0], n=3).empty
    assert previous_profiles(warehouse_engine, "other", before=JAN[4], n=3).empty


def test_recent_volumes_of_successful_runs_oldest_first(warehouse_engine):
    history(warehouse_engine, ["success", "success", "halted", "success", "success"])
    assert recent_volumes(warehouse_engine, "m", before=JAN[4], n=3) == [100, 200, 400]
    assert recent_volumes(warehouse_engine, "m", before=JAN[4] + DAY, n=2) == [400, 500]
    assert recent_volumes(warehouse_engine, "m", before=JAN[0], n=3) == []
    with pytest.raises(ValueError, match="expected n >= 1"):
        recent_volumes(warehouse_engine, "m", before=JAN[4], n=0)


def test_read_frame_takes_sql_text_and_parameters(warehouse_engine):
    history(warehouse_engine, ["success", "halted"])
    frame = read_frame(
        warehouse_engine,
        "SELECT status, rows_read FROM monitoring_runs WHERE rows_read > :least",
        {"least": 150},
    )
    assert frame.to_dict("records") == [{"status": "halted", "rows_read": 200}]
    assert list(read_frame(warehouse_engine, "SELECT * FROM feature_drift").columns) == [
        column.name for column in schema.feature_drift.columns
    ]

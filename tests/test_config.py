"""The models file's rules: each bad file fails naming the model, the field and what was expected."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
import yaml
from croniter import croniter
from logfiles import model_spec

from modelwatch import settings
from modelwatch.config import ConfigError, ModelConfig, ProjectConfig, _interval_lengths, load_config, parse_config


def parse(*models: dict, **top) -> ProjectConfig:
    return parse_config({"models": list(models) or [model_spec()], **top})


def parse_model(**overrides) -> ModelConfig:
    return parse(model_spec(**overrides)).models[0]


def problems(*models: dict, **top) -> list[str]:
    """The lines of the ConfigError the file raises, without the heading."""
    with pytest.raises(ConfigError) as caught:
        parse(*models, **top)
    heading, *lines = str(caught.value).splitlines()
    assert heading == "<config> is not a valid models file:"
    return [line.strip() for line in lines]


def problem(**overrides) -> str:
    (line,) = problems(model_spec(**overrides))
    return line


# --- the shipped files


@pytest.mark.parametrize("path", [settings.SHIPPED_CONFIG, settings.PROJECT_ROOT / "bench" / "models.yaml"])
def test_the_shipped_models_files_are_valid(path):
    assert load_config(path).models


# --- names


@pytest.mark.parametrize(
    ("overrides", "location"),
    [
        ({"name": "monitor_delivery_time\n"}, "models[0].name"),
        ({"name": "2fast"}, "models[0].name"),
        ({"features": [{"name": "income\n", "type": "numeric"}], "context": [], "segments": []},
         "models[credit_risk].features[0].name"),
        ({"context": ["channel\n"], "segments": []}, "models[credit_risk].context[0]"),
        ({"segments": ["country", "country-code"]}, "models[credit_risk].segments[1]"),
    ],
)
def test_names_must_be_identifiers_all_the_way_to_the_end(overrides, location):
    assert problem(**overrides).startswith(f"{location}: Value error, expected a name of letters, digits and '_'")


# --- segments and context


def test_a_segment_is_a_categorical_or_boolean_feature_or_a_declared_context_key():
    model = parse_model(context=["channel", "region"], segments=["country", "has_card", "region"])
    assert model.segments == ["country", "has_card", "region"]
    assert parse_model(context=[], segments=[]).context == []


def test_an_unknown_segment_names_the_model_the_key_and_the_nearest_valid_name():
    line = problem(segments=["country", "chanel"])
    assert line.startswith("models[credit_risk].segments: Value error, segment 'chanel' is neither a feature")
    assert "(did you mean 'channel'?)" in line
    assert "expected a categorical or boolean feature or a key listed in `context` (channel, country, has_card)" in line


def test_a_context_key_must_be_declared_to_be_a_segment():
    line = problem(context=[], segments=["channel"])
    assert "segment 'channel' is neither a feature nor a `context` key" in line


def test_a_numeric_feature_is_no_segment():
    line = problem(segments=["income"])
    assert line.startswith("models[credit_risk].segments: Value error, segment 'income' is a numeric feature")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"segments": ["country", "channel", "country"]},
         "models[credit_risk].segments: Value error, segment keys must be unique (repeated: ['country'])"),
        ({"context": ["channel", "channel"]},
         "models[credit_risk].context: Value error, context keys must be unique (repeated: ['channel'])"),
        ({"context": ["channel", "country"]},
         "models[credit_risk].context: Value error, context keys must differ from feature names (both: ['country'])"),
    ],
)
def test_segments_and_context_keys_are_unique(overrides, expected):
    assert problem(**overrides).startswith(expected)


def test_segment_problems_are_reported_with_the_models_other_problems():
    lines = problems(model_spec(start_date="yesterday", segments=["chanel"]))
    assert [line.split(":")[0] for line in lines] == [
        "models[credit_risk].start_date",
        "models[credit_risk].segments",
    ]


# --- bounds


@pytest.mark.parametrize(
    ("overrides", "location", "shown"),
    [
        ({"features": [{"name": "income", "type": "numeric", "min": float("nan")}], "segments": []},
         "models[credit_risk].features[0].min", "nan"),
        ({"features": [{"name": "income", "type": "numeric", "max": float("inf")}], "segments": []},
         "models[credit_risk].features[0].max", "inf"),
        ({"thresholds": {"auc_roc": {"min": float("nan")}}}, "models[credit_risk].thresholds.auc_roc.min", "nan"),
        ({"data_quality": {"volume_tolerance": float("inf")}}, "models[credit_risk].data_quality.volume_tolerance",
         "inf"),
        ({"timeouts": {"extract": float("inf")}}, "models[credit_risk].timeouts.extract", "inf"),
    ],
)
def test_nan_and_infinity_are_refused_in_every_number(overrides, location, shown):
    assert problem(**overrides) == f"{location}: Input should be a finite number (got {shown})"


def test_nan_and_infinity_from_yaml_are_refused(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text(
        "models:\n"
        "  - name: credit_risk\n"
        "    task: regression\n"
        "    features: [{name: income, type: numeric, min: .nan, max: .inf}]\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "models[credit_risk].features[0].min: Input should be a finite number (got nan)" in str(caught.value)
    assert "models[credit_risk].features[0].max: Input should be a finite number (got inf)" in str(caught.value)


# --- start_date


@pytest.mark.parametrize(
    ("start_date", "start"),
    [
        ("2026-03-01", datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-03-01T06:30:00", datetime(2026, 3, 1, 6, 30, tzinfo=UTC)),
        ("2026-03-01T06:30:00Z", datetime(2026, 3, 1, 6, 30, tzinfo=UTC)),
        ("2026-03-01T06:30:00+02:00", datetime(2026, 3, 1, 4, 30, tzinfo=UTC)),
    ],
)
def test_start_is_an_aware_utc_datetime_and_naive_means_utc(start_date, start):
    model = parse_model(start_date=start_date)
    assert model.start_date == start_date
    assert model.start == start and model.start.tzinfo is UTC


@pytest.mark.parametrize("start_date", ["2026-13-01", "01.03.2026", "soon", ""])
def test_a_bad_start_date_names_model_and_field(start_date):
    assert problem(start_date=start_date) == (
        "models[credit_risk].start_date: Value error, expected an ISO date or date-time, "
        f"e.g. '2026-03-01' or '2026-03-01T06:00:00Z' (got {start_date!r})"
    )


# --- schedules


def fire_time_gaps(cron: str, count: int = 400) -> set[timedelta]:
    """The gaps between consecutive fire times from 2027 to 2030, at most `count` of them, stepped with croniter."""
    times = []
    for fire in croniter(cron, datetime(2026, 12, 31, 23, 59)).all_next(datetime):
        if fire >= datetime(2030, 1, 1) or len(times) == count:
            break
        times.append(fire)
    return {later - earlier for earlier, later in pairwise(times)}


@pytest.mark.parametrize(
    ("schedule", "length"),
    [
        ("@hourly", timedelta(hours=1)),
        ("@daily", timedelta(days=1)),
        ("@weekly", timedelta(weeks=1)),
        ("*/15 * * * *", timedelta(minutes=15)),
        ("0 */6 * * *", timedelta(hours=6)),
        ("5,35 * * * *", timedelta(minutes=30)),
        ("* * * * *", timedelta(minutes=1)),
        ("30 2 * * *", timedelta(days=1)),
        ("0 9 * * 3", timedelta(weeks=1)),
        ("0 0 1-31 * *", timedelta(days=1)),
    ],
)
def test_interval_length_is_the_time_between_consecutive_runs(schedule, length):
    model = parse_model(schedule=schedule)
    assert model.interval_length == length
    assert fire_time_gaps(model.cron) == {length}


@pytest.mark.parametrize(
    ("schedule", "found"),
    [
        ("0 0 1 * *", "28 days, 29 days, 30 days and 31 days"),
        ("*/7 * * * *", "4 minutes and 7 minutes"),
        ("0 0 * * 1-5", "1 day and 3 days"),
        ("0 */5 * * *", "4 hours and 5 hours"),
        ("0 0 1 1 *", "365 days and 366 days"),
        ("0 0 * * 5#2", "28 days and 35 days"),
        ("0 * * 1-6 *", "1 hour and 184 days 1 hour"),
    ],
)
def test_a_schedule_with_intervals_of_different_lengths_is_refused(schedule, found):
    assert problem(schedule=schedule) == (
        "models[credit_risk].schedule: Value error, expected intervals of one length, "
        f"found intervals of {found} (got {schedule!r})"
    )


@pytest.mark.parametrize(
    "schedule",
    ["*/7 * * * *", "0 */5 * * *", "0 0 * * 1-5", "15 8,20 * * 1,4", "0 12 1,15 * *", "0 0 */2 * *",
     "30 3 1-7 * 1", "0 0 L * *", "0 6 * 2 *"],
)
def test_the_lengths_found_are_the_gaps_croniter_steps_through(schedule):
    """Times of day times allowed days give the same intervals as every fire time over three years."""
    assert set(_interval_lengths(schedule)) == fire_time_gaps(schedule, count=5000)


@pytest.mark.parametrize(
    ("schedule", "detail"),
    [
        ("61 * * * *", " ([61 * * * *] is not acceptable, out of range)"),
        ("every day", ""),
        ("0 0 * * * *", ""),
        ("@monthly", ""),
        ("0 0 31 2 *", None),
    ],
)
def test_a_bad_cron_names_model_and_field(schedule, detail):
    line = problem(schedule=schedule)
    assert line.startswith("models[credit_risk].schedule: Value error, expected ")
    assert line.endswith(f"(got {schedule!r})")
    if detail is None:
        assert "expected a schedule that runs on at least two days in three years" in line
    else:
        assert f"expected a 5-field cron expression or one of ['@daily', '@hourly', '@weekly']{detail} (got" in line


def test_checking_schedules_keeps_the_dag_file_fast():
    """The DAG file validates the models file at every parse: a few ms per model at most."""
    models = [model_spec(name=f"m{i}", schedule=s) for i, s in enumerate(["@daily", "@weekly", "*/15 * * * *"])]
    parse(*models)  # warm up pydantic and croniter
    rounds = 50
    started = time.perf_counter()
    for _ in range(rounds):
        parse(*models)
    per_model = (time.perf_counter() - started) / rounds / len(models)
    assert per_model < 0.005, f"{per_model * 1000:.2f} ms per model"


# --- locations of errors that span a list


def test_repeated_model_names_are_reported_under_models():
    assert problems(model_spec(), model_spec(), model_spec(name="other"), model_spec(name="other")) == [
        "models: Value error, model names must be unique (repeated: ['credit_risk', 'other'])"
    ]


def test_every_error_has_a_location():
    repeated = model_spec(features=[{"name": "x", "type": "numeric"}] * 2, context=[], segments=[])
    lines = problems(repeated, model_spec(name="delivery_time", reference={}))
    assert lines == [
        "models[credit_risk].features: Value error, feature names must be unique (repeated: ['x'])",
        "models[delivery_time].reference: Value error, expected exactly one of 'dataset' or 'trailing_intervals'",
    ]


# --- roots


@pytest.mark.parametrize(
    ("overrides", "top", "location", "root"),
    [
        ({"log_root": "../elsewhere"}, {}, "models[credit_risk].log_root", "../elsewhere"),
        ({"reference": {"dataset": "reference/../../ref.parquet"}}, {}, "models[credit_risk].reference.dataset",
         "reference/../../ref.parquet"),
        ({}, {"staging_root": "staging/../.."}, "staging_root", "staging/../.."),
    ],
)
def test_a_relative_root_may_not_leave_the_data_folder(overrides, top, location, root):
    assert problems(model_spec(**overrides), **top) == [
        f"{location}: Value error, expected a URL, an absolute path or a relative path inside the data folder "
        f"(MODELWATCH_DATA_DIR); its '..' leads out of it (got {root!r})"
    ]


@pytest.mark.parametrize("root", ["logs", "logs/../other_logs", "/var/log/serving", "s3://bucket/../logs"])
def test_urls_absolute_paths_and_roots_inside_the_data_folder_are_allowed(root):
    config = parse(model_spec(log_root=root, reference={"dataset": root}), staging_root=root)
    assert config.models[0].log_root == config.models[0].reference.dataset == config.staging_root == root


def test_resolve_root_puts_relative_roots_in_the_data_folder_and_refuses_to_leave_it(monkeypatch, tmp_path):
    monkeypatch.setenv("MODELWATCH_DATA_DIR", str(tmp_path))
    assert settings.resolve_root("logs") == str(tmp_path / "logs")
    assert settings.resolve_root("/srv/logs") == "/srv/logs"
    assert settings.resolve_root("memory://logs/../x") == "memory://logs/../x"
    with pytest.raises(ValueError, match=r"root '\.\./x' leads out of the data folder"):
        settings.resolve_root("../x")


# --- task timeouts


def test_task_timeouts_default_and_can_be_set_per_task():
    default = parse_model()
    assert {task: default.execution_timeout(task) for task in ("wait_for_logs", "extract", "validate", "measure",
                                                                 "load")} == {
        "wait_for_logs": timedelta(minutes=10),
        "extract": timedelta(minutes=60),
        "validate": timedelta(minutes=60),
        "measure": timedelta(minutes=60),
        "load": timedelta(minutes=30),
    }
    tuned = parse_model(timeouts={"validate": 90, "wait_for_logs": 2.5})
    assert tuned.execution_timeout("validate") == timedelta(minutes=90)
    assert tuned.execution_timeout("wait_for_logs") == timedelta(minutes=2, seconds=30)
    with pytest.raises(KeyError, match="no task named 'train'"):
        tuned.execution_timeout("train")


@pytest.mark.parametrize(
    ("timeouts", "expected"),
    [
        ({"load": 0}, "models[credit_risk].timeouts.load: Input should be greater than 0 (got 0)"),
        ({"validate": -5}, "models[credit_risk].timeouts.validate: Input should be greater than 0 (got -5)"),
        ({"train": 5}, "models[credit_risk].timeouts.train: Extra inputs are not permitted (got 5)"),
    ],
)
def test_task_timeouts_are_positive_and_name_real_tasks(timeouts, expected):
    assert problem(timeouts=timeouts) == expected


# --- the whole file at once


def test_one_error_lists_every_problem_of_every_model(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({"models": [
        model_spec(start_date="2026-02-30"),
        model_spec(name="delivery_time", schedule="0 0 * * 1-5", segments=["city"]),
    ]}))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    heading, *lines = str(caught.value).splitlines()
    assert heading == f"{Path(path)} is not a valid models file:"
    assert [line.strip().split(":")[0] for line in lines] == [
        "models[credit_risk].start_date",
        "models[delivery_time].schedule",
        "models[delivery_time].segments",
    ]

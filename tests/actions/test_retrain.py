"""Retraining against a real MLflow store, on staged batches of simulated logs with concept drift."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest

from modelwatch import pipeline, registry, settings, staging
from modelwatch.actions import retrain as retraining
from modelwatch.actions.labeled import intervals_ending_at, read_labeled
from modelwatch.actions.rollback import rollback
from modelwatch.config import ModelConfig, load_config, parse_config
from modelwatch.model_input import staged_model_frame
from modelwatch.simulation import Incident, simulate

START = date(2026, 3, 1)
DAYS = 6
REQUESTS_PER_DAY = 1000
DAY = timedelta(days=1)
LAST_START = datetime(2026, 3, DAYS, tzinfo=UTC)
LAST_END = LAST_START + DAY
SMALL_RETRAIN = {"training_window_intervals": DAYS, "holdout_intervals": 1, "min_training_labels": 500}


@pytest.fixture(scope="module")
def simulated(tmp_path_factory, mlflow_store) -> tuple[dict, str, dict]:
    """Six staged days of both shipped models, their label relation changed from the second day on.

    Returns the models file as a mapping, the staging URL and each model's baseline pipeline.
    """
    folder = tmp_path_factory.mktemp("retrain")
    raw = load_config(settings.SHIPPED_CONFIG).model_dump(by_alias=True)
    raw["staging_root"] = str(folder / "staging")
    for model in raw["models"]:
        model.update(log_root=str(folder / "logs"), registered_model=f"simulated_{model['name']}")
    config = parse_config(raw)
    summary = simulate(
        config, start=START, days=DAYS, requests_per_day=REQUESTS_PER_DAY,
        incidents=[Incident("concept_drift", 1, params={"strength": 1.0})], progress=lambda line: None,
    )
    for model in config.models:
        for day in range(DAYS):
            start = datetime.combine(START + day * DAY, datetime.min.time(), UTC)
            pipeline.extract(model.name, start, start + DAY, config=config)
    baselines = {
        model.name: registry.load_model(model.registry_name, summary.models[model.name].baseline_version)
        for model in config.models
    }
    return raw, config.staging_url, baselines


def served_model(simulated, name: str = "credit_risk", **changes) -> ModelConfig:
    """The model under a registered name of its own, whose champion is a copy of the simulated baseline.

    `changes` replace fields of the model's `retrain` policy.
    """
    raw, _, baselines = simulated
    spec = next(m for m in raw["models"] if m["name"] == name)
    registered = f"{name}_{uuid.uuid4().hex[:8]}"
    spec = {**spec, "registered_model": registered, "retrain": {**spec["retrain"], **SMALL_RETRAIN, **changes}}
    version = registry.register_model(registered, baselines[name], training_frame_info={}, metrics={}, tags={})
    registry.set_champion(registered, version)
    return parse_config({"models": [spec]}).models[0]


def run_retrain(model: ModelConfig, url: str, run_id: str = "scheduled__2026-03-06", dry_run: bool = False):
    return retraining.retrain(model, staging_url=url, interval_start=LAST_START, interval_end=LAST_END,
                              run_id=run_id, dry_run=dry_run)


def registry_state(model: ModelConfig) -> tuple[list, str | None]:
    return registry.list_versions(model.registry_name), registry.champion_version(model.registry_name)


def test_replaying_the_champion_on_staged_rows_reproduces_the_logged_scores(simulated):
    raw, url, baselines = simulated
    model = parse_config({"models": raw["models"]}).model("credit_risk")
    predictions = staging.published(url, model.name, LAST_START - DAY, LAST_START).read(staging.PREDICTIONS)
    answered = predictions.loc[predictions["status"] == "ok"]

    replayed = baselines["credit_risk"].predict_proba(staged_model_frame(model, answered))[:, 1]
    np.testing.assert_allclose(replayed, answered["score"].to_numpy(), atol=1e-6)


def test_a_challenger_fitted_on_drifted_logs_is_promoted_with_its_lineage(simulated):
    _, url, _ = simulated
    model = served_model(simulated)

    outcome = run_retrain(model, url)

    assert outcome.outcome == "promoted", outcome.detail
    assert (outcome.from_version, outcome.to_version) == ("1", "2")
    assert registry.champion_version(model.registry_name) == "2"
    facts = outcome.facts
    assert facts["metric"] == "auc_roc" and facts["challenger_value"] > facts["champion_value"] + 0.05
    assert facts["holdout_rows"] >= model.checks.min_labels and facts["training_rows"] >= 500
    challenger = registry.get_version(model.registry_name, "2")
    tags = challenger.tags
    assert tags[retraining.ROLE_TAG] == "challenger"
    assert tags[retraining.SOURCE_INTERVAL_TAG] == LAST_START.isoformat()
    assert tags[retraining.SOURCE_INTERVAL_END_TAG] == LAST_END.isoformat()
    assert tags[retraining.SOURCE_RUN_TAG] == "scheduled__2026-03-06"
    assert tags[retraining.PARENT_TAG] == "1"
    assert tags[retraining.DECISION_TAG] == "promoted" and retraining.PROMOTED_AT_TAG in tags
    assert tags[retraining.TRAINING_WINDOW_START_TAG] == "2026-03-01T00:00:00+00:00"
    assert tags[retraining.TRAINING_WINDOW_END_TAG] == tags[retraining.HOLDOUT_WINDOW_START_TAG]
    assert tags[retraining.HOLDOUT_WINDOW_END_TAG] == LAST_END.isoformat()
    assert tags[retraining.TRAINING_ROWS_TAG] == str(facts["training_rows"])
    logged = registry.version_metrics(model.registry_name, "2")
    assert logged["auc_roc"] == pytest.approx(facts["challenger_value"])
    assert logged["champion_auc_roc"] == pytest.approx(facts["champion_value"])
    assert {"f1", "brier_score", "champion_f1"} <= set(logged)
    # The challenger answers in the champion's class values, so serving it changes nothing else.
    np.testing.assert_array_equal(registry.load_model(model.registry_name).classes_, [0.0, 1.0])


def test_a_rerun_of_the_interval_registers_nothing_and_reports_the_first_result(simulated):
    _, url, _ = simulated
    model = served_model(simulated)
    first = run_retrain(model, url, run_id="scheduled__2026-03-06")
    state = registry_state(model)

    again = run_retrain(model, url, run_id="manual__rerun")

    assert registry_state(model) == state
    assert (again.outcome, again.from_version, again.to_version) == ("promoted", "1", "2")
    assert again.facts["repeat"] and again.facts["source_run_id"] == "scheduled__2026-03-06"
    assert again.facts["challenger_value"] == pytest.approx(first.facts["challenger_value"])
    dry = run_retrain(model, url, dry_run=True)
    assert dry.outcome == "dry_run" and "would register and move nothing" in dry.detail


def test_a_rerun_finishes_a_promotion_the_first_run_decided_but_did_not_complete(simulated):
    _, url, baselines = simulated
    model = served_model(simulated)
    # What a first run leaves when it dies between registering its winning challenger and moving the alias.
    registry.register_model(model.registry_name, baselines["credit_risk"], training_frame_info={}, metrics={}, tags={
        retraining.SOURCE_INTERVAL_TAG: LAST_START.isoformat(), retraining.SOURCE_RUN_TAG: "scheduled__crashed",
        retraining.PARENT_TAG: "1", retraining.DECISION_TAG: "promoted", retraining.METRIC_TAG: "auc_roc",
    })

    outcome = run_retrain(model, url, run_id="scheduled__2026-03-06__try2")

    assert (outcome.outcome, outcome.from_version, outcome.to_version) == ("promoted", "1", "2")
    assert "finished the promotion it decided" in outcome.detail
    assert registry.champion_version(model.registry_name) == "2"
    assert retraining.PROMOTED_AT_TAG in registry.get_version(model.registry_name, "2").tags
    assert len(registry.list_versions(model.registry_name)) == 2


def test_a_rerun_after_a_rollback_leaves_the_champion_alone(simulated):
    _, url, _ = simulated
    model = served_model(simulated)
    run_retrain(model, url)
    assert rollback(model, from_version="2", to_version="1", dry_run=False, reason="test").outcome == "rolled_back"

    again = run_retrain(model, url, run_id="manual__rerun")

    assert again.outcome == "promoted" and "now v1" in again.detail
    assert registry.champion_version(model.registry_name) == "1"
    assert len(registry.list_versions(model.registry_name)) == 2


def test_a_dry_run_trains_and_compares_but_registers_and_moves_nothing(simulated):
    _, url, _ = simulated
    model = served_model(simulated)
    state = registry_state(model)

    outcome = run_retrain(model, url, dry_run=True)

    assert outcome.outcome == "dry_run" and outcome.facts["would"] == "promoted"
    assert "would register the challenger and promote it" in outcome.detail
    assert (outcome.from_version, outcome.to_version) == ("1", "1")
    assert registry_state(model) == state


def test_a_challenger_not_better_by_min_improvement_is_registered_but_not_promoted(simulated):
    _, url, _ = simulated
    model = served_model(simulated, min_improvement=0.9)

    outcome = run_retrain(model, url)

    assert outcome.outcome == "kept_champion"
    assert (outcome.from_version, outcome.to_version) == ("1", "1")
    assert registry.champion_version(model.registry_name) == "1"
    assert f"{outcome.facts['challenger_value']:.4f}" in outcome.detail
    assert f"{outcome.facts['champion_value']:.4f}" in outcome.detail and "min_improvement 0.9" in outcome.detail
    challenger = registry.get_version(model.registry_name, "2")
    assert challenger.tags[retraining.DECISION_TAG] == "kept_champion"
    assert retraining.PROMOTED_AT_TAG not in challenger.tags


def test_a_regression_challenger_is_judged_on_mae_lower_being_better(simulated):
    _, url, _ = simulated
    model = served_model(simulated, "delivery_time")

    outcome = run_retrain(model, url)

    assert model.retrain_metric == "mae"
    assert outcome.outcome == "promoted", outcome.detail
    assert outcome.facts["challenger_value"] < outcome.facts["champion_value"]
    assert outcome.facts["improvement"] == pytest.approx(
        outcome.facts["champion_value"] - outcome.facts["challenger_value"]
    )


def test_without_a_champion_retrain_is_not_possible_and_says_what_to_do(simulated):
    raw, url, baselines = simulated
    spec = {**raw["models"][0], "registered_model": f"unknown_{uuid.uuid4().hex[:8]}"}
    unknown = parse_config({"models": [spec]}).models[0]

    outcome = run_retrain(unknown, url)
    assert outcome.outcome == "not_possible"
    assert outcome.detail.startswith("credit_risk has no `champion` in the MLflow registry (the registry knows no")
    assert "set_champion" in outcome.detail and "retrain.enabled: false" in outcome.detail

    registry.register_model(unknown.registry_name, baselines["credit_risk"], training_frame_info={}, metrics={},
                            tags={})
    without_alias = run_retrain(unknown, url)
    assert without_alias.outcome == "not_possible" and "has versions 1 but no alias" in without_alias.detail
    assert len(registry.list_versions(unknown.registry_name)) == 1


def test_too_few_labels_or_a_disabled_policy_refuse_without_registering(simulated):
    _, url, _ = simulated
    hungry = served_model(simulated, min_training_labels=1_000_000)
    state = registry_state(hungry)

    refused = run_retrain(hungry, url)
    assert (refused.outcome, refused.facts["reason"]) == ("refused", "not_enough_labels")
    assert f"{refused.facts['training_labels']:,} labeled predictions" in refused.detail
    assert "1,000,000 needed" in refused.detail

    early = retraining.retrain(hungry, staging_url=url, interval_start=datetime(2026, 2, 1, tzinfo=UTC),
                               interval_end=datetime(2026, 2, 2, tzinfo=UTC), run_id="r", dry_run=False)
    assert early.outcome == "refused" and early.facts["labeled_intervals"] == 0
    assert len(early.facts["unpublished_intervals"]) == DAYS

    disabled = served_model(simulated, enabled=False)
    off = run_retrain(disabled, url)
    assert (off.outcome, off.from_version, off.to_version) == ("disabled", "1", "1")
    assert registry_state(hungry) == state and len(registry.list_versions(disabled.registry_name)) == 1


def test_new_labels_since_champion_counts_from_the_champions_training_cutoff(simulated):
    _, url, baselines = simulated
    model = served_model(simulated)
    window = intervals_ending_at(model, LAST_END, model.retrain.training_window_intervals)
    every_label = len(read_labeled(model, url, window, LAST_END))

    # v1 served every simulated request itself, so none of their labels can be in its training data.
    assert retraining.new_labels_since_champion(model, staging_url=url, interval_end=LAST_END) == every_label

    promoted = run_retrain(model, url)
    assert promoted.outcome == "promoted"
    new = retraining.new_labels_since_champion(model, staging_url=url, interval_end=LAST_END)
    assert new == promoted.facts["holdout_rows"]  # the challenger's training data ends where the holdout begins
    assert 0 < new < every_label

    # A version that never served and was registered after every request: nothing is newer than it.
    registry.register_model(model.registry_name, baselines["credit_risk"], training_frame_info={}, metrics={}, tags={})
    registry.set_champion(model.registry_name, "3")
    assert retraining.new_labels_since_champion(model, staging_url=url, interval_end=LAST_END) == 0

"""Rollback and the replay comparison, against a real MLflow store and staged batches of a bad release."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from modelwatch import pipeline, registry, settings
from modelwatch.actions import rollback as rollbacks
from modelwatch.actions.rollback import compare_versions, rollback
from modelwatch.config import ModelConfig, load_config, parse_config
from modelwatch.simulation import Incident, simulate

START = date(2026, 3, 1)
DAYS = 5
BAD_FROM = 2
DAY = timedelta(days=1)
LAST_END = datetime(2026, 3, DAYS + 1, tzinfo=UTC)


def day(offset: int) -> tuple[datetime, datetime]:
    start = datetime.combine(START + offset * DAY, datetime.min.time(), UTC)
    return start, start + DAY


@pytest.fixture(scope="module")
def simulated(tmp_path_factory, mlflow_store) -> tuple[dict, str, object, object]:
    """Five staged days of credit_risk; from the third on, a version trained without its key features served.

    Returns the model's fields, the staging URL, and the baseline and bad pipelines.
    """
    folder = tmp_path_factory.mktemp("rollback")
    raw = load_config(settings.SHIPPED_CONFIG).model_dump(by_alias=True)
    spec = next(m for m in raw["models"] if m["name"] == "credit_risk")
    spec.update(log_root=str(folder / "logs"), registered_model="simulated_credit_risk")
    config = parse_config({"staging_root": str(folder / "staging"), "models": [spec]})
    summary = simulate(
        config, start=START, days=DAYS, requests_per_day=1000,
        incidents=[Incident("bad_version", BAD_FROM, "credit_risk")], progress=lambda line: None,
    )
    for offset in range(DAYS):
        pipeline.extract("credit_risk", *day(offset), config=config)
    facts = summary.models["credit_risk"]
    baseline = registry.load_model(spec["registered_model"], facts.baseline_version)
    bad = registry.load_model(spec["registered_model"], facts.champion_version)
    return spec, config.staging_url, baseline, bad


def released(simulated, **rollback_policy) -> ModelConfig:
    """The model under a registered name of its own: v1 the baseline, v2 the bad version, champion v2."""
    spec, _, baseline, bad = simulated
    registered = f"credit_risk_{uuid.uuid4().hex[:8]}"
    spec = {**spec, "registered_model": registered, "rollback": {**spec["rollback"], **rollback_policy}}
    for pipeline_ in (baseline, bad):
        registry.register_model(registered, pipeline_, training_frame_info={}, metrics={}, tags={})
    registry.set_champion(registered, "2")
    return parse_config({"models": [spec]}).models[0]


def since_release() -> list[tuple[datetime, datetime]]:
    return [day(offset) for offset in range(BAD_FROM, DAYS)]


def test_the_version_that_served_before_did_better_on_the_same_rows(simulated):
    _, url, _, _ = simulated
    model = released(simulated)

    compared = compare_versions(model, staging_url=url, intervals=since_release(), labels_until=LAST_END,
                                current="2", previous="1")

    assert compared["metric"] == "auc_roc" and compared["better"] == "previous"
    assert compared["previous"] > compared["current"] + 0.1
    assert compared["improvement"] == pytest.approx(compared["previous"] - compared["current"])
    assert compared["labels"] > 500 and compared["unpublished_intervals"] == []
    swapped = compare_versions(model, staging_url=url, intervals=since_release(), labels_until=LAST_END,
                               current="1", previous="2")
    assert swapped["better"] == "current" and swapped["labels"] == compared["labels"]


def test_no_comparison_without_both_versions_or_without_labels(simulated):
    _, url, _, _ = simulated
    model = released(simulated)
    before = [(datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 2, 2, tzinfo=UTC))]

    assert compare_versions(model, staging_url=url, intervals=since_release(), labels_until=LAST_END,
                            current="2", previous="7") is None
    assert compare_versions(model, staging_url=url, intervals=before, labels_until=before[0][1],
                            current="2", previous="1") is None


def test_rollback_moves_the_champion_back_and_tags_the_restored_version(simulated):
    model = released(simulated)

    outcome = rollback(model, from_version="2", to_version="1", dry_run=False, reason="auc_roc below 0.75")

    assert (outcome.outcome, outcome.from_version, outcome.to_version) == ("rolled_back", "2", "1")
    assert registry.champion_version(model.registry_name) == "1"
    tags = registry.get_version(model.registry_name, "1").tags
    assert tags[rollbacks.RESTORED_FROM_TAG] == "2"
    assert tags[rollbacks.ROLLBACK_REASON_TAG] == "auc_roc below 0.75"
    assert datetime.fromisoformat(tags[rollbacks.RESTORED_AT_TAG]) <= datetime.now(UTC)

    again = rollback(model, from_version="2", to_version="1", dry_run=False, reason="auc_roc below 0.75")
    assert (again.outcome, again.from_version, again.to_version) == ("rolled_back", "2", "1")
    assert again.facts == {"repeat": True}
    assert registry.get_version(model.registry_name, "1").tags == tags
    dry = rollback(model, from_version="2", to_version="1", dry_run=True, reason="auc_roc below 0.75")
    assert (dry.outcome, dry.from_version, dry.to_version) == ("dry_run", "1", "1")
    assert dry.detail.startswith("dry run: champion of ") and dry.detail.endswith("nothing to move")
    assert registry.get_version(model.registry_name, "1").tags == tags


@pytest.mark.parametrize(
    ("to_version", "policy", "reason", "says"),
    [
        (None, {}, "no_earlier_version", "v2 has no earlier version to go back to"),
        ("9", {}, "unknown_version", "v9 is not a registered version"),
        ("1", {"enabled": False}, "disabled", "rollback.enabled: false"),
    ],
)
def test_rollback_refusals_leave_the_champion(simulated, to_version, policy, reason, says):
    model = released(simulated, **policy)

    outcome = rollback(model, from_version="2", to_version=to_version, dry_run=False, reason="quality breached")

    assert (outcome.outcome, outcome.facts["reason"]) == ("refused", reason)
    assert says in outcome.detail and "champion stays v2" in outcome.detail
    assert (outcome.from_version, outcome.to_version) == ("2", "2")
    assert registry.champion_version(model.registry_name) == "2"


def test_rollback_refuses_when_someone_moved_the_champion(simulated):
    model = released(simulated)
    _, _, baseline, _ = simulated
    registry.register_model(model.registry_name, baseline, training_frame_info={}, metrics={}, tags={})
    registry.set_champion(model.registry_name, "3")

    outcome = rollback(model, from_version="2", to_version="1", dry_run=False, reason="quality breached")

    assert (outcome.outcome, outcome.facts["reason"]) == ("refused", "champion_moved")
    assert "the champion is v3, not v2" in outcome.detail
    assert registry.champion_version(model.registry_name) == "3"
    assert rollbacks.RESTORED_FROM_TAG not in registry.get_version(model.registry_name, "1").tags


def test_a_dry_run_rollback_moves_nothing(simulated):
    model = released(simulated)
    before = registry.list_versions(model.registry_name)

    outcome = rollback(model, from_version="2", to_version="1", dry_run=True, reason="quality breached")

    assert (outcome.outcome, outcome.from_version, outcome.to_version) == ("dry_run", "2", "2")
    assert "would move champion of credit_risk from v2 back to v1" in outcome.detail
    assert registry.list_versions(model.registry_name) == before


def test_rollback_of_a_model_the_registry_does_not_know_is_not_possible(simulated):
    spec, _, _, _ = simulated
    unknown = parse_config({"models": [{**spec, "registered_model": f"unknown_{uuid.uuid4().hex[:8]}"}]}).models[0]

    outcome = rollback(unknown, from_version="2", to_version="1", dry_run=False, reason="quality breached")

    assert (outcome.outcome, outcome.from_version, outcome.to_version) == ("not_possible", None, None)
    assert "knows no model" in outcome.detail


def test_a_rollback_never_undoes_the_rollback_that_made_the_champion(simulated):
    model = released(simulated)
    rollback(model, from_version="2", to_version="1", dry_run=False, reason="auc_roc below 0.75")

    # v1 serves again and quality still alerts; v2 looks better on a few labels: no ping-pong.
    outcome = rollback(model, from_version="1", to_version="2", dry_run=False, reason="quality breached")

    assert (outcome.outcome, outcome.facts["reason"]) == ("refused", "would_undo_rollback")
    assert "restored it from v2" in outcome.detail
    assert registry.champion_version(model.registry_name) == "1"

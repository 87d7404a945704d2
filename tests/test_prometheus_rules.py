"""The shipped Prometheus files pass `promtool`: the config, the alerting rules, and the rules' unit tests.

The unit tests (monitoring/prometheus/modelwatch-alerts.test.yml) feed series to
the rules and say which alerts fire, with which labels and annotations, and
which stay silent. Without `promtool` (Debian package `prometheus`) the tests
are skipped, except under CI=true, where they fail.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from airflow_cluster import require_ci_service

from modelwatch import settings

PROMETHEUS = settings.PROJECT_ROOT / "monitoring" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    require_ci_service(found is not None, "promtool not installed: apt-get install prometheus")
    return found


def run_promtool(promtool: str, *arguments: str) -> str:
    """Run promtool in the rules' folder; fail with its output unless it succeeds."""
    result = subprocess.run([promtool, *arguments], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def test_the_alerting_rules_are_valid(promtool):
    assert "SUCCESS: 8 rules found" in run_promtool(promtool, "check", "rules", "modelwatch-alerts.yml")


def test_the_alerts_fire_on_their_unit_tests_series_and_only_there(promtool):
    assert "SUCCESS" in run_promtool(promtool, "test", "rules", "modelwatch-alerts.test.yml")


def test_the_scrape_config_is_valid_with_its_rules_and_target_file(promtool):
    output = run_promtool(promtool, "check", "config", "prometheus.yml")
    assert "SUCCESS: prometheus.yml is valid" in output and "SUCCESS: 8 rules found" in output


def test_every_alert_waits_has_a_severity_and_explains_itself_with_its_labels():
    import yaml

    groups = yaml.safe_load((PROMETHEUS / "modelwatch-alerts.yml").read_text())["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    for rule in rules:
        assert rule.get("for"), f"{rule['alert']} has no `for`"
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert {"summary", "description"} <= rule["annotations"].keys(), rule["alert"]
        assert "$labels.model" in rule["annotations"]["summary"], rule["alert"]
        if "modelwatch_decision" in rule["expr"]:
            assert 'mode="on"' in rule["expr"], f"{rule['alert']} would page on a dry run's decision"

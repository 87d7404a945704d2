"""A dry run of monitor_credit_risk from Airflow's web UI, in Debian's Chromium (headless, Playwright).

The test logs in through the UI's login form, triggers a run from the DAG's
trigger form with the logical date 2026-03-01 and `actions=dry_run`, waits
until the runs list shows it successful and saves a screenshot of the run's
graph with the branch taken to `.test-logs/screenshots/`. The warehouse must
hold the dry run's decision and the registry must be unchanged.

Without Chromium the test is skipped, except under CI=true where it fails.
"""

from __future__ import annotations

import time
from datetime import date

import pytest
import scenarios
from airflow_cluster import USER, Cluster
from browser import SCREENSHOTS, assert_png, browser_page, log_in
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.slow

DAG_ID = "monitor_credit_risk"
DAY, NEXT_DAY = scenarios.day(0), scenarios.day(1)
TIME = "12:00"  # any time of the day names its interval
RUN_ID = f"browser_dry_run_{DAY}"
BRANCHES = ["halt", "rollback", "retrain", "alert", "healthy"]
TAKEN = scenarios.EXPECTED["credit_risk"][0]  # healthy: the first day has no history to alert on
GRAPH_SCREENSHOT = SCREENSHOTS / f"{DAG_ID}-dry-run-graph.png"
FAILURE_SCREENSHOT = SCREENSHOTS / f"{DAG_ID}-dry-run-failure.png"
RUN_TIMEOUT_S = 10 * 60
POLL_S = 10


def trigger_dry_run(page: Page) -> None:
    """Fill the DAG's trigger form (logical date, `actions`, run id) and submit it."""
    page.get_by_role("link", name="Dags", exact=True).click()
    page.get_by_role("link", name=DAG_ID, exact=True).click()
    page.wait_for_url(f"**/dags/{DAG_ID}")
    # The URL changes before the DAG's page replaces the list, whose every row has a trigger button too.
    expect(page.get_by_role("navigation", name="breadcrumb")).to_contain_text(DAG_ID)
    page.get_by_role("button", name="Trigger Dag").click()
    form = page.get_by_role("dialog").filter(has=page.get_by_role("heading", name="Trigger Dag"))
    expect(form).to_be_visible()
    expect(form.get_by_role("radio", name="Single Run")).to_be_checked()

    # The logical date is a popover of its own with a date and a time field (UTC, as the UI says).
    form.get_by_test_id("datetime-input").click()
    picker = page.get_by_role("dialog").filter(has=page.get_by_placeholder("YYYY/MM/DD"))
    picker.get_by_placeholder("YYYY/MM/DD").fill(DAY.replace("-", "/"))
    picker.get_by_role("textbox", name="HH:mm").fill(TIME)
    form.get_by_role("heading", name="Trigger Dag").click()  # closes the popover, keeps the form
    shown = f"{date.fromisoformat(DAY):%b %d, %Y} {TIME}"  # the form's own format: Mar 01, 2026 12:00
    expect(form.get_by_test_id("datetime-input")).to_have_text(shown)

    form.get_by_role("combobox", name="Actions").click()
    page.get_by_role("option", name="dry_run", exact=True).click()
    # The form keeps a select's value in a hidden input named after the Param.
    expect(form.locator("input[name='element_actions']")).to_have_value("dry_run")

    # A run id of the test's own names the run in the UI and in the REST API.
    form.get_by_role("button", name="Advanced Options").click()
    form.get_by_role("textbox", name="Run ID").fill(RUN_ID)
    form.get_by_role("button", name="Trigger", exact=True).click()
    page.wait_for_url(f"**/dags/{DAG_ID}/runs/{RUN_ID}")


def wait_until_shown_successful(page: Page, base_url: str, cluster: Cluster) -> None:
    """Reload the DAG's runs list until the run's state badge says Success.

    Raises
    ------
    AssertionError
        The list shows the run failed, an Airflow process exited, or `RUN_TIMEOUT_S` passed.
    """
    deadline = time.monotonic() + RUN_TIMEOUT_S
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=RUN_ID, exact=True))
    state = ""
    while True:
        page.goto(f"{base_url}/dags/{DAG_ID}/runs")
        row.wait_for()
        state = row.get_by_test_id("state-badge").inner_text().strip()
        if state == "Success":
            return
        if state == "Failed":
            raise AssertionError(cluster.explain(DAG_ID, [RUN_ID], "failed (shown in the UI)"))
        if dead := cluster.services.dead_parts():
            raise AssertionError(cluster.services.describe(f"{dead[0].name} exited"))
        if time.monotonic() > deadline:
            raise AssertionError(cluster.explain(DAG_ID, [RUN_ID], f"not shown successful in {RUN_TIMEOUT_S} s "
                                                                   f"(state {state!r})"))
        time.sleep(POLL_S)


def save_graph(page: Page) -> None:
    """Open the run's Graph view, check the branch taken in it and save a screenshot of the graph."""
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=RUN_ID, exact=True))
    row.get_by_role("link", name=RUN_ID, exact=True).click()
    page.wait_for_url(f"**/dags/{DAG_ID}/runs/{RUN_ID}")
    page.get_by_role("button", name="Show Graph (Press g)").click()
    # React Flow draws the graph: its container and nodes have no role, only these class names.
    graph = page.locator(".react-flow")
    for task in BRANCHES:
        node = graph.locator(".react-flow__node").filter(has=page.get_by_role("link", name=task, exact=True))
        expect(node.get_by_test_id("state-badge")).to_have_text("success" if task == TAKEN else "skipped")
    # The whole width for the graph, fitted to it, so that its labels stay readable.
    page.get_by_role("button", name="Collapse Details Panel").click()
    page.get_by_role("button", name="Fit View").click()
    page.wait_for_timeout(1_000)  # the fit is animated
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    graph.screenshot(path=GRAPH_SCREENSHOT)


def test_dry_run_from_the_trigger_form_shows_the_branch_taken(chromium, week, start_airflow, use_week_here):
    url = f"sqlite:///{week / 'warehouse.db'}"
    # Nothing is sent in a dry run: the notification connections may stay empty.
    env = scenarios.environment(week, url, "", "")
    use_week_here(env)
    registry_before = scenarios.registry_state("credit_risk")
    assert registry_before[0] and registry_before[1] is not None

    cluster = start_airflow(env)
    cluster.wait_for_dags([DAG_ID, "monitor_delivery_time"])
    base_url = cluster.services.base_url
    GRAPH_SCREENSHOT.unlink(missing_ok=True)
    FAILURE_SCREENSHOT.unlink(missing_ok=True)

    # A wide viewport keeps every branch of the graph legible in the screenshot.
    with browser_page(chromium, FAILURE_SCREENSHOT, viewport={"width": 1600, "height": 900},
                      device_scale_factor=2) as page:
        log_in(page, base_url)
        trigger_dry_run(page)
        wait_until_shown_successful(page, base_url, cluster)
        # The UI and the REST API agree: the run of the form's day, with the form's Params.
        (run,) = [run for run in cluster.runs(DAG_ID) if run["dag_run_id"] == RUN_ID]
        assert run["state"] == "success"
        assert run["run_type"] == "manual" and run["triggered_by"] == "ui" and run["triggering_user_name"] == USER
        assert run["conf"]["actions"] == "dry_run"
        assert run["logical_date"] == f"{DAY}T{TIME}:00Z"
        assert (run["data_interval_start"], run["data_interval_end"]) == (f"{DAY}T00:00:00Z", f"{NEXT_DAY}T00:00:00Z")
        states = {ti["task_id"]: ti["state"] for ti in cluster.task_instances(DAG_ID, RUN_ID)}
        assert {task: states[task] for task in BRANCHES} == {b: "success" if b == TAKEN else "skipped"
                                                             for b in BRANCHES}
        save_graph(page)

    assert_png(GRAPH_SCREENSHOT)

    # Decided and recorded as a dry run, with no decision in force and no registry change.
    dry = scenarios.decisions(url, "dry_run")
    assert list(dry.index) == [("credit_risk", DAY)]
    decided = dry.loc[("credit_risk", DAY)]
    assert (decided["decision"], decided["outcome"], decided["run_id"]) == (TAKEN, "none", RUN_ID)
    assert not decided["notified"]
    assert scenarios.decisions(url, "on").empty
    assert scenarios.registry_state("credit_risk") == registry_before

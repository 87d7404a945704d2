"""The model-health page inside Airflow's UI, in Debian's Chromium (headless, Playwright).

Both monitor DAGs run the week's first days with `dag.test()` in the test's
Airflow before it starts, so that the warehouse holds their decisions and the
metadata database their runs. The test signs in through the UI's login form,
follows the navigation link "Health" to the page the plugin
`modelwatch_health` embeds, sees both models with their decisions, opens
credit_risk and its charts, follows a decision's link to its DAG run's page in
the UI, and saves screenshots to `.test-logs/screenshots/`. A request without
the UI's sign-in cookie is sent to the login page.

Without Chromium the test is skipped, except under CI=true where it fails.
"""

from __future__ import annotations

import urllib.request
from datetime import timedelta
from urllib.parse import quote

import pytest
import scenarios
from airflow_cluster import run_with_dag_test
from browser import SCREENSHOTS, assert_png, browser_page, log_in
from playwright.sync_api import expect

pytestmark = pytest.mark.slow

MODELS = ["credit_risk", "delivery_time"]
DAG_IDS = [f"monitor_{model}" for model in MODELS]
DAYS_RUN = 3  # healthy, healthy, then the data-quality break halts credit_risk
PAGE_NAME = "Health"
INDEX_SCREENSHOT = SCREENSHOTS / "model-health-index-in-airflow-ui.png"
MODEL_SCREENSHOT = SCREENSHOTS / "model-health-credit_risk.png"
FAILURE_SCREENSHOT = SCREENSHOTS / "model-health-failure.png"


def test_the_navigation_link_opens_the_health_of_both_models_inside_the_ui(chromium, week, start_airflow,
                                                                           use_week_here):
    url = f"sqlite:///{week / 'warehouse.db'}"
    env = scenarios.environment(week, url, "", "")
    use_week_here(env)
    days = [scenarios.START + timedelta(days=k) for k in range(DAYS_RUN)]

    def run_first_days(home, airflow_env):
        for dag_id in DAG_IDS:
            run_with_dag_test(airflow_env, dag_id, days)

    cluster = start_airflow(env, before_start=run_first_days)
    cluster.wait_for_dags(DAG_IDS, unpause=False)
    decided = scenarios.decisions(url)
    assert sorted(decided.index) == [(model, scenarios.day(k)) for model in MODELS for k in range(DAYS_RUN)]
    first_run = decided.loc[("credit_risk", scenarios.day(0)), "run_id"]
    base_url = cluster.services.base_url
    for screenshot in (INDEX_SCREENSHOT, MODEL_SCREENSHOT, FAILURE_SCREENSHOT):
        screenshot.unlink(missing_ok=True)

    # Tall enough for a model's charts.
    with browser_page(chromium, FAILURE_SCREENSHOT, viewport={"width": 1600, "height": 1000}) as page:
        log_in(page, base_url)
        page.get_by_role("link", name=PAGE_NAME, exact=True).click()
        page.wait_for_url("**/plugin/model-health/**")
        frame = page.frame_locator(f"iframe[title='{PAGE_NAME}']")
        for model in MODELS:
            card = frame.locator(f"section.model-card[data-model='{model}']")
            expect(card.get_by_role("heading", name=model)).to_be_visible()
            expect(card.locator("svg.decision-strip rect.decision")).to_have_count(DAYS_RUN)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=INDEX_SCREENSHOT)

        frame.get_by_role("link", name="credit_risk", exact=True).click()
        expect(frame.get_by_role("heading", name="credit_risk", exact=True)).to_be_visible()
        expect(frame.locator("table.decisions tbody tr")).to_have_count(DAYS_RUN)
        expect(frame.locator("table.decisions tr[data-decision='halt']")).to_have_count(1)
        expect(frame.locator("svg.heatmap")).to_be_visible()
        for metric in ("auc_roc", "error_rate", "latency_p99_ms", "label_coverage"):
            expect(frame.locator(f"svg.line-chart[data-metric='{metric}']")).to_be_visible()

        # A decision's run link leaves the frame: the UI itself shows that run, the one that decided.
        frame.get_by_role("link", name=first_run, exact=True).click()
        page.wait_for_url(f"**/dags/monitor_credit_risk/runs/{quote(first_run, safe='')}")
        expect(page.get_by_role("navigation", name="breadcrumb")).to_contain_text(first_run)
        expect(page.locator(f"iframe[title='{PAGE_NAME}']")).to_have_count(0)

        # The page on its own, with the UI's sign-in cookie: every chart in one screenshot.
        page.goto(f"{base_url}/modelwatch/health/models/credit_risk")
        expect(page.locator("svg.chart").first).to_be_visible()
        page.screenshot(path=MODEL_SCREENSHOT, full_page=True)

    assert_png(INDEX_SCREENSHOT)
    assert_png(MODEL_SCREENSHOT)

    # Without the cookie the page sends its visitor to Airflow's login page, coming back afterwards.
    with urllib.request.urlopen(f"{base_url}/modelwatch/health/models/credit_risk", timeout=60) as answer:
        assert "/auth/login" in answer.url and quote("/modelwatch/health/models/credit_risk", safe="") in answer.url

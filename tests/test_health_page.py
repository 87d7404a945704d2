"""The model-health page (`modelwatch.health_page`) through FastAPI's TestClient, on a real warehouse.

The week of incidents of `scenarios` is simulated once; each backend's
warehouse is filled by running every task function of both shipped models
over it, with control limits judging from the fourth day on so that they
show. The pages must show what the warehouse holds: one chart point per
measured interval, one breach marker per breached check row, one heatmap cell
per feature and interval tested, one decision row per decision with a link to
its DAG run. Sign-in and read access come from an `Access` of the test's own
(the plugin's, backed by Airflow's auth manager, is exercised by
`tests/e2e/test_health_page_browser.py`).
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest
import scenarios
from fastapi.testclient import TestClient
from markupsafe import escape
from pipelines import run_interval
from sqlalchemy import insert
from warehouse.builders import bundle

from modelwatch import registry, settings
from modelwatch.config import ProjectConfig, load_config
from modelwatch.health_page.app import create_app
from modelwatch.warehouse import schema
from modelwatch.warehouse.engine import get_engine, migrate
from modelwatch.warehouse.load import load_run, read_frame

MODELS = ["credit_risk", "delivery_time"]
SHIPPED = settings.SHIPPED_CONFIG
CONTROL_LIMIT_HISTORY = 3  # intervals before control limits judge: the week's fourth day on
LOGIN = "/sign-in"


class SignedIn:
    """A signed-in viewer who may read the models named (every model by default)."""

    def __init__(self, readable: set[str] | None = None):
        self.readable = readable

    async def viewer(self, request):
        return "analyst"

    def may_read(self, viewer, model_name: str) -> bool:
        return self.readable is None or model_name in self.readable

    def login_url(self, next_url: str) -> str:
        return f"{LOGIN}?next={quote(next_url, safe='')}"


class SignedOut(SignedIn):
    async def viewer(self, request):
        return None


class Page(HTMLParser):
    """A page's elements: each tag with its attributes, its text, and the chart (``svg``) and row (``tr``) around it."""

    VOID = frozenset({"meta", "link", "br", "img", "input", "hr"})

    def __init__(self, html: str):
        super().__init__()
        self.elements: list[dict] = []
        self._open: list[dict] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        element = {"tag": tag, "attrs": dict(attrs), "text": "", "svg": self._nearest("svg"), "tr": self._nearest("tr")}
        self.elements.append(element)
        if tag not in self.VOID:
            self._open.append(element)

    def handle_endtag(self, tag):
        while self._open:
            if self._open.pop()["tag"] == tag:
                break

    def handle_data(self, data):
        for element in self._open:
            element["text"] += data

    def _nearest(self, tag: str) -> dict | None:
        return next((element for element in reversed(self._open) if element["tag"] == tag), None)

    def find(self, tag: str, css_class: str | None = None, **attrs: str) -> list[dict]:
        """Elements of `tag` with the class and the attribute values given (``data_metric`` for ``data-metric``)."""
        wanted = {name.replace("_", "-"): value for name, value in attrs.items()}
        return [element for element in self.elements if element["tag"] == tag
                and (css_class is None or css_class in element["attrs"].get("class", "").split())
                and all(element["attrs"].get(name) == value for name, value in wanted.items())]

    def charts(self) -> dict[str, dict]:
        """The line charts by the metric they show."""
        return {svg["attrs"]["data-metric"]: svg for svg in self.find("svg", "line-chart")}

    def inside(self, svg: dict, tag: str, css_class: str) -> list[dict]:
        return [element for element in self.find(tag, css_class) if element["svg"] is svg]


def iso(value) -> str:
    """A timestamp from any driver (SQLite gives text) as the page's interval key."""
    stamp = pd.Timestamp(value)
    return (stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)).isoformat()


def client(access, url: str, config_path: Path = SHIPPED) -> TestClient:
    return TestClient(create_app(access, config_path=config_path, warehouse_url=url), follow_redirects=False)


@pytest.fixture(scope="module")
def pristine_week(tmp_path_factory) -> Path:
    """The week's logs, reference data and registry, simulated once; each test fills a warehouse from a copy."""
    folder = tmp_path_factory.mktemp("week")
    previous = dict(registry._state)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in scenarios.environment(folder, "sqlite://", "", "").items():
            patch.setenv(name, value)
        config_path = scenarios.write_config(folder / "models.yaml", min_history=CONTROL_LIMIT_HISTORY)
        scenarios.simulate_week(config_path)
    registry._state.update(previous)
    return folder


@pytest.fixture
def filled_warehouse(pristine_week, tmp_path, warehouse_url, monkeypatch) -> tuple[Path, str]:
    """A warehouse holding the whole week of both models, as their runs wrote it; returns the models file and URL."""
    week = tmp_path / "week"
    shutil.copytree(pristine_week, week)
    env = scenarios.environment(week, warehouse_url, "", "")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setitem(registry._state, "uri", registry._state["uri"])
    registry.configure(env["MLFLOW_TRACKING_URI"])
    config = load_config(week / "models.yaml")
    for model in config.models:
        alone = ProjectConfig(staging_root=config.staging_root, models=[model])
        for day in range(1, scenarios.DAYS + 1):
            run_interval(alone, day, warehouse_url, run_id=f"scheduled__2026-03-{day:02d}T00:00:00+00:00")
    return week / "models.yaml", warehouse_url


def warehouse_rows(url: str, sql: str, **params) -> pd.DataFrame:
    engine = get_engine(url)
    try:
        return read_frame(engine, sql, params)
    finally:
        engine.dispose()


def test_the_pages_show_both_models_as_the_warehouse_holds_them(filled_warehouse):
    """The index, then each model's decisions, charts, heatmap and label coverage, then a shorter window."""
    config_path, url = filled_warehouse
    pages = client(SignedIn(), url, config_path)

    index = pages.get("/")
    assert index.status_code == 200
    shown = Page(index.text)
    cards = {card["attrs"]["data-model"]: card for card in shown.find("section", "model-card")}
    assert sorted(cards) == MODELS
    for name in MODELS:
        assert shown.find("a", href=f"/models/{name}")
        decided = warehouse_rows(url, "SELECT COUNT(*) AS n FROM model_decision_timeline WHERE model_name = :m",
                                 m=name)["n"].iloc[0]
        strip = [rect for rect in shown.find("rect", "decision") if rect["svg"]["attrs"]["id"] == f"{name}-decisions"]
        assert len(strip) == decided == scenarios.DAYS

    breached_in_total = 0
    for name in MODELS:
        response = pages.get(f"/models/{name}")
        assert response.status_code == 200
        model_page = Page(response.text)
        assert_decisions_as_stored(model_page, url, name)
        breached_in_total += assert_metric_charts_as_stored(model_page, url, name)
        assert_heatmap_as_stored(model_page, url, name)
        assert_label_coverage_as_stored(model_page, url, name)
        for svg in model_page.find("svg", "chart"):
            labelled_by = svg["attrs"]["aria-labelledby"].split()
            assert svg["attrs"]["role"] == "img"
            assert [e["attrs"]["id"] for e in model_page.elements if e["svg"] is svg and e["tag"] in ("title", "desc")
                    and "id" in e["attrs"]] == labelled_by
    # The week has breaches of thresholds and control limits, or the markers would prove nothing.
    assert breached_in_total > 0
    assert_a_window_shows_only_the_latest(pages)


def assert_a_window_shows_only_the_latest(pages: TestClient) -> None:
    model_page = Page(pages.get("/models/delivery_time?intervals=3").text)
    latest = [iso(datetime(2026, 3, day, tzinfo=UTC)) for day in (5, 6, 7)]
    assert [row["attrs"]["data-interval"] for row in model_page.find("tr") if "data-decision" in row["attrs"]] == latest
    points = model_page.inside(model_page.charts()["label_coverage"], "circle", "point")
    assert sorted(p["attrs"]["data-interval"] for p in points) == latest
    assert pages.get("/models/delivery_time?intervals=0").status_code == 422


def assert_decisions_as_stored(page: Page, url: str, name: str) -> None:
    stored = warehouse_rows(url, "SELECT interval_start, decision, champion_after, run_id FROM model_decision_timeline "
                                 "WHERE model_name = :m ORDER BY interval_start", m=name)
    rows = [row for row in page.find("tr") if "data-decision" in row["attrs"]]
    assert [(row["attrs"]["data-interval"], row["attrs"]["data-decision"]) for row in rows] == \
        [(iso(start), decision) for start, decision in zip(stored["interval_start"], stored["decision"], strict=True)]
    champions = [cell["text"].strip() for cell in page.find("td", "champion")]
    assert [champion.split("→")[-1].strip() for champion in champions] == stored["champion_after"].tolist()
    links = [link["attrs"]["href"] for link in page.find("a", "run-link")]
    assert links == [f"/dags/monitor_{name}/runs/{quote(run_id, safe='')}" for run_id in stored["run_id"]]
    assert links[0] == f"/dags/monitor_{name}/runs/scheduled__2026-03-01T00%3A00%3A00%2B00%3A00"


def assert_metric_charts_as_stored(page: Page, url: str, name: str) -> int:
    """Each judged metric's chart has a point per measured interval, its limits, and a marker per breached row."""
    checks = warehouse_rows(url, "SELECT check_name, check_kind, metric, limit_low, limit_high, breached "
                                 "FROM check_results WHERE model_name = :m", m=name)
    charts = page.charts()
    assert set(charts) - {"label_coverage"} == set(checks["metric"].dropna())
    for metric in set(checks["metric"].dropna()):
        svg = charts[metric]
        judged = checks[checks["metric"] == metric]
        assert len(page.inside(svg, "circle", "point")) == measured_intervals(url, name, metric), metric
        with_limits = judged[(judged["check_kind"] == "control_limit")
                             & (judged["limit_low"].notna() | judged["limit_high"].notna())]
        assert len(page.inside(svg, "rect", "control-limits")) == len(with_limits), metric
        breaches = page.inside(svg, "path", "breach")
        assert sorted(b["attrs"]["data-check"] for b in breaches) == \
            sorted(judged.loc[judged["breached"].astype(bool), "check_name"]), metric
    all_breaches = page.find("path", "breach")
    assert len(all_breaches) == int(checks["breached"].astype(bool).sum())
    assert len([row for row in page.find("tr") if "data-check" in row["attrs"]]) == len(all_breaches)
    assert any(page.inside(svg, "rect", "control-limits") for svg in charts.values())
    return len(all_breaches)


def measured_intervals(url: str, name: str, metric: str) -> int:
    """Intervals with a value of `metric`: its overall rows, or the run tables it is derived from."""
    if metric == "quarantined_share":
        sql = ("SELECT COUNT(*) AS n FROM monitoring_runs WHERE model_name = :m AND status IN ('success', 'halted') "
               "AND rows_read + COALESCE(labels_read, 0) > 0")
    elif metric == "drifted_feature_share":
        sql = "SELECT COUNT(DISTINCT interval_start) AS n FROM feature_drift WHERE model_name = :m"
    else:
        sql = ("SELECT COUNT(value) AS n FROM model_metrics WHERE model_name = :m AND metric = :metric "
               "AND model_version = 'all' AND segment = 'all'")
    return int(warehouse_rows(url, sql, m=name, metric=metric)["n"].iloc[0])


def assert_heatmap_as_stored(page: Page, url: str, name: str) -> None:
    tested = warehouse_rows(url, "SELECT feature, interval_start, MAX(CASE WHEN drifted THEN 1 ELSE 0 END) AS drifted "
                                 "FROM feature_drift WHERE model_name = :m GROUP BY feature, interval_start", m=name)
    cells = page.find("rect", "cell")
    assert sorted((c["attrs"]["data-feature"], c["attrs"]["data-interval"], c["attrs"]["data-drifted"])
                  for c in cells) == sorted(
        (feature, iso(start), "true" if drifted else "false")
        for feature, start, drifted in tested.itertuples(index=False))
    assert any(c["attrs"]["data-drifted"] == "true" for c in cells)
    assert all(c["text"] for c in page.find("title") if c["svg"] is cells[0]["svg"])


def assert_label_coverage_as_stored(page: Page, url: str, name: str) -> None:
    coverage = warehouse_rows(url, "SELECT interval_start, label_coverage FROM model_health_daily "
                                   "WHERE model_name = :m AND label_coverage IS NOT NULL", m=name)
    points = page.inside(page.charts()["label_coverage"], "circle", "point")
    assert sorted(p["attrs"]["data-interval"] for p in points) == sorted(iso(s) for s in coverage["interval_start"])
    assert sorted(float(p["attrs"]["data-value"]) for p in points) == pytest.approx(sorted(coverage["label_coverage"]))


@pytest.mark.parametrize("name", [
    "unknown_model",
    "credit_risk' OR '1'='1",
    "credit_risk; DROP TABLE model_actions; --",
    "<script>alert('x')</script>",
    "credit_risk\"><img src=x onerror=alert(1)>",
])
def test_a_model_name_that_is_not_configured_is_not_found_and_shown_escaped(name, warehouse_engine, warehouse_url):
    response = client(SignedIn(), warehouse_url).get(f"/models/{quote(name, safe='')}")
    assert response.status_code == 404
    assert "text/html" in response.headers["content-type"]
    assert "<script>alert" not in response.text and "<img src=x" not in response.text
    if "/" not in name:  # a "/" (even as %2F) splits the path: no route matches, and the page says only "Not Found"
        assert f"No configured model is named {escape(repr(name))}" in response.text
    # Nothing ran: the decisions table is still there.
    assert read_frame(warehouse_engine, "SELECT COUNT(*) AS n FROM model_actions")["n"].iloc[0] == 0


def test_an_empty_warehouse_shows_no_runs_yet_before_and_after_its_migration(warehouse_url):
    pages = client(SignedIn(), warehouse_url)
    for state in ("never migrated", "migrated, no rows"):
        if state == "migrated, no rows":
            migrate(warehouse_url)
        index = Page(pages.get("/").text)
        assert sorted(card["attrs"]["data-model"] for card in index.find("section", "model-card")) == MODELS, state
        assert len(index.find("p", "no-runs")) == len(MODELS), state
        for name in MODELS:
            response = pages.get(f"/models/{name}")
            assert response.status_code == 200, state
            model_page = Page(response.text)
            assert model_page.find("p", "no-runs") and not model_page.find("svg"), state


def test_text_from_the_warehouse_is_escaped_and_run_ids_are_quoted(warehouse_engine, warehouse_url):
    start = datetime(2026, 3, 1, tzinfo=UTC)
    run_id = "manual__<b>&\"x\"/1"
    load_run(warehouse_engine, bundle("credit_risk", start, run_id=run_id))
    with warehouse_engine.begin() as connection:
        connection.execute(insert(schema.model_actions), {
            "model_name": "credit_risk", "interval_start": start, "interval_end": datetime(2026, 3, 2, tzinfo=UTC),
            "decision": "alert", "reason": "<script>alert('reason')</script> & more", "run_id": run_id,
            "to_version": "<i>7</i>",
        })
    for path in ("/", "/models/credit_risk"):
        text = client(SignedIn(), warehouse_url).get(path).text
        assert "<script>alert('reason')" not in text and "<i>7</i>" not in text and "<b>&" not in text
        assert "&lt;script&gt;alert(&#39;reason&#39;)&lt;/script&gt; &amp; more" in text
    model_page = Page(client(SignedIn(), warehouse_url).get("/models/credit_risk").text)
    (link,) = model_page.find("a", "run-link")
    assert link["attrs"]["href"] == "/dags/monitor_credit_risk/runs/manual__%3Cb%3E%26%22x%22%2F1"
    assert link["text"] == run_id


def test_a_visitor_who_is_not_signed_in_is_sent_to_sign_in(warehouse_url):
    for path in ("/", "/models/credit_risk?intervals=7"):
        response = client(SignedOut(), warehouse_url).get(path)
        assert response.status_code == 303
        assert response.headers["location"] == f"{LOGIN}?next={quote('http://testserver' + path, safe='')}"


def test_a_viewer_sees_only_the_models_whose_dag_they_may_read(warehouse_engine, warehouse_url):
    pages = client(SignedIn(readable={"delivery_time"}), warehouse_url)
    index = Page(pages.get("/").text)
    assert [card["attrs"]["data-model"] for card in index.find("section", "model-card")] == ["delivery_time"]
    denied = pages.get("/models/credit_risk")
    assert denied.status_code == 403
    assert "monitor_credit_risk" in denied.text
    assert pages.get("/models/delivery_time").status_code == 200


def test_the_page_runs_mounted_under_a_prefix_and_links_to_the_airflow_ui_root(warehouse_url):
    from fastapi import FastAPI

    host = FastAPI(root_path="/airflow")
    host.mount("/modelwatch/health", create_app(SignedIn(), mount_path="/modelwatch/health", config_path=SHIPPED,
                                                 warehouse_url=warehouse_url))
    index = Page(TestClient(host).get("/airflow/modelwatch/health/").text)
    assert index.find("a", href="/airflow/modelwatch/health/models/credit_risk")
    assert index.find("a", href="/airflow/dags/monitor_credit_risk")
    assert TestClient(host).get("/airflow/modelwatch/health/icon.svg").headers["content-type"] == "image/svg+xml"


def test_an_unreachable_warehouse_and_a_bad_models_file_are_told_on_the_page(tmp_path, warehouse_url):
    # Nothing listens on port 1: the connection is refused at once.
    unreachable = client(SignedIn(), "postgresql+psycopg://modelwatch@127.0.0.1:1/modelwatch").get("/")
    assert unreachable.status_code == 503
    assert "Warehouse unavailable" in unreachable.text and "127.0.0.1:1" in unreachable.text

    bad = tmp_path / "models.yaml"
    bad.write_text("models:\n  - name: credit_risk\n    task: ranking\n")
    broken = client(SignedIn(), warehouse_url, bad).get("/models/credit_risk")
    assert broken.status_code == 500
    assert "Models file not valid" in broken.text and "models[credit_risk].task" in broken.text

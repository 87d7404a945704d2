"""The Grafana dashboards of monitoring/grafana/ are well formed and their SQL runs on a real warehouse.

Grafana runs a panel's SQL in two steps, and `expand` repeats both:

1. the browser replaces the dashboard's variables (`${model}`, `$model`,
   `[[model]]`); a single-value variable goes in as it is, its single quotes
   doubled, so the query writes the quotes around it (`'${model}'`);
2. the PostgreSQL data source replaces its macros (`$__timeFilter(col)` and
   the others below) with SQL for the dashboard's time range.

A variable, format or macro that `expand` does not know fails the test rather
than being passed over, so a dashboard cannot use one that nobody checked.
The scenario week of `scenarios` fills a PostgreSQL warehouse through every
task of both shipped models; every panel's, variable's and annotation's query
then runs on it, read-only, for each model, and must return what Grafana can
draw (a time series needs a `time` column, sorted), and rows for both models.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import psycopg
import pytest
import scenarios
import yaml
from pipelines import run_interval
from sqlalchemy.engine import make_url

from modelwatch import registry, settings
from modelwatch.config import ProjectConfig, load_config
from modelwatch.warehouse import schema

GRAFANA = settings.PROJECT_ROOT / "monitoring" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "warehouse.yml"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "modelwatch.yml"
WAREHOUSE_UID = "modelwatch-warehouse"
POSTGRES_PLUGIN = "grafana-postgresql-datasource"
MODEL_VARIABLE = "model"
MODELS = ["credit_risk", "delivery_time"]
CONTROL_LIMIT_HISTORY = 3  # intervals before control limits judge: the week's fourth day on
GRID_COLUMNS = 24
# Panels allowed to come back empty for one model of the scenario, and why; every other panel must have rows.
MAY_BE_EMPTY = {
    ("modelwatch-decisions", "Failed data-quality expectations", "delivery_time"):
        "only credit_risk's week has a data-quality incident",
}


class UnknownMacro(ValueError):
    """A `$__name` that `expand` does not implement."""


class UnknownVariable(ValueError):
    """A variable the dashboard does not define, or a variable format that `expand` does not implement."""


@dataclass(frozen=True)
class TimeRange:
    """The dashboard's time range, as Grafana hands it to the data source."""

    start: datetime
    end: datetime


# `${name}` (with an optional `.field` or `:format` Grafana also reads), `[[name]]`, `$name`.
_VARIABLE = re.compile(r"\$\{(?P<braced>\w+)(?P<suffix>[^}]*)\}|\[\[(?P<bracketed>\w+)\]\]|\$(?P<plain>\w+)")
# The PostgreSQL data source's own pattern for a macro call (pkg/tsdb/grafana-postgresql-datasource/macros.go).
_MACRO = re.compile(r"\$(?P<name>[_a-zA-Z0-9]+)\((?P<arguments>[^)]*)\)")
_INTERVAL = re.compile(r"(?P<count>\d+)(?P<unit>[smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def grafana_time(moment: datetime) -> str:
    """`moment` in UTC as Go's `time.RFC3339Nano` writes it: `Z`, and no trailing zeros in the fraction."""
    utc = moment.astimezone(UTC)
    fraction = f".{utc.microsecond:06d}".rstrip("0").rstrip(".")
    return f"{utc:%Y-%m-%dT%H:%M:%S}{fraction}Z"


def substitute_variables(sql: str, values: Mapping[str, str]) -> str:
    """`sql` with each dashboard variable replaced as Grafana's SQL data sources replace a single value.

    The value goes in unquoted with its single quotes doubled. Names starting
    with `__` are macros and built-ins, left for `expand_macros`.

    Raises
    ------
    UnknownVariable
        A variable not in `values`, or one written with a field or format (`${model:csv}`).
    """

    def replace(match: re.Match) -> str:
        name = match["braced"] or match["bracketed"] or match["plain"]
        if name.startswith("__"):
            return match[0]
        if match["suffix"]:
            raise UnknownVariable(f"${{{name}{match['suffix']}}}: only plain single-value variables are expanded")
        if name not in values:
            raise UnknownVariable(f"${name} is not a variable of the dashboard")
        return values[name].replace("'", "''")

    return _VARIABLE.sub(replace, sql)


def _time_group(arguments: list[str]) -> str:
    """`$__timeGroup(column, 'interval')` without TimescaleDB: the column floored to the interval, in epoch seconds."""
    if len(arguments) != 2:
        raise UnknownMacro(f"$__timeGroup{tuple(arguments)}: expected (column, interval); fill modes are not expanded")
    column, interval = arguments[0], arguments[1].strip("'")
    match = _INTERVAL.fullmatch(interval)
    if match is None:
        raise UnknownMacro(f"$__timeGroup: interval {interval!r} is not <number><s|m|h|d|w>")
    # Go's %v of a float64, which Grafana uses, writes whole numbers without a decimal point, as "g" does.
    seconds = format(float(int(match["count"]) * _UNIT_SECONDS[match["unit"]]), "g")
    return f"floor(extract(epoch from {column})/{seconds})*{seconds}"


def expand_macros(sql: str, time_range: TimeRange) -> str:
    """`sql` with the PostgreSQL data source's macros replaced for `time_range`, as Grafana writes them.

    Raises
    ------
    UnknownMacro
        A macro other than `$__timeFilter`, `$__timeFrom`, `$__timeTo` and `$__timeGroupAlias`, or a
        built-in such as `$__interval` left after expansion.
    """
    start, end = grafana_time(time_range.start), grafana_time(time_range.end)

    def evaluate(match: re.Match) -> str:
        name, arguments = match["name"], [argument.strip() for argument in match["arguments"].split(",")]
        if name == "__timeFilter":
            return f"{arguments[0]} BETWEEN '{start}' AND '{end}'"
        if name == "__timeFrom":
            return f"'{start}'"
        if name == "__timeTo":
            return f"'{end}'"
        if name == "__timeGroupAlias":
            return f'{_time_group(arguments)} AS "time"'
        raise UnknownMacro(f"${name}(...) is not expanded")

    expanded = _MACRO.sub(evaluate, sql)
    if left := re.search(r"\$__\w+", expanded):
        raise UnknownMacro(f"{left[0]} is not expanded")
    return expanded


def expand(sql: str, values: Mapping[str, str], time_range: TimeRange) -> str:
    """`sql` as Grafana sends it to PostgreSQL: variables first (in the browser), then macros (in the data source)."""
    return expand_macros(substitute_variables(sql, values), time_range)


@dataclass(frozen=True)
class Query:
    """One SQL query of a dashboard: a panel's target, a variable's or an annotation's."""

    source: str
    fmt: str
    sql: str
    panel: str | None = None


def load_dashboards() -> dict[str, dict]:
    """Every dashboard file by its name."""
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def all_panels(dashboard: dict) -> Iterator[dict]:
    """Every panel, those of collapsed rows too (a collapsed row keeps its panels inside it)."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def variables_of(dashboard: dict) -> list[dict]:
    """The dashboard's template variables, in the order Grafana resolves them."""
    return dashboard.get("templating", {}).get("list", [])


def panel_queries(dashboard: dict) -> list[Query]:
    """The queries of the panels and annotations: what the dashboard draws."""
    queries = [
        Query(f"panel {panel['title']!r} target {target['refId']}", target["format"], target["rawSql"],
              panel["title"])
        for panel in all_panels(dashboard)
        for target in panel.get("targets", [])
    ]
    queries += [
        Query(f"annotation {annotation['name']!r}", "annotation", annotation["target"]["rawSql"])
        for annotation in dashboard.get("annotations", {}).get("list", [])
    ]
    return queries


def all_queries(dashboard: dict) -> list[Query]:
    """Every query of the dashboard: its variables' and what it draws."""
    variables = [Query(f"variable {variable['name']!r}", "variable", variable["query"]["rawSql"])
                 for variable in variables_of(dashboard)]
    return variables + panel_queries(dashboard)


def provisioned_datasources() -> dict[str, dict]:
    """The provisioned data sources by uid."""
    return {source["uid"]: source for source in yaml.safe_load(DATASOURCES.read_text())["datasources"]}


def relations(sql: str) -> set[str]:
    """Tables and views a query reads (`FROM x`, `JOIN x`; subqueries are looked into, not named)."""
    without_extract = re.sub(r"\bextract\s*\(\s*\w+\s+from\b", "extract(", sql, flags=re.I)
    return set(re.findall(r"\b(?:FROM|JOIN)\s+([A-Za-z_]\w*)", without_extract, re.I))


# --- the expander, on its own ---------------------------------------------------------------------------------

SCENARIO_WEEK = TimeRange(
    datetime.combine(scenarios.START, time(), UTC),
    datetime.combine(scenarios.START, time(), UTC) + timedelta(days=scenarios.DAYS),
)


def test_macros_expand_as_the_postgresql_data_source_writes_them():
    assert expand_macros("WHERE $__timeFilter(m.interval_start)", SCENARIO_WEEK) == (
        "WHERE m.interval_start BETWEEN '2026-03-01T00:00:00Z' AND '2026-03-08T00:00:00Z'"
    )
    assert expand_macros("$__timeFrom() < $__timeTo( )", SCENARIO_WEEK) == (
        "'2026-03-01T00:00:00Z' < '2026-03-08T00:00:00Z'"
    )
    assert expand_macros("SELECT $__timeGroupAlias(interval_start, '1d'), 1", SCENARIO_WEEK) == (
        "SELECT floor(extract(epoch from interval_start)/86400)*86400 AS \"time\", 1"
    )
    assert expand_macros("$__timeGroupAlias(t, 5m)", SCENARIO_WEEK) == 'floor(extract(epoch from t)/300)*300 AS "time"'
    fraction = TimeRange(datetime(2026, 3, 1, 0, 0, 0, 250000, UTC), datetime(2026, 3, 1, 1, tzinfo=UTC))
    assert expand_macros("$__timeFrom()", fraction) == "'2026-03-01T00:00:00.25Z'"


def test_single_value_variables_go_in_unquoted_with_their_quotes_doubled():
    values = {"model": "o'brien", "metric": "auc_roc"}
    sql = "model_name = '${model}' AND '$model' = '[[model]]' AND metric = '${metric}'"
    assert substitute_variables(sql, values) == (
        "model_name = 'o''brien' AND 'o''brien' = 'o''brien' AND metric = 'auc_roc'"
    )
    # Macros are the data source's business, not the browser's.
    assert substitute_variables("$__timeFilter(t) AND x = '$model'", values) == "$__timeFilter(t) AND x = 'o''brien'"


@pytest.mark.parametrize(
    ("sql", "error"),
    [
        ("WHERE $__unixEpochFilter(t)", UnknownMacro),
        ("SELECT $__timeGroupAlias(t, '1d', 0)", UnknownMacro),
        ("SELECT $__timeGroupAlias(t, '1M')", UnknownMacro),
        ("GROUP BY $__interval", UnknownMacro),
        ("WHERE model_name IN (${model:csv})", UnknownVariable),
        ("WHERE model_name = '$nothing'", UnknownVariable),
    ],
)
def test_what_the_expander_does_not_know_fails_instead_of_passing_through(sql, error):
    with pytest.raises(error):
        expand(sql, {"model": "credit_risk"}, SCENARIO_WEEK)


# --- the files, statically ------------------------------------------------------------------------------------


def test_provisioning_files_parse_and_hold_no_credential():
    datasources = yaml.safe_load(DATASOURCES.read_text())
    assert datasources["apiVersion"] == 1
    uids = [source["uid"] for source in datasources["datasources"]]
    assert len(uids) == len(set(uids)), uids
    warehouse = provisioned_datasources()[WAREHOUSE_UID]
    assert warehouse["type"] == POSTGRES_PLUGIN
    assert warehouse["jsonData"]["timescaledb"] is False, "expand_macros writes $__timeGroup without TimescaleDB"
    # Where and as whom to connect come from Grafana's environment: no literal credential in the repository.
    for value in (warehouse["url"], warehouse["user"], warehouse["secureJsonData"]["password"],
                  warehouse["jsonData"]["database"], warehouse["jsonData"]["sslmode"]):
        assert re.fullmatch(r"\$\{[A-Z_][A-Z0-9_]*\}", value), f"{value!r} is not one ${{VARIABLE}}"
    prometheus = next(source for source in datasources["datasources"] if source["type"] == "prometheus")
    assert prometheus["url"] == "http://prometheus:9090"

    providers = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")
    # The JSON files are the dashboards' source: a change saved in the UI would silently diverge from them.
    assert provider["allowUiUpdates"] is False


def test_dashboards_are_well_formed_and_refer_to_provisioned_datasources():
    dashboards = load_dashboards()
    assert len(dashboards) >= 5, sorted(dashboards)
    uids = [board["uid"] for board in dashboards.values()]
    assert len(uids) == len(set(uids)), f"dashboard uids repeat: {uids}"
    datasources = provisioned_datasources()

    def assert_resolves(reference: dict, where: str) -> None:
        assert reference["uid"] in datasources, f"{where}: data source {reference['uid']!r} is not provisioned"
        assert reference["type"] == datasources[reference["uid"]]["type"], f"{where}: data source type differs"

    for name, board in dashboards.items():
        assert board["title"] and "modelwatch" in board["tags"], name
        assert board["timezone"] == "utc", f"{name}: the warehouse's intervals are UTC days"
        panel_ids = [panel["id"] for panel in all_panels(board)]
        assert len(panel_ids) == len(set(panel_ids)), f"{name}: panel ids repeat"
        for panel in all_panels(board):
            where = f"{name} panel {panel.get('title')!r}"
            assert panel.get("title"), f"{name}: a panel has no title"
            grid = panel["gridPos"]
            assert all(isinstance(grid[key], int) for key in ("h", "w", "x", "y")), where
            assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= GRID_COLUMNS, where
            if panel["type"] == "row":
                continue
            assert_resolves(panel["datasource"], where)
            refs = [target["refId"] for target in panel["targets"]]
            assert refs and len(refs) == len(set(refs)), f"{where}: targets need distinct refIds"
            for target in panel["targets"]:
                assert_resolves(target["datasource"], where)
                assert target["format"] in {"table", "time_series"}, where
                # Code mode: rawSql is what runs; a builder-mode target would be rebuilt from other fields.
                assert target["rawQuery"] is True and target["editorMode"] == "code", where
        for annotation in board.get("annotations", {}).get("list", []):
            assert_resolves(annotation["datasource"], f"{name} annotation {annotation['name']!r}")
        for variable in variables_of(board):
            where = f"{name} variable {variable['name']!r}"
            assert variable["type"] == "query", where
            assert_resolves(variable["datasource"], where)
            # substitute_variables expands single values only; a multi-value variable would go in untested.
            assert not variable["multi"] and not variable["includeAll"], where
            assert variable["query"]["rawSql"].strip(), where


def test_every_model_dashboard_is_per_model_and_every_query_reads_the_warehouse_schema():
    tables = {table.name for table in schema.metadata.sorted_tables}
    views_read = set()
    for name, board in load_dashboards().items():
        variables = [variable["name"] for variable in variables_of(board)]
        uses_model = any(re.search(r"\$\{?model\b|\[\[model\]\]", query.sql) for query in all_queries(board))
        if uses_model:
            assert variables[:1] == [MODEL_VARIABLE], f"{name}: uses $model, so `model` must be its first variable"
        for query in all_queries(board):
            read = relations(query.sql)
            assert read, f"{name} {query.source}: reads no table"
            unknown = read - tables - set(schema.VIEWS)
            assert not unknown, f"{name} {query.source}: reads {unknown}, neither a warehouse table nor a view"
            views_read |= read & set(schema.VIEWS)
    assert views_read == set(schema.VIEWS), f"views no dashboard reads: {set(schema.VIEWS) - views_read}"


# --- the queries, on a warehouse the scenario week filled -------------------------------------------------------


@pytest.fixture
def filled_warehouse(postgres_database, tmp_path, monkeypatch) -> str:
    """A PostgreSQL warehouse holding the scenario week of both models, as their runs wrote it."""
    for name, value in scenarios.environment(tmp_path, postgres_database, "", "").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setitem(registry._state, "uri", registry._state["uri"])
    # Control limits then judge within the week, so the dashboards' limit series have values.
    config_path = scenarios.write_config(tmp_path / "models.yaml", min_history=CONTROL_LIMIT_HISTORY)
    scenarios.simulate_week(config_path)
    config = load_config(config_path)
    for model in config.models:
        alone = ProjectConfig(staging_root=config.staging_root, models=[model])
        for day in range(1, scenarios.DAYS + 1):
            run_interval(alone, day, postgres_database, run_id=f"scheduled__{scenarios.day(day - 1)}T00:00:00+00:00")
    return postgres_database


def run(connection: psycopg.Connection, sql: str) -> tuple[list[str], list[tuple]]:
    """Column names and rows of `sql`, in a read-only transaction: Grafana's user needs no more than SELECT."""
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return [column.name for column in cursor.description], cursor.fetchall()
    finally:
        connection.rollback()


def drawing_problems(fmt: str, columns: list[str], rows: list[tuple]) -> list[str]:
    """What keeps Grafana from drawing a result in `fmt`, as its SQL data sources read one."""
    if fmt not in {"time_series", "annotation"}:
        return []
    if "time" not in columns:
        return [f"no column named time in {columns}"]
    index = columns.index("time")
    times = [row[index] for row in rows]
    problems = []
    if any(not isinstance(moment, datetime | int | float | Decimal) for moment in times):
        problems.append("time holds a value that is neither a timestamp nor epoch seconds")
    elif fmt == "time_series" and times != sorted(times):
        # Long-to-wide conversion refuses unsorted series.
        problems.append("rows are not ordered by time")
    if fmt == "annotation":
        return problems + ([] if "text" in columns else ["an annotation needs a text column"])
    for position, name in enumerate(columns):
        values = [row[position] for row in rows if row[position] is not None]
        # Every other column becomes a series (converted to float) or, if text, a label of one.
        if position != index and any(isinstance(value, bool) or not isinstance(value, int | float | Decimal | str)
                                     for value in values):
            problems.append(f"column {name!r} is neither a number nor text")
    return problems


def variable_values(connection: psycopg.Connection, board: dict, model: str | None) -> list[dict[str, str]]:
    """Every combination of the dashboard's variable values for `model`, each variable resolved after those before it.

    Raises
    ------
    AssertionError
        `model` is not among the `model` variable's values, or another variable has none.
    """
    combinations: list[dict[str, str]] = [{}]
    for variable in variables_of(board):
        grown = []
        for values in combinations:
            _, rows = run(connection, expand(variable["query"]["rawSql"], values, SCENARIO_WEEK))
            options = [str(row[0]) for row in rows]
            assert options, f"{board['uid']} variable {variable['name']!r} has no value with {values}"
            if variable["name"] == MODEL_VARIABLE:
                assert model in options, f"{board['uid']}: {model} is not a value of `model` ({options})"
                options = [model]
            grown += [{**values, variable["name"]: option} for option in options]
        combinations = grown
    return combinations


@pytest.mark.postgres
def test_every_query_runs_on_a_filled_warehouse_and_the_main_panels_have_rows(filled_warehouse):
    conninfo = make_url(filled_warehouse).set(drivername="postgresql").render_as_string(hide_password=False)
    failures, seen = [], set()
    with psycopg.connect(conninfo) as connection:
        connection.read_only = True
        for name, board in load_dashboards().items():
            per_model = MODEL_VARIABLE in {variable["name"] for variable in variables_of(board)}
            for model in MODELS if per_model else [None]:
                for values in variable_values(connection, board, model):
                    for query in panel_queries(board):
                        where = f"{name} {query.source} with {values}"
                        try:
                            columns, rows = run(connection, expand(query.sql, values, SCENARIO_WEEK))
                        except (psycopg.Error, UnknownMacro, UnknownVariable) as exc:
                            failures.append(f"{where}: {type(exc).__name__}: {exc}")
                            continue
                        failures += [f"{where}: {problem}" for problem in drawing_problems(query.fmt, columns, rows)]
                        seen.add((board["uid"], query.panel))
                        if per_model and not rows and (board["uid"], query.panel, model) not in MAY_BE_EMPTY:
                            failures.append(f"{where}: no rows")
                        if not per_model:
                            shown = {cell for row in rows for cell in row}
                            failures += [f"{where}: no row of {missing}" for missing in sorted(set(MODELS) - shown)]
    assert not failures, "\n".join(failures)
    stale = {(uid, panel) for uid, panel, _ in MAY_BE_EMPTY} - seen
    assert not stale, f"MAY_BE_EMPTY names panels that do not exist: {stale}"

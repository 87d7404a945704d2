"""The example queries of docs/warehouse.md run on both backends and say what they claim."""

from __future__ import annotations

import re

import pytest

from modelwatch import settings
from modelwatch.warehouse import schema
from modelwatch.warehouse.load import read_frame

from .builders import rows_of

DOC = settings.PROJECT_ROOT / "docs" / "warehouse.md"
QUERY = re.compile(r"<!-- query: (\w+) -->\s*```sql\n(.*?)```", re.DOTALL)

EXPECTED = {
    "auc_trend": [
        ("credit_risk", "2026-01-01 00:00:00", 0.85, 0.95),
        ("credit_risk", "2026-01-02 00:00:00", 0.80, 0.70),
        ("credit_risk", "2026-01-03 00:00:00", 0.78, 0.20),
    ],
    "latency_p99_breaches": [("credit_risk", "2026-01-02 00:00:00", 650, 1100)],
    "quarantine_reasons": [
        ("credit_risk", "predictions", "invalid JSON", 5, 2),
        ("credit_risk", "feedback", "missing request_id", 4, 1),
        ("credit_risk", "predictions", "latency_ms: expected a number", 1, 1),
    ],
    "drifting_features": [("credit_risk", "age", 3, 3), ("credit_risk", "income", 1, 3)],
    "label_coverage_maturation": [
        ("2026-01-03 00:00:00", 0.20, 100, "2026-01-04 01:00:00"),
        ("2026-01-02 00:00:00", 0.70, 770, "2026-01-04 01:00:00"),
        ("2026-01-01 00:00:00", 0.95, 950, "2026-01-02 01:00:00"),
    ],
    "critical_failures": [
        (
            "credit_risk",
            "2026-01-03 00:00:00",
            "expect_column_values_to_not_be_null",
            "income",
            40.0,
        )
    ],
    "decision_timeline": [
        ("2026-01-02 00:00:00", "alert", "alerted", "3", "3", "latency_p99_ms 650 above 500"),
        ("2026-01-03 00:00:00", "halt", "halted", "3", "3", "critical data-quality failure"),
    ],
    "open_alerts": [
        ("credit_risk", "threshold:latency_p99_ms", "warning", "2026-01-02 00:00:00", 1,
         "latency_p99_ms 650 above its threshold 500"),
    ],
    "latest_state": [
        ("credit_risk", "2026-01-03 00:00:00", "halted", 1, "halt"),
        ("demand", "2026-01-03 00:00:00", "running", None, None),
    ],
}


def documented_queries() -> dict[str, str]:
    return dict(QUERY.findall(DOC.read_text()))


def test_every_documented_query_has_an_expectation():
    assert sorted(documented_queries()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_documented_query_returns_expected_rows(seeded_engine, name):
    frame = read_frame(seeded_engine, documented_queries()[name])
    assert rows_of(frame) == EXPECTED[name]


def test_every_table_column_and_view_is_documented():
    doc = DOC.read_text()
    for table in schema.metadata.tables.values():
        section = doc.split(f"### `{table.name}`", 1)[1].split("\n### ", 1)[0]
        for column in table.columns:
            assert re.search(rf"^\| {column.name}\b|, {column.name}\b", section, re.M), (
                f"{table.name}.{column.name} is not documented"
            )
    for view in schema.VIEWS:
        assert f"### `{view}`" in doc

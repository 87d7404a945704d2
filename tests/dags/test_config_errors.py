"""A bad models file is one import error naming the model and field, and no DAG is left standing."""

from __future__ import annotations

import pytest
import yaml

from modelwatch import settings


def parse_with(dagbag_for, tmp_path, model_name: str, **overrides):
    """Parse the dags folder against the shipped models file, with one model's fields replaced."""
    raw = yaml.safe_load(settings.SHIPPED_CONFIG.read_text())
    assert len(raw["models"]) == 2
    raw["models"] = [m | overrides if m["name"] == model_name else m for m in raw["models"]]
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(raw))
    return dagbag_for(path)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"start_date": "2026-03-32"}, "start_date"),
        ({"schedule": "0 0 31 * * *"}, "schedule"),
        ({"schedule": "0 0 * * 1-5"}, "schedule"),
    ],
)
def test_one_bad_model_is_one_import_error_naming_model_and_field(dagbag_for, tmp_path, overrides, field):
    bag = parse_with(dagbag_for, tmp_path, "delivery_time", **overrides)
    (message,) = bag.import_errors.values()
    assert f"models[delivery_time].{field}:" in message
    assert "models[credit_risk]" not in message
    # The good model's DAG goes too, loudly: the file's one import error says why.
    assert bag.dag_ids == []

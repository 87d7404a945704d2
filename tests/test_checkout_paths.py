"""A checkout, also a copied one, keeps its code and data in itself."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def paths_of(checkout: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELWATCH_", "AIRFLOW", "PYTHONPATH"))}
    shown = subprocess.run(["make", "-s", "-C", str(checkout), "paths"], env=env, capture_output=True, text=True,
                           timeout=120, check=True).stdout
    return {line[:15].strip(): line[15:].strip() for line in shown.splitlines()}


def test_a_copied_checkout_reads_its_own_code_and_writes_its_own_data_folder(tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(PROJECT, copy, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "data", ".airflow", "__pycache__", ".pytest_cache", ".ruff_cache"))
    # The copy's environment is the original's: its editable install names the original's folder.
    (copy / ".venv").symlink_to(PROJECT / ".venv")

    paths = paths_of(copy)

    assert paths["code"] == str(copy / "include" / "modelwatch")
    assert paths["data folder"] == str(copy / "data")
    assert paths["staging"].startswith(str(copy / "data"))
    assert paths["warehouse"] == f"sqlite:///{copy / 'data' / 'warehouse.db'}"
    assert paths["model registry"] == f"sqlite:///{copy / 'data' / 'mlflow.db'}"

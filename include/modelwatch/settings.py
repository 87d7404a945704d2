"""Where the project keeps its files, resolved from the environment.

Every path here is computed on call, never cached at import, so tests and
workers can point the library elsewhere by setting environment variables.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = PROJECT_ROOT / "include" / "config" / "models.yaml"


def data_dir() -> Path:
    """The project's data folder (`MODELWATCH_DATA_DIR`, default `<project>/data`)."""
    return Path(os.environ.get("MODELWATCH_DATA_DIR", PROJECT_ROOT / "data")).resolve()


def config_path() -> Path:
    """The models file (`MODELWATCH_CONFIG`, default the shipped example)."""
    return Path(os.environ.get("MODELWATCH_CONFIG", SHIPPED_CONFIG)).resolve()


def resolve_root(url: str) -> str:
    """Turn a configured root into an fsspec URL; relative paths live in the data folder."""
    if "://" in url or os.path.isabs(url):
        return url
    return str(data_dir() / url)


def default_warehouse_url() -> str:
    return f"sqlite:///{data_dir() / 'warehouse.db'}"


def default_mlflow_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{data_dir() / 'mlflow.db'}"

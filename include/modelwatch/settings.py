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


def _is_relative(url: str) -> bool:
    return "://" not in url and not os.path.isabs(url)


def leaves_data_dir(url: str) -> bool:
    """Whether a configured root is a relative path whose `..` parts lead out of the data folder.

    Parameters
    ----------
    url : str
        A root as configured: a URL, an absolute path or a path relative to the data folder.

    Returns
    -------
    bool
        True for e.g. ``../elsewhere`` or ``logs/../..``; False for URLs, absolute paths and
        relative paths that stay inside, such as ``logs/../staging``.
    """
    return _is_relative(url) and Path(os.path.normpath(url)).parts[:1] == (os.pardir,)


def resolve_root(url: str) -> str:
    """Turn a configured root into an fsspec URL; relative paths live in the data folder.

    Raises
    ------
    ValueError
        A relative ``url`` leads out of the data folder. The models file is checked for this
        when read; this check guards every other caller.
    """
    if not _is_relative(url):
        return url
    if leaves_data_dir(url):
        raise ValueError(f"root {url!r} leads out of the data folder {data_dir()}")
    return str(data_dir() / url)


def default_warehouse_url() -> str:
    return f"sqlite:///{data_dir() / 'warehouse.db'}"


def default_mlflow_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{data_dir() / 'mlflow.db'}"

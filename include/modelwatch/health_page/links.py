"""Where the page lives, and the Airflow UI's addresses it links to.

Links are absolute paths from the server's root, computed from the request's
ASGI ``root_path``, so that they hold behind an ``[api] base_url`` with a path
prefix as well as on a bare TestClient.
"""

from __future__ import annotations

from urllib.parse import quote

MOUNT_PATH = "/modelwatch/health"
"""Where the plugin mounts the page's app in the API server (Airflow reserves /api/v2, /ui, /auth, ...)."""

UI_ROUTE = "model-health"
"""The UI's own route of the embedded page: ``/plugin/model-health``."""

DAG_PREFIX = "monitor_"


def dag_id(model_name: str) -> str:
    """The id of the DAG that monitors `model_name` (``dags/monitor_models.py`` builds one per model)."""
    return f"{DAG_PREFIX}{model_name}"


def airflow_root(root_path: str, mount_path: str) -> str:
    """The Airflow UI's root path (ending in ``/``) seen from an app mounted at `mount_path`.

    Parameters
    ----------
    root_path : str
        The request's ASGI ``root_path``: the API server's own prefix followed by `mount_path`.
    mount_path : str
        Where the page's app is mounted; empty when it runs on its own.

    Returns
    -------
    str
        ``/`` for an API server at the root of its host, else its prefix, e.g. ``/airflow/``.
    """
    prefix = root_path.removesuffix(mount_path) if mount_path else root_path
    return prefix.rstrip("/") + "/"


def dag_run_path(root: str, model_name: str, run_id: str) -> str:
    """The Airflow 3 UI's page of one run of the model's DAG: ``<root>dags/<dag_id>/runs/<run_id>``.

    The run id is quoted whole (scheduled run ids hold ``:`` and ``+``), as
    `modelwatch.airflow_adapter.run_links` quotes it in notifications.
    """
    return f"{root}dags/{quote(dag_id(model_name))}/runs/{quote(run_id, safe='')}"

"""The model-health page in the Airflow UI: a FastAPI app in the API server and a link in the UI's navigation.

The page (`modelwatch.health_page`) is mounted at ``/modelwatch/health/`` and
shown inside the UI at ``/plugin/model-health``. Airflow does not protect a
plugin's app, so the page asks Airflow's auth manager itself: the viewer is
the user of the UI's sign-in cookie (or of a bearer token, as for the REST
API), a visitor without one is sent to the sign-in page, and a model shows
only to users who may read its DAG. docs/health-page.md has the details.

Loading the plugin imports neither FastAPI nor the page: every Airflow
process loads plugins, and only the API server builds the app, on its first
request.
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.plugins_manager import AirflowPlugin

from modelwatch.health_page.asgi import DeferredApp
from modelwatch.health_page.links import MOUNT_PATH, UI_ROUTE, dag_id

# The UI resolves these against its own base URL: relative, they also hold under a path prefix.
PAGE_HREF = MOUNT_PATH.lstrip("/") + "/"
ICON_HREF = PAGE_HREF + "icon.svg"


class AirflowAccess:
    """The page's `modelwatch.health_page.access.Access`, answered by the API server's auth manager."""

    async def viewer(self, request) -> Any | None:
        """The user Airflow's own API would see: bearer token first, then the UI's ``_token`` cookie."""
        from airflow.api_fastapi.core_api.security import bearer_scheme, get_user
        from fastapi import HTTPException

        try:
            return await get_user(request, None, await bearer_scheme(request))
        except HTTPException:  # no token, an expired or an invalid one: sign in again
            return None

    def may_read(self, viewer: Any, model_name: str) -> bool:
        """Whether the auth manager lets `viewer` read the model's DAG, ``monitor_<model>``."""
        from airflow.api_fastapi.app import get_auth_manager
        from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

        return get_auth_manager().is_authorized_dag(method="GET", details=DagDetails(id=dag_id(model_name)),
                                                    user=viewer)

    def login_url(self, next_url: str) -> str:
        from airflow.api_fastapi.app import get_auth_manager

        return get_auth_manager().get_url_login(next_url=next_url)


def build_health_app():
    """The page's FastAPI app, with the models file and warehouse of this Airflow's environment."""
    from modelwatch.health_page.app import create_app

    return create_app(AirflowAccess(), mount_path=MOUNT_PATH)


class ModelWatchHealthPage(AirflowPlugin):
    name = "modelwatch_health"
    fastapi_apps: ClassVar[list] = [
        {"app": DeferredApp(build_health_app), "url_prefix": MOUNT_PATH, "name": "ModelWatch model health"},
    ]
    external_views: ClassVar[list] = [
        {
            "name": "Health",  # the sidebar shows about seven characters
            "href": PAGE_HREF,
            "url_route": UI_ROUTE,  # embeds the page in the UI instead of leaving it
            "destination": "nav",
            "nav_top_level": True,
            "icon": ICON_HREF,
        },
    ]

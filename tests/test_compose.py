"""Static checks of docker-compose.yaml and the Dockerfile, with no Docker engine needed.

Variables are read with their `${NAME:-default}` defaults, as a fresh checkout
without an .env file would run them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import pytest
import yaml

PROJECT = Path(__file__).resolve().parents[1]
COMPOSE = PROJECT / "docker-compose.yaml"
DOCKERFILE = PROJECT / "Dockerfile"
DOCKERIGNORE = PROJECT / ".dockerignore"

ANCHOR = "x-airflow-common"
REQUIRED_SERVICES = {
    "postgres",
    "warehouse",
    "mlflow",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-init",
}
# Project folders the Airflow containers must see, mounted from the repository.
REPO_MOUNTS = {"dags", "plugins", "include"}
# Bind-mounted folders that exist only at run time (git-ignored, created on `up`).
RUNTIME_MOUNTS = {"data"}
ONE_OFF_SERVICES = {"airflow-init"}

_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")


def interpolate(value):
    """A compose value with every `${NAME:-default}` replaced by its default and `$$` by `$`."""
    if isinstance(value, dict):
        return {key: interpolate(item) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item) for item in value]
    if not isinstance(value, str):
        return value
    parts = value.split("$$")
    return "$".join(_VARIABLE.sub(lambda m: m.group("default") or "", part) for part in parts)


def requirement_pin(name: str) -> str:
    """The `==` version of `name` in requirements.txt."""
    for line in (PROJECT / "requirements.txt").read_text().splitlines():
        match = re.match(rf"^{re.escape(name)}(\[[^\]]*\])?==(?P<version>\S+)", line.strip(), re.I)
        if match:
            return match.group("version")
    raise AssertionError(f"{name} is not pinned with == in requirements.txt")


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def compose(raw) -> dict:
    return interpolate(raw)


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def common_env(compose) -> dict:
    return compose[ANCHOR]["environment"]


@pytest.fixture(scope="module")
def anchor_users() -> set[str]:
    """Services whose mapping merges the `x-airflow-common` anchor node itself."""
    root = yaml.compose(COMPOSE.read_text())
    top = {key.value: value for key, value in root.value}
    anchor = top[ANCHOR]
    users = set()
    for name, node in top["services"].value:
        for key, value in node.value:
            if key.tag == "tag:yaml.org,2002:merge" and value is anchor:
                users.add(name.value)
    return users


def bind_mounts(service: dict) -> dict[str, str]:
    """Container path -> host path of a service's bind mounts (short syntax)."""
    mounts = {}
    for entry in service.get("volumes", []):
        source, target = entry.split(":")[:2]
        if source.startswith((".", "/")):
            mounts[target] = source
    return mounts


def depends_on(service: dict) -> dict[str, str]:
    """Dependency -> condition, from either depends_on form."""
    entries = service.get("depends_on", {})
    if isinstance(entries, list):
        return dict.fromkeys(entries, "service_started")
    return {
        name: (spec or {}).get("condition", "service_started") for name, spec in entries.items()
    }


def container_port(service: dict, default: int) -> int:
    """The container side of a service's first published port, else `default`."""
    for entry in service.get("ports", []):
        return int(str(entry).rsplit(":", 1)[-1].split("/")[0])
    return default


def test_compose_file_parses(raw):
    assert isinstance(raw, dict)
    assert isinstance(raw.get("services"), dict) and raw["services"]
    assert isinstance(raw.get(ANCHOR), dict)


def test_required_services_present(services):
    missing = REQUIRED_SERVICES - services.keys()
    assert not missing, f"docker-compose.yaml lacks services {sorted(missing)}"


def test_every_airflow_service_merges_the_common_anchor(services, anchor_users):
    airflow_services = {name for name in services if name.startswith("airflow-")}
    assert airflow_services - anchor_users == set(), "Airflow services not merging *airflow-common"
    assert anchor_users <= airflow_services


def test_anchor_users_keep_the_common_environment_and_mounts(compose, services, anchor_users):
    common = compose[ANCHOR]
    for name in sorted(anchor_users):
        service = services[name]
        env = service["environment"]
        for key, value in common["environment"].items():
            assert env.get(key) == value, f"{name}: {key} differs from the common environment"
        assert service["volumes"] == common["volumes"], f"{name} overrides the common volumes"
        assert service["image"] == common["image"] and service["build"] == common["build"]


def test_common_environment(common_env):
    assert common_env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert common_env["AIRFLOW__CORE__LOAD_EXAMPLES"].lower() == "false"
    assert common_env["GX_ANALYTICS_ENABLED"] == "False"
    assert common_env["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"
    assert common_env["AIRFLOW__API_AUTH__JWT_SECRET"], "the JWT secret must not be empty"
    # Left out, every container would generate a different key of its own.
    assert "AIRFLOW__CORE__FERNET_KEY" in common_env
    assert common_env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("SimpleAuthManager")
    users = common_env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",")
    assert all(user.count(":") == 1 for user in users), users


def test_metadata_database_is_the_postgres_service(common_env, services):
    url = urlparse(common_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    assert url.scheme.startswith("postgresql")
    assert url.hostname == "postgres"
    postgres = services["postgres"]["environment"]
    assert url.username == postgres["POSTGRES_USER"]
    assert url.password == postgres["POSTGRES_PASSWORD"]
    assert url.path.lstrip("/") == postgres["POSTGRES_DB"]


def test_execution_api_url_names_the_apiserver(common_env, services):
    url = urlparse(common_env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    assert url.hostname in services and services[url.hostname]["command"] == "api-server"
    assert url.port == container_port(services[url.hostname], 8080)
    assert url.path == "/execution/"


def test_warehouse_connection_names_a_postgres_service(common_env, services):
    url = urlparse(common_env["AIRFLOW_CONN_MODELWATCH_WAREHOUSE"])
    assert url.scheme in ("postgres", "postgresql")
    assert url.hostname in services, f"warehouse host {url.hostname!r} is not a compose service"
    assert url.hostname != "postgres", "the warehouse must not share Airflow's metadata database"
    warehouse = services[url.hostname]
    assert warehouse["image"].split(":")[0] == "postgres"
    env = warehouse["environment"]
    assert (url.port or 5432) == 5432
    assert url.username == env["POSTGRES_USER"]
    assert url.password == env["POSTGRES_PASSWORD"]
    assert url.path.lstrip("/") == env["POSTGRES_DB"]


def test_mlflow_tracking_uri_names_the_mlflow_server(common_env, services):
    url = urlparse(common_env["MLFLOW_TRACKING_URI"])
    assert url.scheme == "http"
    assert url.hostname in services
    command = services[url.hostname]["command"]
    assert command[:2] == ["mlflow", "server"]
    port = next(arg.split("=", 1)[1] for arg in command if arg.startswith("--port="))
    assert url.port == int(port)
    allowed = next(arg.split("=", 1)[1] for arg in command if arg.startswith("--allowed-hosts="))
    assert f"{url.hostname}:{url.port}" in allowed.split(","), "MLflow would refuse the Host header"


def test_mlflow_stores_live_on_a_volume(services):
    mlflow = services["mlflow"]
    volumes = [entry.split(":")[1] for entry in mlflow["volumes"]]
    paths = [
        arg.split("=", 1)[1]
        for arg in mlflow["command"]
        if arg.startswith(("--backend-store-uri=", "--artifacts-destination="))
    ]
    assert len(paths) == 2
    for path in paths:
        local = path.removeprefix("sqlite:///")
        assert any(PurePosixPath(local).is_relative_to(v) for v in volumes), path


def test_depends_on_targets_exist_with_the_needed_checks(services):
    for name, service in services.items():
        for target, condition in depends_on(service).items():
            assert target in services, f"{name} depends on undefined service {target}"
            if condition == "service_healthy":
                test = services[target].get("healthcheck", {}).get("test")
                assert test, f"{name} waits for {target} to be healthy, but it has no healthcheck"
            elif condition == "service_completed_successfully":
                assert "restart" not in services[target], f"{target} must run once and exit"
            else:
                assert condition == "service_started", f"{name}: unknown condition {condition}"


def test_long_running_services_have_healthchecks(services):
    for name, service in services.items():
        if name in ONE_OFF_SERVICES:
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert service.get("restart") == "always", f"{name} should restart"


def test_airflow_components_run_their_commands(services):
    commands = {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-triggerer": "triggerer",
    }
    for name, command in commands.items():
        assert services[name]["command"] == command
    assert "/api/v2/version" in str(services["airflow-apiserver"]["healthcheck"]["test"])


def test_init_migrates_and_writes_the_password_file(services, common_env):
    init = services["airflow-init"]
    script = "\n".join(init["command"])
    assert "airflow db migrate" in script
    assert common_env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] in script
    assert init["user"] == "0:0"
    for variable in ("_AIRFLOW_WWW_USER_USERNAME", "_AIRFLOW_WWW_USER_PASSWORD"):
        assert init["environment"][variable], variable


def test_airflow_user_is_configurable(compose):
    assert compose[ANCHOR]["user"] == "50000:0"
    assert "${AIRFLOW_UID:-50000}:0" in COMPOSE.read_text()


def git(*args: str) -> subprocess.CompletedProcess | None:
    """A git command in the project, or None outside a git work tree."""
    if shutil.which("git") is None or not (PROJECT / ".git").exists():
        return None
    return subprocess.run(["git", *args], cwd=PROJECT, capture_output=True, text=True)


def test_repository_folders_are_mounted_and_in_git(compose):
    mounts = bind_mounts(compose[ANCHOR])
    mounted = {PurePosixPath(source).name: target for target, source in mounts.items()}
    for folder in REPO_MOUNTS:
        assert mounted.get(folder) == f"/opt/airflow/{folder}", f"./{folder} is not mounted"
    for source in mounts.values():
        if PurePosixPath(source).name in RUNTIME_MOUNTS:
            continue
        assert (PROJECT / source).is_dir(), f"bind mount source {source} is missing from the repo"
        # git keeps no empty folders: without a tracked file a fresh clone lacks the folder.
        listed = git("ls-files", "--", source)
        if listed is not None:
            assert listed.stdout.strip(), f"{source} has no file in git, so a clone has no {source}"


def test_runtime_folders_are_git_ignored(compose):
    for source in bind_mounts(compose[ANCHOR]).values():
        if PurePosixPath(source).name not in RUNTIME_MOUNTS:
            continue
        ignored = git("check-ignore", "-q", "--no-index", f"{source}/")
        if ignored is None:
            pytest.skip("not a git work tree")
        assert ignored.returncode == 0, f"{source} is written by the containers but not git-ignored"


def test_data_folder_is_shared_and_is_modelwatch_data_dir(compose, common_env):
    mounts = bind_mounts(compose[ANCHOR])
    assert common_env["MODELWATCH_DATA_DIR"] in mounts
    assert PurePosixPath(mounts[common_env["MODELWATCH_DATA_DIR"]]).name in RUNTIME_MOUNTS


def test_modelwatch_config_is_a_repo_file_in_a_mounted_folder(compose, common_env):
    config = PurePosixPath(common_env["MODELWATCH_CONFIG"])
    mounts = bind_mounts(compose[ANCHOR])
    target = next((t for t in mounts if config.is_relative_to(t)), None)
    assert target is not None, f"{config} is not inside a bind-mounted folder"
    host = PROJECT / mounts[target] / config.relative_to(target)
    assert host.is_file(), f"MODELWATCH_CONFIG maps to {host}, which does not exist"


def test_named_volumes_are_declared_and_used(compose):
    declared = set(compose.get("volumes") or {})
    used = set()
    for service in [compose[ANCHOR], *compose["services"].values()]:
        for entry in service.get("volumes", []):
            source = entry.split(":")[0]
            if not source.startswith((".", "/")):
                used.add(source)
    assert used - declared == set(), "named volumes used but not declared"
    assert declared - used == set(), "named volumes declared but never mounted"


def test_images_are_pinned(services):
    for name, service in services.items():
        image = service.get("image")
        assert image or service.get("build"), f"{name} has neither image nor build"
        if image is None:
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: image {image} has no tag"
        assert tag != "latest", f"{name}: image {image} uses the latest tag"
    for line in DOCKERFILE.read_text().splitlines():
        if line.upper().startswith("FROM "):
            image = line.split()[1]
            assert ":" in image and not image.endswith(":latest"), image


def test_host_ports_are_unique(services):
    published = []
    for name, service in services.items():
        for entry in service.get("ports", []):
            parts = str(entry).split(":")
            assert len(parts) >= 2, f"{name}: port {entry} is published on a random host port"
            published.append(parts[-2])
    assert len(published) == len(set(published)), f"host ports published twice: {published}"


def test_dockerfile_base_matches_the_airflow_pin():
    lines = DOCKERFILE.read_text().splitlines()
    froms = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert len(froms) == 1
    repository, _, tag = froms[0].partition(":")
    assert repository == "apache/airflow"
    version, _, python = tag.partition("-python")
    assert version == requirement_pin("apache-airflow")
    makefile = (PROJECT / "Makefile").read_text()
    makefile_python = re.search(r"^PYTHON \?= python(\S+)", makefile, re.M)
    assert makefile_python and python == makefile_python.group(1), "Python differs from Makefile"


def test_dockerfile_installs_requirements_and_package_as_airflow():
    text = DOCKERFILE.read_text()
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] == "airflow", "the image must end as the airflow user"
    install = re.search(r"^RUN pip install .*-r \S*requirements\.txt", text, re.M)
    assert install and '"apache-airflow==${AIRFLOW_VERSION}"' in install.group(0)
    assert re.search(r"^RUN pip install .*--no-deps", text, re.M)


def test_dockerfile_copies_exist_and_are_not_ignored():
    ignored = [
        line.strip().removeprefix("**/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for line in DOCKERFILE.read_text().splitlines():
        if not line.startswith("COPY "):
            continue
        sources = [arg for arg in line.split()[1:-1] if not arg.startswith("--")]
        for source in sources:
            assert (PROJECT / source).exists(), f"Dockerfile copies missing {source}"
            assert source not in ignored, f".dockerignore drops {source}, which Dockerfile copies"


def test_mlflow_image_matches_the_mlflow_pin(services):
    repository, _, tag = services["mlflow"]["image"].rpartition(":")
    assert repository == "ghcr.io/mlflow/mlflow"
    assert tag == f"v{requirement_pin('mlflow')}"


def _compose_cli() -> list[str] | None:
    """`docker compose`, else the standalone `docker-compose`, whichever answers offline."""
    candidates = []
    if docker := shutil.which("docker"):
        candidates.append([docker, "compose"])
    if standalone := shutil.which("docker-compose"):
        candidates.append([standalone])
    for cli in candidates:
        if subprocess.run([*cli, "version"], capture_output=True, timeout=30).returncode == 0:
            return cli
    return None


def test_docker_compose_config_accepts_the_file():
    cli = _compose_cli()
    if cli is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    result = subprocess.run(
        [*cli, "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr

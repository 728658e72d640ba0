"""docker-compose.yml: validated by Debian's `docker-compose config`, checked against the project.

No Docker engine runs here, so these tests check what can go wrong without one: the file must
validate, every command a service runs must exist in the project, and the environment must
match the settings class both ways (no unknown TRIAGE_ variable, no setting left unreachable).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from schemas.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
PROJECT_SERVICES = (
    "migrate",
    "worker",
    "worker-urgent",
    "receiver",
    "orders",
    "metrics",
    "web",
    "cli",
)
TRIAGE_VARIABLE = re.compile(r"\bTRIAGE_[A-Z0-9_]+")


def compose_binary() -> str:
    found = shutil.which("docker-compose") or (
        "/usr/bin/docker-compose" if Path("/usr/bin/docker-compose").exists() else None
    )
    if found:
        return found
    if os.environ.get("TRIAGE_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail("docker-compose is required (TRIAGE_TEST_REQUIRE_SERVICES=1) but missing")
    pytest.skip("docker-compose not installed (apt-get install docker-compose)")


def run_config(env_file: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` in a clean environment (no inherited passwords)."""
    return subprocess.run(
        [compose_binary(), "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config", *extra],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def yaml_to_data(text: str) -> dict:
    """Parse compose's YAML output with the interpreter that runs docker-compose v1 (it has
    PyYAML); the project itself does not depend on PyYAML."""
    script = Path(compose_binary())
    head = script.read_bytes()[:200].split(b"\n", 1)[0].decode(errors="replace")
    if not head.startswith("#!") or "python" not in head:
        pytest.fail(f"{script} is not the Python docker-compose v1; cannot parse its output")
    interpreter = head[2:].strip().split()[0]
    converted = subprocess.run(
        [
            interpreter,
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ],
        input=text,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(converted.stdout)


@pytest.fixture(scope="module")
def compose() -> dict:
    """The resolved compose configuration, with .env.example as the .env file."""
    result = run_config(ENV_EXAMPLE)
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    return yaml_to_data(result.stdout)


def command_of(service: dict) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else list(command)


def test_services_are_the_documented_ones(compose: dict) -> None:
    assert set(compose["services"]) == {
        "redis",
        "postgres",
        "migrate",
        "worker",
        "worker-urgent",
        "worker-deliveries",
        "receiver",
        "orders",
        "metrics",
        "web",
        "cli",
        "flower",
    }


def test_missing_password_is_refused_with_its_name(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("POSTGRES_PASSWORD=x\n")
    result = run_config(env_file)
    assert result.returncode != 0
    assert "REDIS_PASSWORD" in result.stderr


def test_redis_is_password_protected_durable_and_never_evicts(compose: dict) -> None:
    redis = compose["services"]["redis"]
    command = " ".join(command_of(redis))
    assert "--requirepass" in command
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert "change-me-redis" not in command  # the password comes from the environment
    assert redis["volumes"] and redis["healthcheck"]["test"]


def test_postgres_keeps_its_data_in_a_volume(compose: dict) -> None:
    postgres = compose["services"]["postgres"]
    assert any(volume.endswith("/var/lib/postgresql/data:rw") for volume in postgres["volumes"])
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_workers_serve_their_queues_and_wait_for_migrations(compose: dict) -> None:
    services = compose["services"]
    assert command_of(services["migrate"]) == ["triage", "db", "upgrade"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    queues = {}
    for name in ("worker", "worker-urgent"):
        service = services[name]
        command = command_of(service)
        queues[name] = command[command.index("-Q") + 1]
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert service["healthcheck"]["test"]
        assert "container_name" not in service  # `--scale worker=N` needs generated names
        assert {"/models"} <= {volume.split(":")[1] for volume in service["volumes"]}
    assert queues == {"worker": "stat,scans", "worker-urgent": "urgent"}


def test_every_command_exists_in_the_project(
    compose: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer.main
    from celery.bin.celery import celery as celery_cli

    from triage.cli import app

    # reading worker.app's configuration resolves the broker URL: name one, so that no
    # embedded Redis is started for this test (nothing connects to it)
    monkeypatch.setenv("TRIAGE_REDIS_URL", "redis://127.0.0.1:9/0")
    get_settings.cache_clear()
    triage_cli = typer.main.get_command(app)
    for name in PROJECT_SERVICES:
        service = compose["services"][name]
        commands = [command_of(service)]
        healthcheck = service.get("healthcheck", {}).get("test", [])
        if healthcheck[:1] == ["CMD-SHELL"]:
            commands.append(shlex.split(healthcheck[1]))
        for command in commands:
            if command[0] == "triage":
                assert_triage_command(triage_cli, command[1:], name)
            elif command[0] == "celery":
                assert_celery_command(celery_cli, command[1:], name)
            else:
                pytest.fail(f"service {name} runs {command[0]!r}, not a project command")


def assert_triage_command(group, words: list[str], service: str) -> None:  # noqa: ANN001
    command = group
    for word in words:
        if word.startswith("-"):
            break
        subcommands = getattr(command, "commands", None)
        assert subcommands is not None and word in subcommands, (
            f"service {service}: `triage {' '.join(words)}`: no command {word!r}"
        )
        command = subcommands[word]
    if "--help" not in words:
        assert not hasattr(command, "commands"), f"service {service}: `triage {words}` is a group"


def assert_celery_command(celery_cli, words: list[str], service: str) -> None:  # noqa: ANN001
    from celery import Celery
    from celery.app.utils import find_app

    assert words[:2] == ["-A", "worker"], f"service {service}: celery must load `-A worker`"
    subcommand = words[2]
    assert subcommand in celery_cli.commands, f"service {service}: no `celery {subcommand}`"
    application = find_app("worker")  # what `celery -A worker` does
    assert isinstance(application, Celery), "`celery -A worker` must find a Celery app"
    if "-Q" in words:
        declared = {queue.name for queue in application.conf.task_queues or ()}
        for queue in words[words.index("-Q") + 1].split(","):
            assert queue in declared, f"service {service}: queue {queue!r} not in worker.app"


def triage_variables_in_files() -> set[str]:
    found: set[str] = set()
    for path in (COMPOSE_FILE, ENV_EXAMPLE, DOCKERFILE):
        found |= set(TRIAGE_VARIABLE.findall(path.read_text()))
    return found


def test_triage_variables_are_settings_fields_both_ways(compose: dict) -> None:
    fields = {f"TRIAGE_{name.upper()}" for name in Settings.model_fields}
    unknown = triage_variables_in_files() - fields
    assert not unknown, f"not fields of schemas.settings.Settings: {sorted(unknown)}"
    for name in PROJECT_SERVICES:
        environment = set(compose["services"][name]["environment"])
        assert fields <= environment, f"{name} cannot be given {sorted(fields - environment)}"


STRONG_ENV = (
    "POSTGRES_PASSWORD=4f9c2d7e8a1b3c5d6e7f8091a2b3c4d5\n"
    "REDIS_PASSWORD=9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b\n"
    "FLOWER_USER=ops\nFLOWER_PASSWORD=0a1b2c3d4e5f60718293a4b5c6d7e8f9\n"
    "WEB_SECRET_KEY=5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e\n"
)


def apply_environment(service: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in service["environment"].items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, str(value))


def test_compose_environment_is_valid_production_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / "env"
    env_file.write_text(STRONG_ENV)
    result = run_config(env_file)
    assert result.returncode == 0, result.stderr
    services = yaml_to_data(result.stdout)["services"]
    for name in PROJECT_SERVICES:
        apply_environment(services[name], monkeypatch)
        settings = Settings()
        assert settings.environment == "production"
        assert settings.database_url.startswith("postgresql+psycopg://triage:")
        assert settings.redis_url.startswith("redis://:")
        assert str(settings.resolved_model_dir) == "/models"
        shown = repr(settings) + str(settings) + settings.model_dump_json()
        assert "4f9c2d7e" not in shown and "9e8d7c6b" not in shown


def test_the_web_page_is_published_on_loopback_only_and_refuses_the_placeholder_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = run_config(ENV_EXAMPLE)
    assert result.returncode == 0, result.stderr
    web = yaml_to_data(result.stdout)["services"]["web"]
    assert [
        str(port["host_ip"]) if isinstance(port, dict) else port.split(":")[0]
        for port in web["ports"]
    ] == ["127.0.0.1"]
    assert command_of(web)[:2] == ["triage", "web"]
    apply_environment(web, monkeypatch)
    with pytest.raises(ValueError, match="TRIAGE_WEB_SECRET_KEY") as refused:
        Settings()
    assert "change-me" not in str(refused.value)


def test_the_env_example_placeholders_are_refused_in_production(
    compose: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply_environment(compose["services"]["worker"], monkeypatch)
    with pytest.raises(ValueError, match="placeholder") as refused:
        Settings()
    assert "change-me" not in str(refused.value)


def test_every_container_is_unprivileged_and_limited(compose: dict) -> None:
    for name, service in compose["services"].items():
        assert "no-new-privileges:true" in service.get("security_opt", []), name
        assert service.get("cap_drop") == ["ALL"], name
        assert service.get("mem_limit") and service.get("pids_limit"), name
        assert service.get("read_only") is True, name
        assert "/tmp" in service.get("tmpfs", []), name
        assert not service.get("privileged"), name
    services = compose["services"]
    assert set(services["postgres"]["cap_add"]) <= {
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "SETGID",
        "SETUID",
    }
    assert "/var/run/postgresql" in services["postgres"]["tmpfs"]
    assert services["redis"]["user"] == "redis"
    assert all("cap_add" not in services[name] for name in PROJECT_SERVICES)
    redis_command = " ".join(command_of(services["redis"]))
    assert "--maxmemory 768mb" in redis_command and services["redis"]["mem_limit"] == "1g"


def flower_script(compose: dict) -> str:
    command = command_of(compose["services"]["flower"])
    assert command[:2] == ["sh", "-c"]
    return command[2].replace("$$", "$")  # compose turns $$ into $ when it runs the command


@pytest.mark.parametrize(
    ("user", "password", "starts"),
    [
        ("ops", "0a1b2c3d4e5f60718293a4b5c6d7e8f9", True),
        ("ops", "change-me-flower-and-more-chars", False),
        ("ops", "short", False),
        ("", "0a1b2c3d4e5f60718293a4b5c6d7e8f9", False),
    ],
)
def test_flower_always_asks_for_a_password(
    compose: dict, tmp_path: Path, user: str, password: str, starts: bool
) -> None:
    flower = compose["services"]["flower"]
    assert set(flower["environment"]) >= {"FLOWER_USER", "FLOWER_PASSWORD"}
    assert [str(port).split(":")[0] for port in flower["ports"]] == ["127.0.0.1"]
    fake = tmp_path / "celery"
    fake.write_text('#!/bin/sh\necho "celery $*"\necho "auth=$FLOWER_BASIC_AUTH"\n')
    fake.chmod(0o755)
    ran = subprocess.run(
        ["sh", "-c", flower_script(compose)],
        env={"PATH": f"{tmp_path}:/usr/bin:/bin", "FLOWER_USER": user, "FLOWER_PASSWORD": password},
        capture_output=True,
        text=True,
        timeout=30,
    )
    if starts:
        assert ran.returncode == 0
        # the password is in Flower's environment, not on its command line (`ps` shows that)
        assert ran.stdout.splitlines() == ["celery flower", f"auth={user}:{password}"]
    else:
        assert ran.returncode == 1 and "FLOWER_PASSWORD" in ran.stderr and not ran.stdout


def test_dockerfile_copies_every_package_and_runs_unprivileged() -> None:
    text = DOCKERFILE.read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
    for pattern in include:
        package = pattern.rstrip("*")
        assert re.search(rf"^COPY {package} \./{package}$", text, re.M), f"{package} not copied"
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")


def test_receiver_listens_on_the_published_port_and_is_echoed(compose: dict) -> None:
    receiver = compose["services"]["receiver"]
    command = command_of(receiver)
    assert command[:2] == ["triage", "receive"]
    port = command[command.index("--port") + 1]
    assert [str(mapping["target"]) for mapping in receiver["ports"]] == [port]
    assert f"triage echo --port {port}" in receiver["healthcheck"]["test"][1]
    assert receiver["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_orders_listens_on_the_published_port_and_is_checked(compose: dict) -> None:
    orders = compose["services"]["orders"]
    command = command_of(orders)
    assert command[:2] == ["triage", "orders"]
    port = command[command.index("--port") + 1]
    assert [str(mapping["target"]) for mapping in orders["ports"]] == [port]
    assert f"triage orders --check --port {port}" in orders["healthcheck"]["test"][1]
    assert orders["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_metrics_is_served_on_localhost_only_without_volumes(compose: dict) -> None:
    metrics = compose["services"]["metrics"]
    command = command_of(metrics)
    assert command[:2] == ["triage", "metrics"]
    port = command[command.index("--port") + 1]
    assert [str(mapping).split(":")[0] for mapping in metrics["ports"]] == ["127.0.0.1"]
    assert [str(mapping).split(":")[2].split("/")[0] for mapping in metrics["ports"]] == [port]
    assert not metrics.get("volumes")  # reads Redis and PostgreSQL only
    assert "profiles" not in metrics  # up with the rest: Prometheus can always scrape it

"""compose.yaml: PostgreSQL, one migration, two bot replicas in webhook mode behind a proxy.

``docker compose config`` is not installable from a package registry here, so this checks
the file against the parts of the Compose specification it uses and against the bot's
own settings: every variable a replica gets is one the bot reads, and the values make a
working multi-replica deployment.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from bot.config import Settings
from tests.conftest import REPO_ROOT

COMPOSE = REPO_ROOT / "compose.yaml"
# Top-level and service keys of the Compose specification this file may use.
TOP_LEVEL_KEYS = {"name", "services", "volumes", "networks", "configs", "secrets"}
SERVICE_KEYS = {
    "build",
    "image",
    "command",
    "environment",
    "depends_on",
    "healthcheck",
    "restart",
    "stop_grace_period",
    "ports",
    "volumes",
}
DEPENDENCY_CONDITIONS = {
    "service_started",
    "service_healthy",
    "service_completed_successfully",
}
SETTINGS = {name.upper() for name in Settings.model_fields}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def bot_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if "WEBHOOK_URL" in service.get("environment", {})
    }


def test_only_known_keys_and_valid_references(compose: dict[str, Any]) -> None:
    """Keys the specification defines; depends_on, volumes name things that exist."""
    # "x-" keys are the specification's extensions (here the replicas' shared block).
    assert {key for key in compose if not key.startswith("x-")} <= TOP_LEVEL_KEYS
    services = compose["services"]
    named_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        assert re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name), name
        assert set(service) <= SERVICE_KEYS, (name, set(service) - SERVICE_KEYS)
        assert "image" in service or "build" in service, name
        for dependency, condition in (service.get("depends_on") or {}).items():
            assert dependency in services, (name, dependency)
            assert condition["condition"] in DEPENDENCY_CONDITIONS, name
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert source.startswith((".", "/")) or source in named_volumes, (name, volume)
        environment = service.get("environment", {})
        assert isinstance(environment, dict), name
        assert all(isinstance(value, str) for value in environment.values()), name
        healthcheck = service.get("healthcheck")
        if healthcheck is not None:
            assert healthcheck["test"][0] in ("CMD", "CMD-SHELL"), name


def test_two_bot_replicas_in_webhook_mode_on_postgresql(compose: dict[str, Any]) -> None:
    """Two replicas, each reading only real settings, on PostgreSQL, in webhook mode,
    healthy from /readyz, started after the one migration has finished."""
    bots = bot_services(compose)
    assert len(bots) == 2
    for name, service in bots.items():
        environment = service["environment"]
        assert set(environment) <= SETTINGS, (name, set(environment) - SETTINGS)
        assert environment["DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert "@postgres:5432/" in environment["DATABASE_URL"]
        assert environment["WEBHOOK_LISTEN"] == environment["HEALTH_LISTEN"] == "0.0.0.0"
        assert environment["WEBHOOK_SECRET"].startswith("${WEBHOOK_SECRET")
        assert environment["MIGRATE_ON_START"] == "false"
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        # The probe reads HEALTH_PORT itself (tests/unit/test_healthcheck.py).
        assert service["healthcheck"]["test"] == ["CMD", "python", "-m", "bot.healthcheck"]
        assert "HEALTH_PORT" in environment


def test_migrations_run_once_before_the_replicas(compose: dict[str, Any]) -> None:
    services = compose["services"]
    migrate = services["migrate"]
    assert migrate["command"] == ["python", "-m", "bot", "migrate"]
    assert migrate["restart"] == "no"
    assert set(migrate["environment"]) == {"DATABASE_URL"}
    assert (
        migrate["environment"]["DATABASE_URL"]
        == (next(iter(bot_services(compose).values()))["environment"]["DATABASE_URL"])
    )
    assert services["postgres"]["image"].startswith("postgres:")
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_the_proxy_shares_updates_between_both_replicas(compose: dict[str, Any]) -> None:
    proxy = compose["services"]["proxy"]
    upstreams = [arg for arg in proxy["command"] if arg.endswith(":8443")]
    bots = bot_services(compose)
    assert sorted(upstreams) == sorted(f"{name}:8443" for name in bots)
    for name, service in bots.items():
        assert service["environment"]["WEBHOOK_PORT"] == "8443", name


def test_a_stopping_replica_has_time_to_finish_the_photos_it_is_screening(
    compose: dict[str, Any],
) -> None:
    """Docker's default 10 s could cut off a slow photo (up to SCREENING_TIME_BUDGET_S)."""
    budget = Settings.model_fields["screening_time_budget_s"].default
    for name, service in bot_services(compose).items():
        grace = str(service["stop_grace_period"])
        assert grace.endswith("s") and float(grace[:-1]) > budget, name


def test_every_image_is_a_fixed_release(compose: dict[str, Any]) -> None:
    """No floating tag (postgres:15, caddy:2, latest): a redeploy runs what was tested."""
    services = compose["services"].values()
    images = [service["image"] for service in services if "build" not in service]
    from_lines = [
        line.split()[1]
        for line in (REPO_ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("FROM ")
    ]
    assert images and from_lines
    for image in [*images, *from_lines]:
        tag = image.split("@", 1)[0].rsplit(":", 1)[-1]
        # major.minor.patch for the application images, major.minor for PostgreSQL
        # (its minor releases are its patch releases).
        assert re.match(r"[0-9]+\.[0-9]+(\.[0-9]+)?(-[a-z0-9.-]+)?$", tag), image

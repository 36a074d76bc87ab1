"""deploy/: the compose file starts every hilapp process through hilapp/processes.py, each gpu
worker with exactly one GPU reserved, and no doc or deploy file spells out a command line of its
own. Docker is not run here; the file is read as compose reads it (YAML with merge keys)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from hilapp.processes import PROCESS_NAMES

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
PREFIX = ["python", "-m", "hilapp.processes"]


def app_services() -> dict[str, dict[str, Any]]:
    """The services built from hilapp's image (the others are PostgreSQL, Redis, the store)."""
    return {
        name: service
        for name, service in SERVICES.items()
        if service.get("build", {}).get("dockerfile") == "deploy/Dockerfile"
    }


def process_of(service: dict[str, Any]) -> str:
    command = service["command"]
    assert command[:3] == PREFIX and len(command) == 4, command
    return str(command[3])


def reserved_devices(service: dict[str, Any]) -> list[dict[str, Any]]:
    resources = service.get("deploy", {}).get("resources", {})
    return list(resources.get("reservations", {}).get("devices", []))


def test_every_app_service_runs_a_named_process_and_every_process_has_one() -> None:
    apps = app_services()
    assert apps, "no service is built from deploy/Dockerfile"
    names = {name: process_of(service) for name, service in apps.items()}
    assert set(names.values()) <= set(PROCESS_NAMES), names
    assert set(names.values()) == set(PROCESS_NAMES), "a process has no service"
    assert list(names.values()).count("beat") == 1  # two beats would send every tick twice
    for service in apps.values():
        assert service["env_file"] == "production.env"


def test_each_gpu_worker_reserves_exactly_its_own_device() -> None:
    gpu = {n: s for n, s in app_services().items() if process_of(s) == "worker-gpu"}
    assert len(gpu) >= 2, "show at least two devices"
    seen: list[str] = []
    for name, service in gpu.items():
        (device,) = reserved_devices(service)
        assert device["driver"] == "nvidia" and "gpu" in device["capabilities"], name
        assert "count" not in device, name  # a count would reserve any GPU, not this one
        (device_id,) = device["device_ids"]
        env = service["environment"]
        # The container sees only the reserved GPU, as its device 0; the node name carries the
        # host's device number.
        assert env["CUDA_VISIBLE_DEVICES"] == "0", name
        assert env["HILAPP_GPU_DEVICE"] == device_id, name
        assert service["build"]["args"]["EXTRAS"] == "s3,gpu", name
        seen.append(device_id)
    assert len(seen) == len(set(seen)), f"two gpu workers share a device: {seen}"
    others = [n for n, s in SERVICES.items() if n not in gpu and reserved_devices(s)]
    assert others == [], "only gpu workers reserve devices"


def test_start_order_release_before_the_processes_and_servers_healthy() -> None:
    for name, service in app_services().items():
        depends = service["depends_on"]
        for dependency, how in depends.items():
            assert dependency in SERVICES, (name, dependency)
            if how["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], dependency
        if process_of(service) == "release":
            assert depends["postgres"]["condition"] == "service_healthy"
            assert service["restart"] == "no"
        else:
            assert depends["release"]["condition"] == "service_completed_successfully", name
    assert "healthcheck" in SERVICES["web"]


def production_env() -> dict[str, str]:
    lines = (DEPLOY / "production.env.example").read_text().splitlines()
    pairs = (line.partition("=") for line in lines if line.strip() and not line.startswith("#"))
    return {key.strip(): value.strip() for key, _, value in pairs}


def test_the_production_environment_names_the_compose_services() -> None:
    env = production_env()
    for variable in ("DATABASE_URL", "CELERY_BROKER_URL", "AWS_S3_ENDPOINT_URL"):
        host = urlsplit(env[variable]).hostname
        assert host in SERVICES, f"{variable} points at {host!r}, not a compose service"
    database = urlsplit(env["DATABASE_URL"])
    postgres = SERVICES["postgres"]["environment"]
    assert (database.username, database.password, database.path.lstrip("/")) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
        postgres["POSTGRES_DB"],
    )
    assert env["HILAPP_WEB_BIND"] == "0.0.0.0:8000" and "8000" in SERVICES["web"]["expose"]


def test_the_image_installs_the_extras_the_compose_file_asks_for() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "\nFROM python:3.11-slim\n" in dockerfile
    assert "\nARG EXTRAS=s3\n" in dockerfile
    assert 'pip install -e ".[${EXTRAS}]"' in dockerfile
    assert '\nCMD ["python", "-m", "hilapp.processes", "web"]' in dockerfile


# A process started any other way than through hilapp/processes.py.
SECOND_COPIES = re.compile(
    r"celery\s+(-A|--app)[ =]?\s*hilapp\s+(worker|beat)"
    r"|gunicorn\s+hilapp\.wsgi"
    r"|manage\.py\s+runserver"
)


def text_files() -> list[Path]:
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    return files + [p for p in DEPLOY.iterdir() if p.is_file()]


@pytest.mark.parametrize("path", text_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_doc_or_deploy_file_spells_out_a_command_line(path: Path) -> None:
    text = path.read_text()
    assert not SECOND_COPIES.search(text), SECOND_COPIES.search(text)
    # NAME (upper case) is the placeholder in prose; a real name is lower case.
    for name in re.findall(r"python -m hilapp\.processes (?:--print )?([a-z][\w-]*)", text):
        assert name in PROCESS_NAMES, f"{path.name} names an unknown process {name!r}"


def test_the_deploy_guide_starts_every_process_through_processes() -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text()
    for name in PROCESS_NAMES:
        assert f"python -m hilapp.processes {name}" in guide, name

"""docker-compose.yml and the Dockerfile agree with the settings and the Celery queues (no Docker engine here)."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from django.conf import settings

REPO = Path(__file__).resolve().parents[2]
APP_SERVICES = ("migrate", "web", "worker-default", "worker-gpu", "dicom")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def settings_variables() -> set[str]:
    source = "".join(path.read_text() for path in (REPO / "webapp" / "settings").glob("*.py"))
    read_by_dj_database_url = {"DATABASE_URL"}
    return set(re.findall(r'(?:os\.environ\.get|env_bool)\("([A-Z0-9_]+)"', source)) | read_by_dj_database_url


def command_of(service: dict) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else command


def queues_of(service: dict) -> set[str]:
    command = command_of(service)
    return set(command[command.index("-Q") + 1].split(",")) if "-Q" in command else set()


def test_services_and_images(compose):
    services = compose["services"]
    assert set(services) == {"db", "redis", *APP_SERVICES}
    assert services["db"]["image"].startswith("postgres:16") and services["redis"]["image"].startswith("redis:")
    for name in APP_SERVICES:
        assert services[name]["build"] == "." and services[name]["image"] == services["web"]["image"]


def test_environment_matches_settings(compose):
    known = settings_variables()
    db_env = compose["services"]["db"]["environment"]
    for name in APP_SERVICES:
        env = compose["services"][name]["environment"]
        assert set(env) <= known, f"{name} sets variables the settings never read: {set(env) - known}"
        assert {"DATABASE_URL", "CELERY_BROKER_URL", "LUNGSCOPE_STORAGE_DIR", "DJANGO_SECRET_KEY"} <= set(env)
        assert env["DJANGO_DEBUG"] == "0"
        assert re.fullmatch(rf"postgres://{db_env['POSTGRES_USER']}:.+@db:5432/{db_env['POSTGRES_DB']}",
                            env["DATABASE_URL"])
        assert env["CELERY_BROKER_URL"].startswith("redis://redis:6379/")
        assert f"storage:{env['LUNGSCOPE_STORAGE_DIR']}" in compose["services"][name]["volumes"]


def test_workers_cover_every_queue_and_route(compose):
    services = compose["services"]
    declared = {queue.name for queue in settings.CELERY_TASK_QUEUES}
    served = queues_of(services["worker-default"]) | queues_of(services["worker-gpu"])
    assert queues_of(services["worker-default"]) == {"default"} and queues_of(services["worker-gpu"]) == {"gpu"}
    assert served == declared and settings.CELERY_TASK_DEFAULT_QUEUE in served
    assert {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()} <= served
    for name in ("worker-default", "worker-gpu"):
        assert command_of(services[name])[:4] == ["celery", "-A", "webapp", "worker"]


def test_gpu_worker_reserves_an_nvidia_device(compose):
    devices = compose["services"]["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]


def test_health_checks_volumes_and_start_order(compose):
    services = compose["services"]
    for name in ("db", "redis", "web", "worker-default", "worker-gpu", "dicom"):
        assert services[name]["healthcheck"]["test"], name
    assert "pgdata:/var/lib/postgresql/data" in services["db"]["volumes"]
    assert {"pgdata", "storage"} <= set(compose["volumes"])
    for name in ("web", "worker-default", "worker-gpu", "dicom"):
        depends = services[name]["depends_on"]
        assert depends["db"]["condition"] == depends["redis"]["condition"] == "service_healthy"
        assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert command_of(services["migrate"]) == ["python", "manage.py", "migrate", "--noinput"]
    web = command_of(services["web"])
    assert web[:2] == ["gunicorn", "webapp.wsgi"] and "0.0.0.0:8000" in web
    assert any(port.endswith(":8000") for port in services["web"]["ports"])


def test_dicom_listener_service(compose):
    dicom = compose["services"]["dicom"]
    command = command_of(dicom)
    assert command[:3] == ["python", "manage.py", "dicom_listener"]
    port = command[command.index("--port") + 1]
    assert any(mapping.endswith(f":{port}") for mapping in dicom["ports"])
    assert f"EXPOSE 8000 {port}" in (REPO / "Dockerfile").read_text()


def test_dockerfile_builds_the_app_the_compose_file_runs():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "pip install -r requirements.txt" in dockerfile and "npm run build" in dockerfile
    assert "collectstatic" in dockerfile and "LUNGSCOPE_STORAGE_DIR=/data/storage" in dockerfile
    assert "DJANGO_SETTINGS_MODULE=webapp.settings.production" in dockerfile  # for every service of the image
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", "var", "frontend/node_modules"} <= set(ignored)


def test_image_installs_the_runtime_set_only():
    """The image gets requirements.txt; test, benchmark and lint tools are in requirements-dev.txt, which the
    Makefile's venv (make test / make demo) installs on top of it."""
    runtime = (REPO / "requirements.txt").read_text().lower()
    dev = (REPO / "requirements-dev.txt").read_text().splitlines()
    for tool in ("pytest", "playwright", "schemathesis", "locust", "hypothesis", "ruff"):
        assert f"\n{tool}==" not in runtime and any(line.lower().startswith(f"{tool}==") for line in dev)
    assert "-r requirements.txt" in dev
    steps = [line for line in (REPO / "Dockerfile").read_text().splitlines() if not line.startswith("#")]
    assert not [line for line in steps if "requirements-dev" in line]
    assert "install -q -r requirements-dev.txt" in (REPO / "Makefile").read_text()

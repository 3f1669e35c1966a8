"""The shipped model is registered by ``migrate`` (explicitly, once), not by reading the registry."""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from factories import client_for, make_user

from inference.bundle import WEIGHTS_FILE, file_sha256, resolve_path
from webapp.accounts.roles import ADMIN
from webapp.registry.models import ModelVersion

REPO = Path(__file__).resolve().parents[2]


def test_migrate_registers_the_shipped_model_once(tmp_path: Path) -> None:
    db = tmp_path / "fresh.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}", "DJANGO_SETTINGS_MODULE": "webapp.settings.demo",
           "LUNGSCOPE_REGISTER_SHIPPED_MODEL": "true", "LUNGSCOPE_MODEL": "default"}
    env.pop("PYTEST_CURRENT_TEST", None)
    for _ in range(2):  # a second migrate (an upgrade with nothing new) adds nothing
        done = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT source, is_active, sha256 FROM registry_modelversion").fetchall()
        activations = con.execute("SELECT action FROM registry_modelactivation").fetchall()
    assert rows == [("shipped", 1, file_sha256(resolve_path("default") / WEIGHTS_FILE))]
    assert activations == [("initial",)]


@pytest.mark.django_db
def test_listing_model_versions_writes_nothing(settings) -> None:
    settings.LUNGSCOPE_MODEL = "default"  # present: a GET that registered it would add a row
    listed = client_for(make_user("boss", ADMIN)).get("/api/model-versions/")
    assert listed.status_code == 200 and listed.json()["count"] == 0
    assert not ModelVersion.objects.exists()

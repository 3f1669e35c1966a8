"""The demo's database: ``make demo`` without ``DATABASE_URL`` runs on SQLite, so every migration must apply there.

The suite itself runs on PostgreSQL; this test migrates a scratch SQLite file in a subprocess (a vendor-specific
migration, such as an index SQLite cannot build, breaks the demo without failing any PostgreSQL test).
"""
from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_all_migrations_apply_on_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "demo.sqlite3"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{db}", "DJANGO_SETTINGS_MODULE": "webapp.settings.demo"}
    env.pop("PYTEST_CURRENT_TEST", None)
    done = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    with sqlite3.connect(db) as con:
        columns = {row[1] for row in con.execute("PRAGMA table_info(studies_study)")}
        applied = con.execute("SELECT count(*) FROM django_migrations").fetchone()[0]
    assert {"ai_label", "ai_uncertainty", "infection_percent"} <= columns
    assert applied > 10

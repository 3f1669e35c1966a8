"""Safe defaults: DEBUG is off unless asked for, the secret key is never a known constant (the demo's is random,
written by ``make demo``), and a 404 shows no URL configuration, in the demo's own environment."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: Django's debug 404 lists the URL patterns it tried; the production page must say nothing of them.
URLCONF_TELLS = ("URLconf", "urlpatterns", "api/schema/", "dicomweb/studies", "DEBUG = True")


def demo_env(var: Path) -> dict[str, str]:
    """The environment `make demo` gives its processes: no DJANGO_DEBUG, no DJANGO_SECRET_KEY, its var/ folder and
    (the web server only) plain HTTP."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LUNGSCOPE_", "DJANGO_")) and k != "PYTEST_CURRENT_TEST"}
    return {**env, "DJANGO_SETTINGS_MODULE": "webapp.settings.demo", "LUNGSCOPE_VAR_DIR": str(var),
            "DATABASE_URL": f"sqlite:///{var / 'db.sqlite3'}", "CELERY_BROKER_URL": "filesystem://"}


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_without_a_key_or_the_demo_key_file_nothing_starts(tmp_path: Path) -> None:
    result = run_python("import django; django.setup()", demo_env(tmp_path))
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr and str(tmp_path / "secret_key") in result.stderr


def test_the_demo_runs_with_debug_off_on_its_own_random_key(tmp_path: Path) -> None:
    subprocess.run(["make", "-s", "-f", str(REPO / "Makefile"), "var/secret_key"], cwd=tmp_path, check=True,
                   timeout=60)
    key_file = tmp_path / "var" / "secret_key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    env = {**demo_env(tmp_path / "var"), "LUNGSCOPE_PLAIN_HTTP": "1"}
    code = ("import django; django.setup(); from django.conf import settings as s; "
            "print(s.DEBUG, s.SECRET_KEY == open(s.SECRET_KEY_FILE).read().strip(), len(s.SECRET_KEY) >= 50, "
            "s.SESSION_COOKIE_SECURE)")
    result = run_python(code, env)
    assert result.stdout.split() == ["False", "True", "True", "False"], result.stderr


def test_a_404_in_the_demo_shows_no_url_configuration(tmp_path: Path) -> None:
    (tmp_path / "secret_key").write_text("x" * 50)
    env = {**demo_env(tmp_path), "LUNGSCOPE_PLAIN_HTTP": "1"}
    code = ("import django; django.setup(); from django.test import Client; "
            "r = Client().get('/no-such-page/'); import sys; "
            "sys.stdout.write(f'{r.status_code}\\n' + r.content.decode())")
    result = run_python(code, env)
    status, _, body = result.stdout.partition("\n")
    assert status == "404", result.stderr[-2000:]
    assert not [tell for tell in URLCONF_TELLS if tell in body], body


def test_production_settings_take_everything_from_the_environment_and_write_nothing(tmp_path: Path) -> None:
    """Imported beside pytest, with no database, broker or key file named: no switch to the suite's database, no
    demo key read from var/, no folder created; DEBUG off."""
    var = tmp_path / "var"
    var.mkdir()
    (var / "secret_key").write_text("x" * 50)  # a demo key file is no key for production
    env = {**demo_env(var), "DJANGO_SETTINGS_MODULE": "webapp.settings.production"}
    env.pop("DATABASE_URL"), env.pop("CELERY_BROKER_URL")
    code = "import pytest, django; django.setup()"
    assert "DJANGO_SECRET_KEY must be set" in run_python(code, env).stderr
    code = ("import pytest, django; django.setup(); from django.conf import settings as s; "
            "print(s.DEBUG, s.DATABASES['default'].get('ENGINE'), s.CELERY_BROKER_URL or '-')")
    result = run_python(code, {**env, "DJANGO_SECRET_KEY": "y" * 50})
    assert result.stdout.split() == ["False", "django.db.backends.dummy", "-"], result.stderr
    assert list(var.iterdir()) == [var / "secret_key"]

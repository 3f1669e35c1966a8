"""Suite-wide fixtures: the real PostgreSQL and Redis, a live Celery worker, shared data and phantom studies.

The suite runs against the services named by ``DATABASE_URL`` and ``CELERY_BROKER_URL``; under pytest they default
to the machine's PostgreSQL (127.0.0.1:5432, trust auth) and Redis (127.0.0.1:6379, db 15) (see webapp/settings/test.py:
pytest-django reads the settings before this file is imported) so ``make test`` needs no configuration. Tests that
need files from ``../shared/data`` use the ``shared_data`` fixture, which skips with a clear message when the folder
is absent.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def pytest_configure(config) -> None:
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        raise pytest.UsageError("the suite runs against PostgreSQL: unset DATABASE_URL or point it at PostgreSQL")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or LUNGSCOPE_SHARED_DATA); skips the test when it is absent."""
    from django.conf import settings

    path = Path(settings.LUNGSCOPE_SHARED_DATA)
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} is absent: real-CT tests need ../shared/data beside the repository")
    return path


@pytest.fixture
def storage_dir(settings, tmp_path) -> Path:
    """A fresh storage root per test so orphan checks see only this test's files."""
    settings.MEDIA_ROOT = tmp_path / "storage"
    settings.MEDIA_ROOT.mkdir()
    from django.core.files.storage import default_storage

    default_storage._wrapped = None  # re-read MEDIA_ROOT (LazyObject)
    if hasattr(default_storage, "_setup"):
        default_storage._setup()
    return settings.MEDIA_ROOT


def _purge_broker() -> None:
    from webapp.celery import app

    with app.connection_for_write() as conn:
        for queue in ("default", "gpu"):
            try:
                conn.default_channel.queue_purge(queue)
            except Exception:  # queue not declared yet
                pass


class WorkerProcess:
    """A real ``celery worker`` subprocess on the test database and broker."""

    def __init__(self, env: dict[str, str], queues: str, name: str, log: Path, cwd: Path = REPO) -> None:
        self.log = log
        self._fh = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "webapp", "worker", "-Q", queues, "-n", f"{name}@%h",
             "--pool", "solo", "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"],
            cwd=cwd, env=env, stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            if b"ready." in log.read_bytes():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError(f"celery worker did not start:\n{log.read_text(errors='replace')[-3000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._fh.close()


@pytest.fixture
def start_worker(transactional_db, settings, storage_dir, tmp_path):
    """Factory for live Celery workers that share this test's database (committed rows) and storage.

    Use with ``transactional_db`` semantics: the worker is another process, it sees only committed data.
    """
    from django.db import connection

    _purge_broker()
    workers: list[WorkerProcess] = []
    db = connection.settings_dict
    url = f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"

    def start(queues: str = "default,gpu", name: str | None = None, cwd: Path = REPO,
              **extra_env: str) -> WorkerProcess:
        """``cwd``: the worker's working directory (another host's, say); the code is found through PYTHONPATH."""
        # LUNGSCOPE_TEST_RUN_ID travels in os.environ: the worker uses this session's broker key prefix.
        env = {**os.environ, "DATABASE_URL": url, "LUNGSCOPE_STORAGE_DIR": str(settings.MEDIA_ROOT),
               "CELERY_BROKER_URL": settings.CELERY_BROKER_URL, "PYTHONPATH": str(REPO), **extra_env}
        name = name or f"w{len(workers)}"
        worker = WorkerProcess(env, queues, name, tmp_path / f"{name}.log", cwd)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
    _purge_broker()

"""Worker faults: a worker SIGKILLed mid-analysis, a broker restarted with work queued.

These run real ``celery worker`` processes against the real Redis. ``acks_late`` leaves the message of a killed
worker unacknowledged; kombu's Redis transport gives it back once its visibility timeout has passed, so the second
worker here runs with a short one (``CELERY_VISIBILITY_TIMEOUT``). Idempotent storage makes the result exist
exactly once however often the message is delivered.
"""
from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest
from factories import ingest_phantom, make_tiny_bundle, wait_for_job, wait_until

from webapp.analysis.models import AnalysisRun, Finding, SliceResult
from webapp.analysis.tasks import enqueue_analysis
from webapp.jobs.models import Job
from webapp.review.models import Box

pytestmark = [pytest.mark.worker, pytest.mark.slow]
N_SLICES = 16


@pytest.fixture
def slow_enough_bundle(tmp_path, settings) -> Path:
    """Saliency on every slice takes seconds: long enough to kill a worker in the middle."""
    settings.LUNGSCOPE_SALIENCY = "all"
    bundle = make_tiny_bundle(tmp_path / "bundle")
    settings.LUNGSCOPE_MODEL = str(bundle)
    return bundle


def test_killed_worker_task_completes_exactly_once_on_another_worker(start_worker, slow_enough_bundle, tmp_path):
    study = ingest_phantom(tmp_path, "COVID", seed=21, n_slices=N_SLICES)
    env = {"LUNGSCOPE_MODEL": str(slow_enough_bundle), "LUNGSCOPE_SALIENCY": "all", "CELERY_VISIBILITY_TIMEOUT": "3"}
    first = start_worker(queues="gpu", name="doomed", **env)
    job = enqueue_analysis(study)

    def running_with_progress():
        job.refresh_from_db()
        return job.status == Job.Status.RUNNING and job.progress > 0

    wait_until(running_with_progress, 90, 0.1,
               f"the first worker to start the analysis (log: {first.log})")
    first.kill(signal.SIGKILL)
    job.refresh_from_db()
    assert job.status == Job.Status.RUNNING and job.progress < 100, "the kill must land mid-analysis"

    start_worker(queues="gpu", name="rescuer", **env)
    job = wait_for_job(job, timeout=240)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.attempts == 2  # started by the killed worker, finished by the rescuer

    run = AnalysisRun.objects.get(job=job)
    assert AnalysisRun.objects.filter(study=study).count() == 1
    assert run.status == AnalysisRun.Status.SUCCEEDED
    slices = SliceResult.objects.filter(run=run)
    indices = list(slices.values_list("index", flat=True))
    assert indices and sorted(indices) == sorted({s["index"] for s in run.result["slices"]}) == sorted(set(indices))
    findings = Finding.objects.filter(run=run)
    assert Box.objects.filter(analysis_run=run).count() == findings.count()
    keys = list(findings.values_list("slice__index", "x0", "y0", "x1", "y1"))
    assert len(keys) == len(set(keys)), "a finding was stored twice"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PersistentRedis:
    """A private redis-server with an append-only file, as docker-compose runs it (``--appendonly yes``)."""

    def __init__(self, workdir: Path) -> None:
        self.port, self.dir = _free_port(), workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--appendonly", "yes",
             "--appendfsync", "always", "--save", "", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True,
                                          text=True).stdout.strip() == "PONG", 20, 0.1, "redis to start")

    def restart(self) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown"], capture_output=True)
        self.proc.wait(timeout=20)
        self.start()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


@pytest.fixture
def persistent_broker(tmp_path):
    """Point the Celery app's producer at a private persistent Redis for this test, then back."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    from webapp.celery import app

    redis = PersistentRedis(tmp_path / "redis")
    redis.start()
    original = app.conf.broker_write_url
    app.conf.broker_write_url = redis.url  # producers connect with the write URL when one is set
    app._pool = None  # the producer pool is built lazily from it
    app.amqp._producer_pool = None
    yield redis
    app.conf.broker_write_url = original
    app._pool = None
    app.amqp._producer_pool = None
    redis.stop()


def test_broker_restart_does_not_lose_queued_work(start_worker, persistent_broker, tmp_path, settings):
    settings.LUNGSCOPE_SALIENCY = "none"
    bundle = make_tiny_bundle(tmp_path / "bundle")
    settings.LUNGSCOPE_MODEL = str(bundle)
    studies = [ingest_phantom(tmp_path, label, seed=30 + i, n_slices=12) for i, label in enumerate(("NP", "CAP"))]
    jobs = [enqueue_analysis(study) for study in studies]  # queued; no worker is listening yet

    persistent_broker.restart()

    start_worker(queues="gpu", CELERY_BROKER_URL=persistent_broker.url, LUNGSCOPE_MODEL=str(bundle),
                 LUNGSCOPE_SALIENCY="none")
    for job in jobs:
        assert wait_for_job(job, timeout=120).status == Job.Status.SUCCEEDED, job.error
    assert AnalysisRun.objects.filter(status=AnalysisRun.Status.SUCCEEDED).count() == 2

"""Several machines share only PostgreSQL, Redis and the storage: a model registered and promoted on the web host
reaches a worker on "another host" (its own working directory and LUNGSCOPE_VAR_DIR, the web host's bundle folder
deleted) through the storage API, and the ROC figure is served from the storage too."""
from __future__ import annotations

import shutil

import pytest
from factories import client_for, ingest_phantom, make_tiny_bundle, make_user, wait_for_job

from webapp.analysis.models import AnalysisRun
from webapp.analysis.tasks import enqueue_analysis
from webapp.jobs.models import Job
from webapp.registry import services
from webapp.registry.bundle_store import stored_name

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.mark.worker
def test_a_worker_on_another_host_runs_the_model_promoted_on_the_web_host(start_worker, tmp_path, settings):
    web_host = tmp_path / "web-host"
    bundle = make_tiny_bundle(web_host / "tiny", version="mh1", favour="COVID")
    (bundle / "roc.png").write_bytes(PNG)
    settings.VAR_DIR = web_host / "var"
    version = services.register_bundle(bundle, source="trained")
    version.roc_plot = stored_name(version.bundle_path, "roc.png")
    version.save(update_fields=["roc_plot"])
    services.promote(version)
    shutil.rmtree(web_host)  # from here on, only the storage holds the model

    other_host = tmp_path / "other-host"
    other_host.mkdir()
    start_worker(queues="gpu", cwd=other_host, LUNGSCOPE_VAR_DIR=str(other_host / "var"),
                 LUNGSCOPE_MODEL=str(tmp_path / "no-such-bundle"), OMP_NUM_THREADS="1", LUNGSCOPE_SALIENCY="none")
    study = ingest_phantom(tmp_path, n_slices=6, size=64)
    job = wait_for_job(enqueue_analysis(study))
    assert job.status == Job.Status.SUCCEEDED, job.error

    run = AnalysisRun.objects.get(job=job)
    assert (run.model_sha256, run.bundle_path) == (version.sha256, f"storage:models/{version.sha256}")
    assert (other_host / "var" / "model-cache" / version.sha256 / "weights.pt").is_file()

    admin = client_for(make_user("boss", "admin"))
    roc = admin.get(f"/api/model-versions/{version.pk}/roc.png")
    assert roc.status_code == 200 and roc["Content-Type"] == "image/png"
    assert b"".join(roc.streaming_content) == PNG

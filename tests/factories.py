"""Test data shared across the suite (imported by name: pytest puts ``tests/`` on sys.path).

Users with roles, API clients, tiny random model bundles and phantom studies ingested through the real ingest
service. Tests check plumbing and invariants with these, not accuracy.
"""
from __future__ import annotations

import time
from pathlib import Path

from rest_framework.test import APIClient

ROLE_USERS = ("clinician", "annotator", "admin")


def make_user(username: str, role: str | None):
    """A user holding ``role`` (or none), password ``<username>-pass``."""
    from django.contrib.auth import get_user_model

    from webapp.accounts.roles import assign_role

    user = get_user_model().objects.create_user(username, password=f"{username}-pass")
    if role:
        assign_role(user, role)
    return user


def client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def make_tiny_bundle(path: Path, version: str = "t1", seed: int = 0, width: float = 0.125,
                     favour: str | None = None, **meta) -> Path:
    """A random-weight MultiScaleVGG bundle with the 3-way classes; ``favour`` biases every head towards one class
    (so a random model still calls slices positive and explains them); ``meta`` overrides model.json fields."""
    import torch

    from inference.bundle import save_bundle
    from inference.classifier import MultiScaleVGG

    classes = ["NP", "CAP", "COVID"]
    torch.manual_seed(seed)
    model = MultiScaleVGG(num_classes=3, width=width)
    if favour:
        with torch.no_grad():
            for head in model.heads:
                head.bias[classes.index(favour)] = 3.0
    return save_bundle(model, path, {"name": "tiny", "version": version, "classes": classes, **meta})


#: A tiny bundle that still finds something: 64 px input, 4 IG steps, every head biased towards COVID.
FAST_META = {"input_size": [64, 64], "saliency": {"steps": 4, "min_box_area_px": 4}}


def make_finding_bundle(path: Path, version: str = "t1", seed: int = 0) -> Path:
    """A tiny bundle that calls every slice COVID, so every lung slice gets saliency and boxes (fast to run)."""
    return make_tiny_bundle(path, version, seed, favour="COVID", **FAST_META)


def ingest_phantom(tmp_path: Path, label: str = "COVID", seed: int = 7, n_slices: int = 16, size: int = 128,
                   **tags):
    """Generate a phantom study, write it as DICOM and ingest every file; returns the Study."""
    from training.phantom import generate_study, write_dicom_series
    from webapp.studies.ingest import ingest_file
    from webapp.studies.models import Study

    phantom = generate_study(seed, label, n_slices=n_slices, size=size)
    results = []
    for path in write_dicom_series(phantom, tmp_path / f"dicom-{seed}", **tags):
        with open(path, "rb") as fh:
            results.append(ingest_file(fh, path.name, source_label=label))
    assert all(r.landed for r in results), [r.reason for r in results if not r.landed]
    return Study.objects.get(study_instance_uid=results[0].study_instance_uid)


def wait_until(predicate, timeout: float = 120.0, interval: float = 0.3, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wait_for_job(job, timeout: float = 150.0):
    """Wait until a Job is done (succeeded, failed or cancelled) and return it refreshed."""
    def done():
        job.refresh_from_db()
        return job.done

    wait_until(done, timeout, 0.5, f"job {job.pk} to finish (last: {job.status}, {job.message!r})")
    return job


def odd_header_series(folder: Path, seed: int = 3, n_slices: int = 8, size: int = 64) -> list[Path]:
    """A phantom series whose headers are a little off, as real ones often are: a hashed (hex) Series Instance UID,
    which pydicom reads with an "Invalid value for VR UI" warning each time a file's value is read."""
    import hashlib
    import warnings

    import pydicom
    from pydicom import config

    from training.phantom import generate_study, write_dicom_series

    paths = write_dicom_series(generate_study(seed, "COVID", n_slices=n_slices, size=size), folder)
    mode = config.settings.writing_validation_mode
    config.settings.writing_validation_mode = config.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tests count the warnings of their own reads
            for path in paths:
                ds = pydicom.dcmread(path)
                ds.SeriesInstanceUID = hashlib.sha256(folder.name.encode()).hexdigest()
                ds.save_as(path)
    finally:
        config.settings.writing_validation_mode = mode
    return paths

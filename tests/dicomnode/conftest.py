"""Fixtures for the DICOM node: the listener as its own process and Debian's Orthanc as the hospital PACS.

Both run against this test's database (``transactional_db``: they are other processes and see only committed rows)
and its storage folder. Orthanc is skipped with a message when it is not installed (``scripts/ensure_services.sh``
installs it for ``make test``).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from dicomnode_helpers import ORTHANC, ListenerProcess, Orthanc, worker_database_url


@pytest.fixture
def start_listener(transactional_db, settings, storage_dir, tmp_path):
    """Factory: start the listener on this test's database and storage (extra env vars as keyword arguments)."""
    started: list[ListenerProcess] = []

    def start(**extra_env: str) -> ListenerProcess:
        env = {**os.environ, "DATABASE_URL": worker_database_url(), "LUNGSCOPE_STORAGE_DIR": str(settings.MEDIA_ROOT),
               "CELERY_BROKER_URL": settings.CELERY_BROKER_URL, "LUNGSCOPE_ANALYZE_ON_INGEST": "false",
               **extra_env}
        listener = ListenerProcess(env, tmp_path / f"listener{len(started)}.log")
        started.append(listener)
        return listener

    yield start
    for listener in started:
        listener.stop()


@pytest.fixture
def start_orthanc(tmp_path):
    """Factory: an Orthanc with the given DicomModalities (and DICOMweb servers); skips when not installed."""
    if not ORTHANC:
        pytest.skip("Debian's Orthanc is not installed (scripts/ensure_services.sh installs orthanc, orthanc-dicomweb)")
    started: list[Orthanc] = []

    def start(modalities: dict, dicomweb_servers: dict | None = None) -> Orthanc:
        root = tmp_path / f"orthanc{len(started)}"
        root.mkdir()
        orthanc = Orthanc(root, modalities, dicomweb_servers)
        started.append(orthanc)
        return orthanc

    yield start
    for orthanc in started:
        orthanc.stop()


@pytest.fixture
def ricord_slab(shared_data) -> list[Path]:
    """A real chest CT slab: 10 JPEG 2000 Lossless slices of 512 x 512 (RICORD, COVID-19 positive)."""
    files = sorted((shared_data / "real-ct" / "ricord-slabs" / "covid-positive" / "patient_1").rglob("*.dcm"))
    if len(files) != 10:
        pytest.skip(f"expected the 10-slice RICORD slab, found {len(files)} files")
    return files

"""Model bundles in the storage backend, so that web, workers and listener on different hosts share models the
way they share DICOM files: through the storage API, never through a local path.

Registering a bundle publishes every file of its folder under ``models/<sha256 of the weights>/`` and records
``storage:models/<sha256>`` as the version's ``bundle_path``. A process that needs the bundle copies it once into
its own cache (``<LUNGSCOPE_VAR_DIR>/model-cache/<sha256>``, written to a temporary folder and renamed, so a
half-copied bundle is never seen); the analysis still checks the weights' sha256 after loading. Paths without the
prefix (shipped bundle names, folders of older rows) resolve as before.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage

STORAGE_SCHEME = "storage:"


def cache_dir() -> Path:
    path = Path(settings.VAR_DIR) / "model-cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def publish(folder: Path, sha256: str) -> str:
    """Copy the bundle's files into the storage (files already there are kept: the name is content-addressed)."""
    prefix = f"models/{sha256}"
    for path in sorted(p for p in Path(folder).iterdir() if p.is_file()):
        name = f"{prefix}/{path.name}"
        if not default_storage.exists(name):
            with open(path, "rb") as fh:
                default_storage.save(name, File(fh, name=path.name))
    return STORAGE_SCHEME + prefix


def stored_name(bundle_path: str, file_name: str) -> str:
    """The storage name of one file of a published bundle (its ROC figure, its training log)."""
    return f"{bundle_path.removeprefix(STORAGE_SCHEME)}/{file_name}"


def local_bundle(bundle_path: str) -> Path:
    """A local folder holding the bundle: the cached copy of a published one (copied on first use), else the
    shipped bundle or folder the path names (``inference.bundle.resolve_path``)."""
    from inference.bundle import WEIGHTS_FILE, BundleError, resolve_path

    if not bundle_path.startswith(STORAGE_SCHEME):
        return resolve_path(bundle_path)
    prefix = bundle_path.removeprefix(STORAGE_SCHEME)
    target = cache_dir() / Path(prefix).name
    if (target / WEIGHTS_FILE).is_file():
        return target
    try:
        _, files = default_storage.listdir(prefix)
    except FileNotFoundError:
        files = []
    if WEIGHTS_FILE not in files:
        raise BundleError(f"model bundle {bundle_path} is not in the storage (no {WEIGHTS_FILE})")
    partial = Path(tempfile.mkdtemp(dir=cache_dir(), prefix=".partial-"))
    try:
        for name in files:
            with default_storage.open(f"{prefix}/{name}", "rb") as src, open(partial / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
        try:
            os.replace(partial, target)
        except OSError:  # another process of this host finished the same copy first
            if not (target / WEIGHTS_FILE).is_file():
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target

"""Registry services: which model bundle new analyses run, and registering / promoting / rolling back versions."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction

from webapp.core import audit

from .bundle_store import local_bundle, publish
from .models import ModelActivation, ModelVersion

if TYPE_CHECKING:
    from inference.bundle import Bundle

# ``inference.bundle`` imports torch: each function below imports it when called, so the views that reach this module
# (and the URL conf) load without the ML stack.

_bundles: dict[tuple[str, bytes], Bundle] = {}
_lock = threading.Lock()


def loaded_bundle(folder: Path, sha256: str | None = None) -> Bundle:
    """The bundle in ``folder``, loaded once per process (``sha256``: its weights' hash, when the caller has it).

    Loading weights takes seconds and a worker analyses many studies, so this is the one cache of loaded bundles:
    the active model and a run's registered version reach the same entry. The key is what the bundle is, not where:
    the weights' sha256 and its ``model.json``, so a bundle rewritten in place is loaded again, while the same
    bundle under two paths (the shipped folder, its registered copy) is loaded once.
    """
    from inference.bundle import META_FILE, WEIGHTS_FILE, file_sha256, load_bundle

    weights, meta = folder / WEIGHTS_FILE, folder / META_FILE
    if sha256 is None:
        sha256 = file_sha256(weights) if weights.is_file() else ""  # no weights: load_bundle says so (BundleError)
    key = (sha256, meta.read_bytes() if meta.is_file() else b"")
    with _lock:
        if key not in _bundles:
            _bundles[key] = load_bundle(folder, device=settings.LUNGSCOPE_DEVICE)
        return _bundles[key]


def active_bundle() -> Bundle:
    """The loaded bundle of the active ModelVersion, else of ``settings.LUNGSCOPE_MODEL``; a promotion (another row
    active) is picked up by the next call."""
    version = ModelVersion.objects.filter(is_active=True).only("bundle_path", "sha256").first()
    return loaded_bundle(local_bundle(version.bundle_path if version else settings.LUNGSCOPE_MODEL))


# ---- registering, promoting and rolling back versions (the curation/registry admin) ------------------------------

def models_dir() -> Path:
    """Where trained bundles are kept: ``<storage>/models`` beside the DICOM files, so every worker sees them."""
    return Path(settings.MEDIA_ROOT) / "models"


def _bundle_meta(path: Path) -> dict:
    """The bundle's ``model.json``. Python writes NaN for an undefined metric (a precision with no positive
    predictions), which is not JSON and which PostgreSQL's jsonb refuses (a 500 on the registry): read as null."""
    from inference.bundle import META_FILE, BundleError

    try:
        return json.loads((path / META_FILE).read_text(), parse_constant=lambda _constant: None)
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path} has no readable {META_FILE}: {exc}") from exc


def register_bundle(path: Path, *, source: str, user=None, metrics: dict | None = None, config: dict | None = None,
                    dataset_version=None, **fields) -> ModelVersion:
    """A ModelVersion for the bundle folder ``path``, published to the storage (``bundle_store``) so every host can
    load it; its sha256 is the weights' (what analyses record)."""
    from inference.bundle import WEIGHTS_FILE, file_sha256

    meta = _bundle_meta(path)
    sha256 = file_sha256(path / WEIGHTS_FILE)
    return ModelVersion.objects.create(
        name=str(meta.get("name", path.name)), version=str(meta.get("version", "0")),
        bundle_path=publish(path, sha256), sha256=sha256, classes=list(meta["classes"]),
        metrics=metrics if metrics is not None else dict(meta.get("metrics", {})), config=config or {},
        source=source, dataset_version=dataset_version, created_by=user, **fields,
    )


def ensure_default_model_version() -> ModelVersion | None:
    """Register the shipped ``settings.LUNGSCOPE_MODEL`` bundle as the first version, active when none is.

    Idempotent (called after ``migrate``, by ``make_demo`` and before training); None when the bundle is absent.
    """
    from inference.bundle import WEIGHTS_FILE, BundleError, file_sha256, resolve_path

    try:
        path = resolve_path(settings.LUNGSCOPE_MODEL)
    except BundleError:
        return None
    sha256 = file_sha256(path / WEIGHTS_FILE)
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().filter(sha256=sha256).first()
        if version is None:
            version = register_bundle(path, source="shipped")
        if not ModelVersion.objects.filter(is_active=True).exists():
            _activate(version, ModelActivation.Action.INITIAL, user=None, previous=None)
    return version


def _describe(version: ModelVersion | None) -> dict | None:
    if version is None:
        return None
    return {"id": version.pk, "name": version.name, "version": version.version, "sha256": version.sha256}


def _activate(version: ModelVersion, action: str, user, previous: ModelActivation | None) -> ModelActivation:
    before = ModelVersion.objects.filter(is_active=True).first()
    version.activate()
    activation = ModelActivation.objects.create(model_version=version, previous=previous, action=action, actor=user)
    audit.record(actor=user, action=f"model.{action}", obj=version, study_id=None,
                 before={"active": _describe(before)}, after={"active": _describe(version)})
    return activation


def current_activation() -> ModelActivation | None:
    """The activation that made the active version active; recorded as "initial" when it was activated directly."""
    active = ModelVersion.objects.filter(is_active=True).first()
    if active is None:
        return None
    activation = ModelActivation.objects.filter(model_version=active).first()
    if activation is None:
        activation = ModelActivation.objects.create(model_version=active, action=ModelActivation.Action.INITIAL)
    return activation


def promote(version: ModelVersion, user=None) -> ModelActivation:
    """Make ``version`` the active one (audited). Promoting the active version again changes nothing."""
    with transaction.atomic():
        ModelVersion.objects.select_for_update().filter(pk=version.pk).get()
        current = current_activation()
        if current is not None and current.model_version_id == version.pk:
            return current
        return _activate(version, ModelActivation.Action.PROMOTE, user, previous=current)


class RollbackError(ValueError):
    """Nothing to roll back to."""


def rollback(user=None) -> ModelActivation:
    """Re-activate the version that was active before the current one (audited); repeated calls walk further back."""
    with transaction.atomic():
        list(ModelVersion.objects.select_for_update().filter(is_active=True))
        current = current_activation()
        if current is None or current.previous is None:
            raise RollbackError("there is no earlier active version to roll back to")
        target = current.previous
        return _activate(target.model_version, ModelActivation.Action.ROLLBACK, user, previous=target.previous)

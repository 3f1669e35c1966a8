"""Registry services: which model bundle new analyses run."""
from __future__ import annotations

import threading

from django.conf import settings

from inference.bundle import WEIGHTS_FILE, Bundle, file_sha256, load_bundle, resolve_path

from .models import ModelVersion

_bundles: dict[str, Bundle] = {}
_lock = threading.Lock()


def active_bundle() -> Bundle:
    """The loaded bundle of the active ModelVersion, else of ``settings.LUNGSCOPE_MODEL``.

    Loading weights takes seconds and a worker analyses many studies, so bundles are cached per process. The key is
    the weights' sha256, not the path: a promotion (another row active) or a bundle rewritten in place is picked
    up by the next call, while an unchanged bundle is never loaded twice.
    """
    version = ModelVersion.objects.filter(is_active=True).only("bundle_path", "sha256").first()
    path = resolve_path(version.bundle_path if version else settings.LUNGSCOPE_MODEL)
    sha256 = file_sha256(path / WEIGHTS_FILE)
    with _lock:
        if sha256 not in _bundles:
            _bundles[sha256] = load_bundle(path, device=settings.LUNGSCOPE_DEVICE)
        return _bundles[sha256]

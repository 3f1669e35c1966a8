"""The demo (``make demo``) and local development: runs with no server besides itself.

Without ``DATABASE_URL`` the app uses SQLite in ``var/``; without ``CELERY_BROKER_URL`` Celery uses kombu's
filesystem transport in ``var/celery`` (``make demo`` starts a worker process beside the web server). The secret key
is ``DJANGO_SECRET_KEY`` or the random one ``make demo`` writes to ``var/secret_key``.
"""
from __future__ import annotations

import os

from .base import *  # noqa: F403 (a flavour is the shared settings plus its own)
from .base import VAR_DIR, broker_transport_options, caches, database, secret_key

SECRET_KEY_FILE = VAR_DIR / "secret_key"
SECRET_KEY = secret_key(SECRET_KEY_FILE)
DATABASES = {"default": database(f"sqlite:///{VAR_DIR / 'lungscope.sqlite3'}")}

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    # kombu's filesystem transport needs its folders before the first message.
    _celery_dir = VAR_DIR / "celery"
    for _sub in ("queue", "processed", "control"):
        (_celery_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_celery_dir / "queue"),
        "data_folder_out": str(_celery_dir / "queue"),
        "processed_folder": str(_celery_dir / "processed"),
        "control_folder": str(_celery_dir / "control"),  # broadcast exchanges; kombu's default is ./control
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = broker_transport_options()
CACHES = caches(CELERY_BROKER_URL)

"""Production (the Docker image, docker-compose): everything comes from the environment.

``DJANGO_SECRET_KEY`` is required (no key file, no default); ``DATABASE_URL`` and ``CELERY_BROKER_URL`` name the
servers (no SQLite or filesystem fallback: without a database Django refuses the first query); ``DJANGO_DEBUG`` is
off unless set. Importing these settings writes nothing.
"""
from __future__ import annotations

import os

from .base import *  # noqa: F403 (a flavour is the shared settings plus its own)
from .base import broker_transport_options, caches, database, secret_key

SECRET_KEY = secret_key()
DATABASES = {"default": database()}
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_BROKER_TRANSPORT_OPTIONS = broker_transport_options()
CACHES = caches(CELERY_BROKER_URL)

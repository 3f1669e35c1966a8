"""The test suite (pytest, ``make test``): the real services, PostgreSQL and Redis, by default.

The defaults go into the environment before the shared settings read it, so the servers, workers and commands the
tests start inherit them (and this run's secret key and id); an exported variable still wins. Concurrent test
sessions on one machine each get their own test database, broker keys and cache keys (``LUNGSCOPE_TEST_RUN_ID``).
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent.parent
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/lungscope")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("LUNGSCOPE_VAR_DIR", str(_REPO / "var" / "test"))
os.environ.setdefault("LUNGSCOPE_ANALYZE_ON_INGEST", "false")
os.environ.setdefault("LUNGSCOPE_REGISTER_SHIPPED_MODEL", "false")  # tests register the bundles they analyse with
# Plain HTTP for the test client, the live server and the browser; DEBUG stays off.
os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
os.environ.setdefault("LUNGSCOPE_PLAIN_HTTP", "true")
os.environ.setdefault("LUNGSCOPE_STABLE_STUDY_S", "1")
os.environ.setdefault("LUNGSCOPE_TEST_RUN_ID", str(os.getpid()))

from .base import *  # noqa: E402, F403 (a flavour is the shared settings plus its own)
from .base import broker_transport_options, caches, database, secret_key  # noqa: E402

RUN_ID = os.environ["LUNGSCOPE_TEST_RUN_ID"]
SECRET_KEY = secret_key()
DATABASES = {"default": {**database(), "TEST": {"NAME": f"test_lungscope_{RUN_ID}"}}}
CELERY_BROKER_URL = os.environ["CELERY_BROKER_URL"]
CELERY_BROKER_TRANSPORT_OPTIONS = broker_transport_options(key_prefix=f"test{RUN_ID}:")
CACHES = caches(CELERY_BROKER_URL, key_prefix=f"lungscope{RUN_ID}")

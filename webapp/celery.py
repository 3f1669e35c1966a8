"""The Celery application.

Two queues: ``default`` (ingest, exports) and ``gpu`` (inference, training). Tasks acknowledge late so a
worker killed mid-task leaves its message for another worker; tasks must therefore be idempotent.
"""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings.demo")

app = Celery("lungscope")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

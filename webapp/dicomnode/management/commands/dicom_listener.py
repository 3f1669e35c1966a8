"""``python manage.py dicom_listener [--port 11112] [--ae-title LUNGSCOPE] [--host 0.0.0.0]``: the DICOM SCP."""
from __future__ import annotations

import logging

from django.conf import settings
from django.core.management.base import BaseCommand

from webapp.dicomnode.listener import Listener


class Command(BaseCommand):
    help = "Run the DICOM listener (C-ECHO, C-STORE) that feeds received instances to the ingest."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=settings.LUNGSCOPE_DICOM_PORT)
        parser.add_argument("--ae-title", default=settings.LUNGSCOPE_DICOM_AE_TITLE)
        parser.add_argument("--host", default=settings.LUNGSCOPE_DICOM_HOST)

    def handle(self, *args, port: int, ae_title: str, host: str, **options) -> None:
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)
        listener = Listener(ae_title)
        self.stdout.write(f"DICOM listener {ae_title} on {host}:{port}")
        self.stdout.flush()
        listener.serve(host, port, block=True)

"""Helpers of the DICOM node tests (imported by name: pytest puts this folder on sys.path; a name of its own, as
``conftest`` would be another folder's): the listener as a process and Debian's Orthanc as the hospital PACS."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from pynetdicom import AE
from pynetdicom.sop_class import Verification

REPO = Path(__file__).resolve().parents[2]
ORTHANC = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
LISTENER_AET = "LUNGSCOPE"
ORTHANC_AET = "ORTHANC"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def echo(port: int, calling: str = ORTHANC_AET) -> int | None:
    """C-ECHO status from the listener, or None when the association was refused or nobody listens."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title=LISTENER_AET)
    if not assoc.is_established:
        return None
    status = assoc.send_c_echo()
    assoc.release()
    return int(status.Status) if status else None


def worker_database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    return f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class ListenerProcess:
    """``manage.py dicom_listener`` as a subprocess, with its log."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.log = log
        self._fh = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "dicom_listener", "--port", str(self.port), "--ae-title", LISTENER_AET,
             "--host", "127.0.0.1"],
            cwd=REPO, env=env, stdout=self._fh, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                break
            if b"DICOM listener" in log.read_bytes():
                return
            time.sleep(0.2)
        raise RuntimeError(f"dicom_listener did not start:\n{log.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()


class Orthanc:
    """Debian's Orthanc as a PACS: REST on ``http``, DIMSE on ``dicom_port`` (AE ORTHANC), DICOMweb plugin on."""

    def __init__(self, root: Path, modalities: dict, dicomweb_servers: dict | None = None) -> None:
        self.http_port, self.dicom_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        config = root / "orthanc.json"
        config.write_text(json.dumps({
            "Name": "test-pacs", "StorageDirectory": str(root / "storage"), "IndexDirectory": str(root / "index"),
            "HttpPort": self.http_port, "DicomPort": self.dicom_port, "DicomAet": ORTHANC_AET,
            "DicomServerEnabled": True, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "DicomAlwaysAllowStore": True, "DicomCheckCalledAet": False, "HttpsCACertificates": "",
            "DicomModalities": modalities, "DicomScuTimeout": 60,
            "Plugins": [str(DICOMWEB_PLUGIN)] if DICOMWEB_PLUGIN.exists() else [],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Servers": dicomweb_servers or {}},
        }))
        self._log = open(root / "orthanc.log", "wb")
        self.proc = subprocess.Popen([ORTHANC, str(config)], stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if requests.get(f"{self.url}/system", timeout=2).ok:
                    return
            except requests.ConnectionError:
                time.sleep(0.3)
        raise RuntimeError(f"Orthanc did not start:\n{(root / 'orthanc.log').read_text(errors='replace')[-3000:]}")

    def upload(self, files: list[Path]) -> list[dict]:
        return [requests.post(f"{self.url}/instances", data=f.read_bytes(), timeout=60).json() for f in files]

    def get(self, path: str, **kwargs):
        response = requests.get(f"{self.url}{path}", timeout=60, **kwargs)
        response.raise_for_status()
        return response.json()

    def get_bytes(self, path: str) -> bytes:
        response = requests.get(f"{self.url}{path}", timeout=60)
        response.raise_for_status()
        return response.content

    def post(self, path: str, body, **kwargs):
        return requests.post(f"{self.url}{path}", data=json.dumps(body) if not isinstance(body, str) else body,
                             timeout=300, **kwargs)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self._log.close()



"""Ingest rate: instances per second for a 128-slice 512 x 512 CT series through STOW-RS (gunicorn on loopback),
through DIMSE C-STORE to ``manage.py dicom_listener`` (one association, pynetdicom as the sending modality) and
through ``manage.py import_dicom``, and, when Debian's Orthanc is installed (``apt-get install orthanc
orthanc-dicomweb``), through Orthanc's STOW-RS and Orthanc's C-STORE SCP with the same clients, for ratios.

A throw-away installation: a fresh PostgreSQL database (``--database-url``, default ``lungscope_bench`` on the
local server; SQLite in the temp folder when PostgreSQL is unreachable) and storage in a temp folder. The series is
a synthetic phantom written as uncompressed Explicit VR Little Endian files, or with ``--series DIR`` a real series as
it is stored (e.g. LIDC-IDRI's JPEG 2000 scans in ``../shared/data/real-ct/lidc-idri``). STOW sends the series as
``--clients`` concurrent requests of equal share, for lungscope and Orthanc alike, in ``--rounds`` rounds that
interleave lungscope STOW-RS, Orthanc STOW-RS and C-STORE (a fresh Orthanc each round), lungscope C-STORE and
``import_dicom`` (the archive emptied before each), so the load of a shared machine falls on both sides alike; each
round prints its load average and ratios, and the medians close the run. Analysis on ingest is off: this measures
ingest. Writes the figures as JSON to bench/out/ingest.json.

    python bench/ingest.py [--slices 128 --size 512 --clients 2 --rounds 3] [--series DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
PYTHON = sys.executable
ORTHANC = shutil.which("Orthanc")
ORTHANC_DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
USER, PASSWORD = "bench", "bench-password-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, timeout: float = 180.0, **kwargs) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=5, **kwargs).status_code < 500:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} did not come up within {timeout:.0f} s")


def write_series(out: Path, slices: int, size: int, series: Path | None = None) -> list[Path]:
    """The phantom series, or a copy of the real ``series``'s DICOM files, in ``out`` (import_dicom reads it)."""
    if series is not None:
        out.mkdir(parents=True)
        copies = [Path(shutil.copyfile(path, out / f"{k:05d}.dcm"))
                  for k, path in enumerate(sorted(p for p in series.rglob("*.dcm") if p.is_file()))]
        if not copies:
            raise SystemExit(f"no .dcm files under {series}")
        return copies
    from training.phantom import generate_study, write_dicom_series

    return write_dicom_series(generate_study(2024, "COVID", size=size, n_slices=slices), out)


def fresh_database(url: str, var: Path) -> str:
    """Recreate the bench database on PostgreSQL; fall back to SQLite in ``var`` when the server is unreachable."""
    import psycopg

    base, _, name = url.rpartition("/")
    try:
        with psycopg.connect(f"{base}/postgres", autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        return url
    except psycopg.OperationalError as exc:
        print(f"PostgreSQL unreachable ({exc}); using SQLite", file=sys.stderr)
        return f"sqlite:///{var / 'bench.sqlite3'}"


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([PYTHON, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def stow(url: str, files: list[bytes], headers: dict[str, str]) -> requests.Response:
    boundary = uuid.uuid4().hex
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"
                    for data in files) + f"--{boundary}--\r\n".encode()
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return requests.post(url, data=body, timeout=600, headers={**headers, "Content-Type": content_type,
                                                                "Accept": "application/dicom+json"})


def stow_rate(url: str, files: list[bytes], clients: int, headers: dict[str, str]) -> float:
    """Instances per second for the whole series, sent as ``clients`` concurrent requests."""
    shares = [files[i::clients] for i in range(clients)]
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        responses = list(pool.map(lambda share: stow(url, share, headers), shares))
    elapsed = time.perf_counter() - started
    for response in responses:
        if response.status_code != 200:
            raise RuntimeError(f"STOW to {url} answered {response.status_code}: {response.text[:500]}")
    return len(files) / elapsed


def lungscope_env(var: Path, database_url: str) -> tuple[dict[str, str], str]:
    """A migrated throw-away installation and an API token for it."""
    env = {**os.environ, "DATABASE_URL": fresh_database(database_url, var), "LUNGSCOPE_VAR_DIR": str(var),
           "LUNGSCOPE_STORAGE_DIR": str(var / "storage"), "LUNGSCOPE_ANALYZE_ON_INGEST": "false",
           "DJANGO_DEBUG": "1", "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
           "DJANGO_SUPERUSER_PASSWORD": PASSWORD, "LOG_LEVEL": "WARNING"}
    manage(env, "migrate", "--noinput")
    manage(env, "createsuperuser", "--noinput", "--username", USER, "--email", "bench@example.org")
    return env, manage(env, "drf_create_token", USER).split()[2]


def clear_archive(env: dict[str, str], var: Path) -> None:
    """Delete every stored study (rows and files), keeping users and tokens, so the next round stores anew."""
    manage(env, "shell", "-c", "from webapp.studies.models import Patient, Study; "
                               "Study.objects.all().delete(); Patient.objects.all().delete()")
    shutil.rmtree(var / "storage", ignore_errors=True)


@contextmanager
def lungscope_server(env: dict[str, str], var: Path, clients: int, token: str) -> Iterator[str]:
    """gunicorn as deployed (one worker per client, 2 threads); yields the STOW-RS URL."""
    port = free_port()
    # Load Django and the URL conf (the other apps import torch) once in the master, so no worker pays for it
    # during the timed requests.
    config = var / "gunicorn_bench.py"
    config.write_text("preload_app = True\n\n\ndef when_ready(server):\n"
                      "    from django.urls import get_resolver\n\n    get_resolver().url_patterns\n")
    server = subprocess.Popen([PYTHON, "-m", "gunicorn", "webapp.wsgi", "-c", str(config), "-b", f"127.0.0.1:{port}",
                               "--workers", str(clients), "--threads", "2", "--timeout", "600"],
                              cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(f"http://127.0.0.1:{port}/dicomweb/studies", headers={"Authorization": f"Token {token}"})
        yield f"http://127.0.0.1:{port}/dicomweb/studies"
    finally:
        server.terminate()
        server.wait(30)


def import_rate(env: dict[str, str], series_dir: Path, count: int) -> float:
    summary = manage(env, "import_dicom", str(series_dir))
    stored, seconds = re.match(r"(\d+) stored.* in ([\d.]+) s", summary).groups()
    assert int(stored) == count, summary
    return count / float(seconds)


def cstore_rate(port: int, called_ae: str, paths: list[Path]) -> float:
    """Instances per second for the whole series, C-STOREd over one association by pynetdicom (AE BENCH)."""
    from pydicom import dcmread
    from pynetdicom import AE

    datasets = [dcmread(p) for p in paths]
    ae = AE(ae_title="BENCH")
    for sop_class in {ds.SOPClassUID for ds in datasets}:
        ae.add_requested_context(sop_class, [datasets[0].file_meta.TransferSyntaxUID])
    started = time.perf_counter()
    assoc = ae.associate("127.0.0.1", port, ae_title=called_ae)
    if not assoc.is_established:
        raise RuntimeError(f"{called_ae} on port {port} refused the association")
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            if not status or status.Status != 0:
                raise RuntimeError(f"C-STORE to {called_ae} answered {status}")
    finally:
        assoc.release()
    return len(paths) / (time.perf_counter() - started)


def wait_for_port(port: int, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f} s")


@contextmanager
def lungscope_listener(env: dict[str, str]) -> Iterator[int]:
    """``manage.py dicom_listener`` (AE LUNGSCOPE) with BENCH on its allow-list; yields its port."""
    manage(env, "dicom_peer", "add", "--ae-title", "BENCH")
    port = free_port()
    listener = subprocess.Popen([PYTHON, "manage.py", "dicom_listener", "--host", "127.0.0.1", "--port", str(port)],
                                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield port
    finally:
        listener.terminate()
        listener.wait(30)


def orthanc_rates(var: Path, files: list[bytes], paths: list[Path], clients: int) -> dict[str, float]:
    """Into a fresh Orthanc (new storage and index): its STOW-RS rate, then (its archive emptied) its C-STORE SCP's
    rate with the same series; empty when Orthanc is not installed."""
    if not (ORTHANC and ORTHANC_DICOMWEB_PLUGIN.exists()):
        return {}
    port, dicom_port = free_port(), free_port()
    root = Path(tempfile.mkdtemp(dir=var, prefix="orthanc-"))
    config = root / "orthanc.json"
    config.write_text(json.dumps({
        "Name": "bench", "StorageDirectory": str(root / "storage"), "IndexDirectory": str(root / "index"),
        "HttpPort": port, "DicomServerEnabled": True, "DicomPort": dicom_port, "DicomAet": "ORTHANC",
        "DicomAlwaysAllowStore": True, "DicomCheckCalledAet": False, "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "HttpsCACertificates": "", "Plugins": [str(ORTHANC_DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }))
    server = subprocess.Popen([ORTHANC, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(f"http://127.0.0.1:{port}/system")
        stow = stow_rate(f"http://127.0.0.1:{port}/dicom-web/studies", files, clients, {})
        stored = requests.get(f"http://127.0.0.1:{port}/statistics", timeout=10).json()["CountInstances"]
        assert stored == len(files), stored
        for study in requests.get(f"http://127.0.0.1:{port}/studies", timeout=10).json():
            requests.delete(f"http://127.0.0.1:{port}/studies/{study}", timeout=60).raise_for_status()
        cstore = cstore_rate(dicom_port, "ORTHANC", paths)
        stored = requests.get(f"http://127.0.0.1:{port}/statistics", timeout=10).json()["CountInstances"]
        assert stored == len(files), stored
        return {"orthanc_stow_instances_per_s": stow, "orthanc_cstore_instances_per_s": cstore}
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=128)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of lungscope and Orthanc STOW-RS and C-STORE and import_dicom, interleaved, so a "
                             "shared machine's load hits both sides alike; medians are reported")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/lungscope_bench")
    parser.add_argument("--series", type=Path, help="a real DICOM series folder, sent as stored, instead of the phantom")
    args = parser.parse_args()
    rounds = []
    with tempfile.TemporaryDirectory(prefix="lungscope-bench-ingest-") as tmp:
        var = Path(tmp)
        paths = write_series(var / "series", args.slices, args.size, args.series)
        files = [p.read_bytes() for p in paths]
        env, token = lungscope_env(var, args.database_url)
        with lungscope_server(env, var, args.clients, token) as url, lungscope_listener(env) as dicom_port:
            # A first request per worker (and a first association) opens its database connection and warms
            # imports: not part of the rate.
            stow_rate(url, files[:2 * args.clients], args.clients, {"Authorization": f"Token {token}"})
            clear_archive(env, var)  # C-STORE re-encodes the file meta: the same instances would be conflicts
            cstore_rate(dicom_port, "LUNGSCOPE", paths[:2])
            for number in range(1, args.rounds + 1):
                clear_archive(env, var)
                figures = {"load_average_1min": os.getloadavg()[0],
                           "stow_instances_per_s": stow_rate(url, files, args.clients,
                                                             {"Authorization": f"Token {token}"})}
                figures.update(orthanc_rates(var, files, paths, args.clients))
                clear_archive(env, var)
                figures["cstore_instances_per_s"] = cstore_rate(dicom_port, "LUNGSCOPE", paths)
                clear_archive(env, var)
                figures["import_dicom_instances_per_s"] = import_rate(env, var / "series", len(files))
                if figures.get("orthanc_stow_instances_per_s"):
                    figures["stow_ratio_lungscope_to_orthanc"] = (figures["stow_instances_per_s"]
                                                                  / figures["orthanc_stow_instances_per_s"])
                    figures["import_ratio_lungscope_to_orthanc_stow"] = (figures["import_dicom_instances_per_s"]
                                                                         / figures["orthanc_stow_instances_per_s"])
                    figures["cstore_ratio_lungscope_to_orthanc"] = (figures["cstore_instances_per_s"]
                                                                    / figures["orthanc_cstore_instances_per_s"])
                rounds.append(figures)
                print(f"round {number}: " + ", ".join(f"{key} {value:.2f}" for key, value in figures.items()
                                                      if value is not None), flush=True)
    summary = {"slices": len(paths), "size": args.size, "series": str(args.series) if args.series else None,
               "clients": args.clients, "cpus": os.cpu_count(),
               "database": env["DATABASE_URL"].split(":")[0], "rounds": rounds}
    for key in rounds[0]:
        values = [r[key] for r in rounds if r.get(key) is not None]
        if values:
            summary[f"median_{key}"] = statistics.median(values)
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "ingest.json").write_text(json.dumps(summary, indent=2))
    for key, value in summary.items():
        if key != "rounds":
            print(f"{key:46s} {value:.2f}" if isinstance(value, float) else f"{key:46s} {value}")


if __name__ == "__main__":
    main()

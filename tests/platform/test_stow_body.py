"""STOW-RS request bodies at the edges: no parts at all, and chunked bodies (no Content-Length).

gunicorn (production: Dockerfile, docker-compose, ``make demo``) de-chunks a ``Transfer-Encoding: chunked`` body and
marks its input terminated (``wsgi.input_terminated``), so STOW reads it, counting bytes against
``LUNGSCOPE_MAX_UPLOAD_BYTES``. Django's own server (runserver, the ``live_server`` fixture) hands the view an empty
body for such a request, so there it is refused with a 400 that says why.
"""
from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
import requests
from platform_helpers import as_new_study, assert_no_orphans

from webapp.studies.dicomweb.stow import BodyLimitExceeded, CappedReader
from webapp.studies.models import Instance

DICOM_MULTIPART = 'multipart/related; type="application/dicom"'
REPO = Path(__file__).resolve().parents[2]


def multipart(files: list[bytes], boundary: str) -> bytes:
    return b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"
                    for data in files) + f"--{boundary}--\r\n".encode()


def chunks(data: bytes, size: int = 4096) -> Iterator[bytes]:
    """A generator body: ``requests`` sends it with Transfer-Encoding: chunked and no Content-Length."""
    for start in range(0, len(data), size):
        yield data[start:start + size]


def chunked_stow(url: str, token: str, files: list[bytes]) -> requests.Response:
    boundary = uuid.uuid4().hex
    return requests.post(url, data=chunks(multipart(files, boundary)), timeout=60, headers={
        "Authorization": f"Token {token}", "Content-Type": f"{DICOM_MULTIPART}; boundary={boundary}",
        "Accept": "application/dicom+json"})


def test_capped_reader_delivers_up_to_the_limit_and_refuses_only_what_lies_beyond():
    exact = CappedReader(io.BytesIO(b"x" * 10), limit=10)
    assert exact.read(4) + exact.read(64) == b"x" * 10 and exact.read(64) == b""
    over = CappedReader(io.BytesIO(b"x" * 11), limit=10)
    assert over.read(64) == b"x" * 10
    with pytest.raises(BodyLimitExceeded, match="10-byte limit"):
        over.read(64)


@pytest.mark.django_db
def test_a_body_without_parts_is_400_and_stores_nothing(api, storage_dir):
    boundary = "empty0boundary"
    response = api.generic("POST", "/dicomweb/studies", multipart([], boundary),
                           content_type=f"{DICOM_MULTIPART}; boundary={boundary}")
    assert response.status_code == 400, response.content
    assert "no parts" in response.json()["detail"]
    assert not Instance.objects.exists()


def test_chunked_stow_on_djangos_own_server_is_400_saying_why(live_server, token, storage_dir, phantom_files):
    response = chunked_stow(f"{live_server.url}/dicomweb/studies", token, [phantom_files[0].read_bytes()])
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "chunked" in detail and "Content-Length" in detail
    assert not Instance.objects.exists()


# -- through gunicorn, as deployed -------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def gunicorn(transactional_db, settings, storage_dir, tmp_path):
    """A gunicorn server (one gthread worker, as deployed) on this test's database and storage; the factory's
    keyword arguments become its environment (e.g. a small LUNGSCOPE_MAX_UPLOAD_BYTES)."""
    from django.db import connection

    db = connection.settings_dict
    url = f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    servers: list[subprocess.Popen] = []

    def start(**extra_env: str) -> str:
        port = free_port()
        log_path = tmp_path / f"gunicorn{len(servers)}.log"
        log = open(log_path, "wb")
        env = {**os.environ, "DATABASE_URL": url, "LUNGSCOPE_STORAGE_DIR": str(settings.MEDIA_ROOT),
               "CELERY_BROKER_URL": settings.CELERY_BROKER_URL, "LUNGSCOPE_ANALYZE_ON_INGEST": "false",
               **extra_env}
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "webapp.wsgi", "-b", f"127.0.0.1:{port}",
                                 "--workers", "1", "--threads", "2", "--timeout", "120"],
                                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        servers.append(proc)
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 90
        while time.time() < deadline:
            if proc.poll() is not None:
                break
            try:
                requests.get(f"{base}/api/me/", timeout=30)  # the first request loads the URL conf
                return base
            except requests.ConnectionError:
                time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not start:\n{log_path.read_text(errors='replace')}")

    start.servers = servers  # for tests that kill a server
    yield start
    for proc in servers:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


def test_chunked_stow_through_gunicorn_stores_every_part(gunicorn, token, storage_dir, phantom_files):
    base = gunicorn()
    files = as_new_study(phantom_files[:3])
    response = chunked_stow(f"{base}/dicomweb/studies", token, files)
    assert response.status_code == 200, response.text
    assert len(response.json()["00081199"]["Value"]) == 3
    assert Instance.objects.count() == 3
    assert_no_orphans(storage_dir)


def test_chunked_stow_past_the_size_limit_stops_reading_at_the_limit(gunicorn, token, storage_dir, phantom_files):
    files = as_new_study(phantom_files[:6])
    limit = sum(map(len, files[:2])) + 2048  # room for two parts and their headers, not for the third
    base = gunicorn(LUNGSCOPE_MAX_UPLOAD_BYTES=str(limit))

    response = chunked_stow(f"{base}/dicomweb/studies", token, files)
    assert response.status_code == 202, response.text  # the parts before the limit landed, the rest was not read
    body = response.json()
    assert len(body["00081199"]["Value"]) == 2
    (failed,) = body["00081198"]["Value"]
    assert "limit" in failed["00000902"]["Value"][0]
    assert Instance.objects.count() == 2
    assert_no_orphans(storage_dir)

    too_big = chunked_stow(f"{base}/dicomweb/studies", token, [files[0] + b"\0" * limit])  # one part over it
    assert too_big.status_code == 413, too_big.text
    assert Instance.objects.count() == 2
    assert_no_orphans(storage_dir)


# -- who sends it and how: session or token, Content-Length or chunked, through gunicorn -------------------------

def signed_in(base: str, username: str, password: str) -> requests.Session:
    """A browser's session: the login form with its CSRF token, then the token in X-CSRFToken on writes."""
    session = requests.Session()
    form = session.get(f"{base}/accounts/login/", timeout=30)
    token = session.cookies["csrftoken"]
    assert form.status_code == 200
    done = session.post(f"{base}/accounts/login/", timeout=30, allow_redirects=False, data={
        "username": username, "password": password, "csrfmiddlewaretoken": token})
    assert done.status_code == 302, done.text[:500]
    session.headers["X-CSRFToken"] = session.cookies["csrftoken"]
    return session


def test_stow_with_session_or_token_with_or_without_content_length(gunicorn, clinician, token, storage_dir,
                                                                   phantom_files):
    """Every way a client sends STOW-RS stores the valid files, and a truncated file is one failed instance
    (FailedSOPSequence, 202), not a refusal of the whole request."""
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    # The server checks passwords with the production hashers, not this suite's fast one.
    clinician.password = PBKDF2PasswordHasher().encode("clinician-pw", PBKDF2PasswordHasher().salt())
    clinician.save(update_fields=["password"])
    base = gunicorn()
    by_session = signed_in(base, "clinician", "clinician-pw")
    by_token = requests.Session()
    by_token.headers["Authorization"] = f"Token {token}"
    stored = 0
    for who, client in (("session", by_session), ("token", by_token)):
        for framing in ("content-length", "chunked"):
            valid = as_new_study(phantom_files[:2])
            truncated = as_new_study(phantom_files[2:3])[0]
            truncated = truncated[:len(truncated) - 1000]  # the pixel data ends short
            boundary = uuid.uuid4().hex
            body = multipart([*valid, truncated], boundary)
            response = client.post(f"{base}/dicomweb/studies", timeout=60,
                                   data=body if framing == "content-length" else chunks(body),
                                   headers={"Content-Type": f"{DICOM_MULTIPART}; boundary={boundary}",
                                            "Accept": "application/dicom+json"})
            assert response.status_code == 202, (who, framing, response.status_code, response.text[:500])
            answer = response.json()
            assert len(answer["00081199"]["Value"]) == 2, (who, framing)
            (failed,) = answer["00081198"]["Value"]
            comment = failed["00000902"]["Value"][0]
            assert comment.startswith("part 3:") and failed["00081197"]["Value"] == [0xC000], (who, framing, failed)
            cut = pydicom.dcmread(io.BytesIO(truncated), stop_before_pixels=True)
            assert failed["00081155"]["Value"] == [cut.SOPInstanceUID]  # which instance failed
            assert failed["00081150"]["Value"] == [cut.SOPClassUID]
            stored += 2
            assert Instance.objects.count() == stored, (who, framing)
    assert_no_orphans(storage_dir)

    without_csrf = requests.Session()
    without_csrf.cookies.update(by_session.cookies)
    boundary = uuid.uuid4().hex
    refused = without_csrf.post(f"{base}/dicomweb/studies", data=multipart(as_new_study(phantom_files[:1]), boundary),
                                headers={"Content-Type": f"{DICOM_MULTIPART}; boundary={boundary}"}, timeout=60)
    assert refused.status_code == 403 and "CSRF" in refused.text  # the session still needs its CSRF token
    assert Instance.objects.count() == stored
def test_a_server_killed_mid_request_leaves_whole_instances_or_none(gunicorn, token, storage_dir, tmp_path):
    """SIGKILL the server while a STOW body is still arriving: the rows of the first FLUSH_EVERY parts were committed
    together and are whole (their files hold the bytes sent); the parts after them, written to storage but not yet
    committed, left no row. Sending the body again stores exactly the missing instances, whole."""
    import hashlib
    import threading

    from training.phantom import generate_study, write_dicom_series
    from webapp.studies.ingest import FLUSH_EVERY

    # 256 px slices (~130 KB): the server reads the body a MiB at a time, so the parts must outweigh a read
    series = write_dicom_series(generate_study(7, "COVID", size=256, n_slices=8), tmp_path / "series")
    files = [data for _ in range(FLUSH_EVERY // len(series) + 2) for data in as_new_study(series)]
    assert len(files) > FLUSH_EVERY + 8
    sent = {hashlib.sha256(data).hexdigest() for data in files}
    base = gunicorn()
    boundary = uuid.uuid4().hex
    body = multipart(files, boundary)
    cut = len(body) - len(f"--{boundary}--\r\n")  # every part sent, the closing delimiter held back
    release = threading.Event()

    def stalled_body() -> Iterator[bytes]:
        yield from chunks(body[:cut], 256 * 1024)
        release.wait(300)  # until the server is killed
        yield from chunks(body[cut:])

    def post() -> None:
        try:
            requests.post(f"{base}/dicomweb/studies", data=stalled_body(), timeout=300, headers={
                "Authorization": f"Token {token}", "Content-Type": f"{DICOM_MULTIPART}; boundary={boundary}"})
        except requests.RequestException:
            pass  # the server is gone

    def files_now() -> int:
        return len(list(storage_dir.rglob("*.dcm")))

    client = threading.Thread(target=post)
    client.start()
    deadline = time.time() + 180
    while Instance.objects.count() < FLUSH_EVERY and time.time() < deadline:
        time.sleep(0.2)
    seen, steady_since = files_now(), time.time()
    while time.time() - steady_since < 3 and time.time() < deadline:  # the parts after the flush reach storage
        time.sleep(0.2)
        if files_now() != seen:
            seen, steady_since = files_now(), time.time()
    os.killpg(gunicorn.servers[0].pid, signal.SIGKILL)
    gunicorn.servers[0].wait(30)
    release.set()
    client.join(60)
    assert files_now() > FLUSH_EVERY, "some parts after the flush were written before the kill"

    def assert_whole() -> None:
        for instance in Instance.objects.all():
            data = (storage_dir / instance.file.name).read_bytes()
            assert hashlib.sha256(data).hexdigest() == instance.sha256 and instance.sha256 in sent

    assert Instance.objects.count() == FLUSH_EVERY, "the committed flush stays, nothing after it has a row"
    assert_whole()
    response = chunked_stow(f"{gunicorn()}/dicomweb/studies", token, files)
    assert response.status_code == 200, response.text
    assert Instance.objects.count() == len(files)
    assert set(Instance.objects.values_list("sha256", flat=True)) == sent
    assert_whole()

    from django.core.management import call_command

    orphans = len(list(storage_dir.rglob("*.dcm"))) - len(files)
    assert orphans > 0, "the killed request's uncommitted files are still there"
    out = io.StringIO()
    call_command("sweep_orphans", stdout=out)  # by default only files an hour old: a delivery may be in progress
    assert "0 orphan file(s) deleted" in out.getvalue()
    out = io.StringIO()
    call_command("sweep_orphans", "--older-than", "0", stdout=out)
    assert f"{orphans} orphan file(s) deleted" in out.getvalue()
    assert_no_orphans(storage_dir)
    assert_whole()

"""Browser tests: Debian's chromium driven by Playwright against pytest-django's live server.

Each test gets phantom studies ingested like uploads and analysed in-process by a tiny random model (the tests
check the UI's plumbing, not accuracy), users with roles, and a fresh browser context. Chromium renders WebGL2 in
software (SwiftShader). The built frontend must exist (``make frontend``); without chromium the tests skip.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2e_helpers import PASSWORD, REPO, SIZE, SLICES
from factories import ingest_phantom, make_tiny_bundle

# Playwright's sync API keeps an event loop on this thread; the ORM calls between browser steps are still sync.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (scripts/ensure_services.sh installs it)")
    if not (REPO / "webapp/static/viewer/viewer.js").exists():
        pytest.fail("the frontend is not built: run `make frontend`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.errors = []  # uncaught page errors, asserted empty by the tests that care
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    yield page
    context.close()


@pytest.fixture(scope="session")
def tiny_bundle_dir(tmp_path_factory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("bundle") / "tiny")


@dataclass
class World:
    url: str
    studies: list
    users: dict


def make_users() -> dict:
    from django.contrib.auth import get_user_model

    from webapp.accounts.roles import ANNOTATOR, CLINICIAN, assign_role

    users = {}
    for name, role in (("clin", CLINICIAN), ("anno", ANNOTATOR)):
        user = get_user_model().objects.create_user(name, password=PASSWORD)
        assign_role(user, role)
        users[name] = user
    return users


def analysed_phantom(tmp_path: Path, seed: int, label: str, slices: int = SLICES, size: int = SIZE):
    """A phantom ingested file by file like an upload, then analysed in this process."""
    from webapp.analysis.tasks import enqueue_analysis
    from webapp.celery import app

    study = ingest_phantom(tmp_path, label, seed, n_slices=slices, size=size)
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        enqueue_analysis(study)
    finally:
        app.conf.task_always_eager = eager
    study.refresh_from_db()
    return study


@pytest.fixture
def world(live_server, transactional_db, storage_dir, tmp_path, settings, tiny_bundle_dir) -> World:
    settings.LUNGSCOPE_MODEL = str(tiny_bundle_dir)
    settings.LUNGSCOPE_SALIENCY = "none"  # maps are computed when the viewer asks (saliency for all slices is slow)
    studies = [analysed_phantom(tmp_path, 11, "COVID"), analysed_phantom(tmp_path, 12, "NP")]
    return World(url=live_server.url, studies=studies, users=make_users())


@pytest.fixture
def bare_world(live_server, transactional_db, storage_dir, settings, tiny_bundle_dir) -> World:
    """Users and a live server with no studies yet, the tiny model configured (for studies uploaded in the test)."""
    settings.LUNGSCOPE_MODEL = str(tiny_bundle_dir)
    settings.LUNGSCOPE_SALIENCY = "none"
    return World(url=live_server.url, studies=[], users=make_users())

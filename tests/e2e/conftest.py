"""Browser tests: Debian's chromium driven by Playwright against pytest-django's live server.

Each test gets phantom studies ingested like uploads and analysed in-process by the shipped model
(``models/default``, trained on phantoms), users with roles, and a fresh browser context, so what the tests click
through and the README's screenshots show are the real model's labels, heatmaps and boxes. The phantoms are the
size the model was trained on (256 px x 40 slices), written to DICOM once per session. Chromium renders WebGL2 in
software (SwiftShader). The built frontend must exist (``make frontend``); without chromium the tests skip.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from e2e_helpers import MODEL, PASSWORD, REPO, SIZE, SLICES, ingested_study

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
def page(browser, transactional_db, storage_dir):
    """A fresh browser context. It depends on the database and the storage so that it closes before they are torn
    down: otherwise the viewer's prefetch could still ask the live server for files of a study already gone."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.errors = []  # uncaught page errors, asserted empty by the tests that care
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    yield page
    context.close()


#: (seed, label) of the world's studies: a COVID-19 phantom and a healthy one. The tests assume no label for either
#: (the shipped model's calls change with its version: 3.0.0 says COVID-19 0.62 and NP 0.89; 2.2.0 and 2.3.0 called
#: both NP); they read the model's boxes, maps and probabilities as stored.
PHANTOMS = ((11, "COVID"), (18, "NP"))


@pytest.fixture(scope="session")
def phantom_files(tmp_path_factory) -> dict:
    """{(seed, label): (PhantomStudy, its DICOM files)}, generated and written once for the session."""
    from training.phantom import generate_study, write_dicom_series

    out = {}
    for seed, label in PHANTOMS:
        phantom = generate_study(seed, label, n_slices=SLICES, size=SIZE)
        out[seed, label] = phantom, write_dicom_series(phantom, tmp_path_factory.mktemp(f"dicom-{seed}"))
    return out


@dataclass
class World:
    url: str
    studies: list
    users: dict
    phantoms: list = field(default_factory=list)  # each study's PhantomStudy: its ground truth (lesions, boxes)


def make_users() -> dict:
    from django.contrib.auth import get_user_model

    from webapp.accounts.roles import ANNOTATOR, CLINICIAN, assign_role

    users = {}
    for name, role in (("clin", CLINICIAN), ("anno", ANNOTATOR)):
        user = get_user_model().objects.create_user(name, password=PASSWORD)
        assign_role(user, role)
        users[name] = user
    return users


def analysed_study(files: list[Path], label: str):
    """A phantom ingested file by file like an upload, then analysed in this process."""
    from webapp.analysis.tasks import enqueue_analysis
    from webapp.celery import app

    study = ingested_study(files, label)
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        enqueue_analysis(study)
    finally:
        app.conf.task_always_eager = eager
    study.refresh_from_db()
    assert study.analysis_runs.get().status == "succeeded", study.analysis_runs.get().error
    return study


def make_world(url: str, settings, phantom_files: dict, saliency: str) -> World:
    settings.LUNGSCOPE_MODEL = MODEL
    settings.LUNGSCOPE_SALIENCY = saliency
    phantoms = [phantom_files[key][0] for key in PHANTOMS]
    studies = [analysed_study(phantom_files[key][1], key[1]) for key in PHANTOMS]
    return World(url=url, studies=studies, users=make_users(), phantoms=phantoms)


@pytest.fixture
def world(live_server, transactional_db, storage_dir, settings, phantom_files) -> World:
    """A COVID and an NP phantom analysed as in production (saliency ``positive``): the slices the model calls
    diseased have their maps stored and its lesion boxes proposed; other slices' maps are computed when asked."""
    return make_world(live_server.url, settings, phantom_files, "positive")


@pytest.fixture
def plain_world(live_server, transactional_db, storage_dir, settings, phantom_files) -> World:
    """The same studies analysed without saliency: labels and slice probabilities, no AI boxes (for tests that place
    their own boxes), every map computed when the viewer asks."""
    return make_world(live_server.url, settings, phantom_files, "none")


@pytest.fixture
def bare_world(live_server, transactional_db, storage_dir, settings) -> World:
    """Users and a live server with no studies yet, the default model configured (for studies uploaded in the test)."""
    settings.LUNGSCOPE_MODEL = MODEL
    settings.LUNGSCOPE_SALIENCY = "none"
    return World(url=live_server.url, studies=[], users=make_users())

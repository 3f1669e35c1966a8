"""The header navigation by role and the admin pages (curation, model registry) in a real browser: their actions
work, and when the server refuses one (a promote, a rollback, a cancel, an export) the page says why."""
from __future__ import annotations

import pytest

from e2e_helpers import PASSWORD, login, save_screenshot

pytestmark = pytest.mark.e2e

EVERYONE = ["Worklist", "API docs"]
ADMIN_LINKS = ["Worklist", "Curation", "Model registry", "Django admin", "API docs"]


def make_admin(name: str = "boss"):
    from django.contrib.auth import get_user_model

    from webapp.accounts.roles import ADMIN, assign_role

    user = get_user_model().objects.create_user(name, password=PASSWORD, is_staff=True)
    assign_role(user, ADMIN)
    return user


def nav_texts(page) -> list[str]:
    return page.locator("header nav.site-nav a").all_inner_texts()


def error_of(page, selector: str) -> str:
    """The text of an action's status line once it shows an error."""
    page.wait_for_selector(f"{selector}.error")
    return page.inner_text(selector)


def test_header_navigation_follows_the_role(page, bare_world):
    world = bare_world
    make_admin()
    for name in ("clin", "anno"):
        login(page, world, name)
        assert nav_texts(page) == EVERYONE
        assert page.get_attribute("header nav a[aria-current=page]", "href") == "/"
        assert page.request.get(f"{world.url}/curation/").status == 403  # the page is refused, not only unlinked
        page.click("header button:has-text('Sign out')")
    login(page, world, "boss")
    assert nav_texts(page) == ADMIN_LINKS
    hrefs = page.eval_on_selector_all("header nav a", "links => links.map((a) => a.getAttribute('href'))")
    assert hrefs == ["/", "/curation/", "/registry/", "/admin/", "/api/docs/"]
    page.click("header nav a:has-text('Curation')")
    page.wait_for_selector("body[data-loaded=true]")
    assert page.inner_text("header nav a[aria-current=page]") == "Curation"
    page.click("header nav a:has-text('Model registry')")
    page.wait_for_selector("body[data-loaded=true]")
    assert page.inner_text("header nav a[aria-current=page]") == "Model registry"
    page.click("header nav a:has-text('Django admin')")
    page.wait_for_selector("#site-name")  # Django's admin index, signed in as this staff user
    assert not page.errors, page.errors


def test_curation_page_creates_versions_and_exports_and_shows_refused_exports(page, bare_world):
    world = bare_world
    from webapp.curation.models import DatasetVersion, Export

    make_admin()
    kept = DatasetVersion.objects.create(name="kept", summary={"studies": 3, "per_class": {"covid": 2, "np": 1}},
                                         fingerprint="a" * 64)
    doomed = DatasetVersion.objects.create(name="doomed", summary={"studies": 1}, fingerprint="b" * 64)
    login(page, world, "boss")
    page.goto(f"{world.url}/curation/")
    page.wait_for_selector("body[data-loaded=true]")
    assert page.locator("#versions tr[data-version-id]").count() == 2
    kept_text = page.inner_text(f"#versions tr[data-version-id='{kept.pk}']")
    assert "covid 2" in kept_text and "np 1" in kept_text

    # An export of a version that exists: queued, listed with its job.
    row = page.locator(f"#versions tr[data-version-id='{kept.pk}']")
    row.locator("button[data-format=csv]").click()
    page.wait_for_selector("#export-result.ok")
    export = Export.objects.get(dataset_version=kept)
    assert (export.format, export.deidentify) == ("csv", True)
    page.wait_for_selector(f"#exports tr[data-export-id='{export.pk}']")

    # A version removed meanwhile (another admin): the export is refused and the page says why.
    doomed_pk = doomed.pk
    doomed.delete()
    page.locator(f"#versions tr[data-version-id='{doomed_pk}'] button[data-format=coco]").click()
    message = error_of(page, "#export-result")
    assert message.startswith(f"Export coco of version {doomed_pk} failed: dataset_version")
    assert "does not exist" in message
    page.wait_for_selector(f".toast-error:has-text('Export coco of version {doomed_pk} failed')")
    assert Export.objects.count() == 1
    page.locator(f"#versions tr[data-version-id='{doomed_pk}']").wait_for(state="detached")  # the list is refreshed

    # Creating a version with a bad date is refused with the field's message.
    page.fill("#create input[name=name]", "bad dates")
    page.evaluate("document.querySelector('#create').noValidate = true")  # past the browser's own pattern check
    page.fill("#create input[name=study_date_from]", "2020")
    page.click("#create button[type=submit]")
    assert "study_date_from" in error_of(page, "#create-result")
    assert not DatasetVersion.objects.filter(name="bad dates").exists()
    save_screenshot(page, "curation.png")
    assert not page.errors, page.errors


def test_registry_page_promotes_and_rolls_back_and_shows_refused_actions(page, bare_world):
    world = bare_world
    from webapp.curation.models import DatasetVersion
    from webapp.registry import services
    from webapp.registry.models import ModelVersion, TrainingRun

    make_admin()
    shipped = services.ensure_default_model_version()
    assert shipped is not None and shipped.is_active
    trained = ModelVersion.objects.create(name="retrained", version="2", bundle_path=shipped.bundle_path,
                                          sha256="f" * 64, classes=shipped.classes, source="trained")
    gone = ModelVersion.objects.create(name="withdrawn", version="3", bundle_path=shipped.bundle_path,
                                       sha256="e" * 64, classes=shipped.classes, source="trained")
    dataset = DatasetVersion.objects.create(name="set", summary={"studies": 4}, fingerprint="c" * 64)
    run = TrainingRun.objects.create(dataset_version=dataset, config={"task": "3way"}, status="running",
                                     iteration=10, total_iterations=100)
    login(page, world, "boss")
    page.goto(f"{world.url}/registry/")
    page.wait_for_selector("body[data-loaded=true]")

    # Nothing to roll back to yet: refused (409), and said.
    page.click("#rollback")
    assert "no earlier active version" in error_of(page, "#versions-result")

    # Promote asks first; Cancel keeps everything as it was, Confirm promotes.
    version_row = lambda v: page.locator(f"#versions tr[data-version-id='{v.pk}']")  # noqa: E731
    version_row(trained).locator("button[data-action=promote]").click()
    page.click("dialog.confirm-dialog button[data-action=cancel]")
    trained.refresh_from_db()
    assert not trained.is_active
    version_row(trained).locator("button[data-action=promote]").click()
    page.click("dialog.confirm-dialog button[data-action=confirm]")
    page.wait_for_selector(f"#versions tr.active[data-version-id='{trained.pk}']")
    trained.refresh_from_db()
    assert trained.is_active

    # Rollback now works and the shipped version is active again.
    page.click("#rollback")
    page.wait_for_selector(f"#versions-result.ok:has-text('active: {shipped.name} {shipped.version}')")
    page.wait_for_selector(f"#versions tr.active[data-version-id='{shipped.pk}']")

    # A version withdrawn meanwhile: its promote is refused (404) and said; nothing changes.
    ModelVersion.objects.filter(pk=gone.pk).delete()
    version_row(gone).locator("button[data-action=promote]").click()
    page.click("dialog.confirm-dialog button[data-action=confirm]")
    assert error_of(page, "#versions-result").startswith("Promote withdrawn 3 failed: ")
    assert ModelVersion.objects.get(is_active=True) == shipped

    # A run that ended meanwhile: its cancel is refused (409) and said.
    TrainingRun.objects.filter(pk=run.pk).update(status="succeeded")
    page.locator(f"#runs tr[data-run-id='{run.pk}'] button[data-action=cancel]").click()
    message = error_of(page, "#runs-result")
    assert message == f"Cancel run {run.pk} failed: training run {run.pk} has already ended (succeeded)"
    page.wait_for_selector(f".toast-error:has-text('Cancel run {run.pk} failed')")
    save_screenshot(page, "registry.png")
    assert not page.errors, page.errors

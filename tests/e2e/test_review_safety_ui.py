"""The viewer's clinical safety in a real browser: confirming the AI diagnosis takes a dialog, single-key shortcuts
can be switched off (and stay off), the help is a focus-trapping dialog, opening a study does not start its review,
and "next case" follows the worklist the clinician came from."""
from __future__ import annotations

import pytest

from e2e_helpers import login, open_viewer, wait_rendered
from factories import wait_until

pytestmark = pytest.mark.e2e

#: How the viewer names each class of the model (the AI run's label); a decision stores it in lower case.
DISPLAY = {"COVID": "COVID-19", "CAP": "CAP", "NP": "NP"}


def focus_in(page, selector: str) -> bool:
    return page.evaluate("(s) => document.querySelector(s).contains(document.activeElement)", selector)


def test_confirming_the_ai_takes_a_dialog_and_single_key_shortcuts_can_be_switched_off(page, plain_world):
    world = plain_world
    from webapp.review.models import Decision

    study = world.studies[0]  # the COVID phantom; the dialog names whatever label the model gave it
    ai_label = study.analysis_runs.get().label
    shown = DISPLAY[ai_label]
    login(page, world, "clin")
    open_viewer(page, world, study)
    study.refresh_from_db()
    assert study.status == "ai_done", "opening a study must not start its review"
    assert page.inner_text("#study-header .study-status") == "AI done"

    # `c` only asks: the dialog names the diagnosis; Escape leaves nothing saved, but the review has begun.
    page.focus("#ct-viewport")
    page.keyboard.press("c")
    dialog = page.locator("dialog.confirm-dialog[open]")
    dialog.wait_for()
    assert shown in dialog.inner_text()
    assert focus_in(page, "dialog.confirm-dialog"), "the dialog does not hold the focus"
    page.keyboard.press("c")  # a second stray `c` does nothing either
    page.keyboard.press("Escape")
    dialog.wait_for(state="detached")
    assert not Decision.objects.filter(study=study).exists(), "a diagnosis was saved without confirmation"
    wait_until(lambda: study.refresh_from_db() or study.status == "in_review", 10, what="the review started")
    page.wait_for_selector("#study-header .study-status[data-status=in_review]")

    # `c` then Enter (the dialog's Confirm button) saves it.
    page.focus("#ct-viewport")
    page.keyboard.press("c")
    dialog.wait_for()
    page.keyboard.press("Enter")
    page.wait_for_selector(f".toast-success:has-text('Decision saved: {shown}')")
    decision = Decision.objects.get(study=study)
    assert (decision.label, decision.decided_by.username) == (ai_label.lower(), "clin")

    # The help is a modal dialog: Tab and Shift+Tab stay inside it; Escape closes it and focus goes back.
    page.focus("#ct-viewport")
    page.keyboard.press("?")
    help_dialog = page.locator("#help-dialog[open]")
    help_dialog.wait_for()
    assert help_dialog.get_attribute("aria-labelledby")
    for key in ["Tab"] * 6 + ["Shift+Tab"] * 9:
        page.keyboard.press(key)
        assert focus_in(page, "#help-dialog"), f"focus left the help dialog after {key}"
    page.keyboard.press("Escape")
    help_dialog.wait_for(state="hidden")
    assert page.evaluate("document.activeElement.id") == "ct-viewport"

    # Switch single-key shortcuts off in the help; after a reload they are still off, the navigation keys still work.
    page.click("#help-button")
    help_dialog.wait_for()
    page.uncheck("#help-dialog input[name=single-key-shortcuts]")
    assert "(off)" in page.inner_text("#help-dialog")
    page.click("#help-dialog button:has-text('Close')")
    page.reload()
    page.wait_for_selector("#viewer-app[data-ready=true]", timeout=30_000)
    wait_rendered(page)
    page.focus("#ct-viewport")
    before, wl_before = page.inner_text("#slice-info"), page.inner_text("#wl-info")
    for key in ("c", "?", "3", "n"):
        page.keyboard.press(key)
    page.wait_for_timeout(300)
    assert page.locator("dialog[open]").count() == 0, "a single-key shortcut acted while switched off"
    assert page.inner_text("#slice-info") == before
    assert page.inner_text("#wl-info") == wl_before, "`3` applied the bone preset while switched off"
    page.keyboard.press("ArrowDown")
    page.wait_for_function(f"() => document.querySelector('#slice-info').textContent !== {before!r}")
    page.click("#help-button")
    assert not page.is_checked("#help-dialog input[name=single-key-shortcuts]"), "the setting did not persist"
    page.check("#help-dialog input[name=single-key-shortcuts]")
    page.keyboard.press("Escape")
    page.focus("#ct-viewport")
    page.keyboard.press("?")
    help_dialog.wait_for()
    assert not page.errors, page.errors


def test_next_case_follows_the_worklist_filters_and_sort(page, plain_world):
    world = plain_world
    covid, np_study = world.studies
    query = f"search={np_study.accession_number}&ordering=ai_probability"  # a filter only the NP phantom passes
    assert np_study.accession_number and np_study.accession_number != covid.accession_number
    login(page, world, "clin")
    page.goto(f"{world.url}/?{query}")
    page.wait_for_selector("body[data-loaded=true]")
    assert page.locator("tr.study-row").count() == 1  # the NP phantom only
    page.locator(f"tr[data-study-id='{np_study.pk}'] td.patient a").click()
    page.wait_for_selector("#viewer-app[data-ready=true]", timeout=30_000)
    assert page.url.endswith(f"/studies/{np_study.pk}/?{query}")
    assert page.get_attribute("#study-header a.back", "href") == f"/?{query}"
    assert page.inner_text("header nav a[aria-current=page]") == "Worklist"  # the viewer belongs to the worklist

    page.check("#decision-form input[value=np]")
    page.click("#decision-form button[type=submit]")
    page.wait_for_selector(".toast-success:has-text('Decision saved')")
    page.focus("#ct-viewport")
    with page.expect_request(lambda r: "/mark-reviewed/" in r.url) as sent:
        page.keyboard.press("Shift+Enter")
    assert sent.value.url.endswith(f"/api/studies/{np_study.pk}/mark-reviewed/?{query}")
    # Nothing else in that list is left to review: back to the filtered worklist, not on to the COVID study.
    page.wait_for_url(f"{world.url}/?{query}")
    page.wait_for_selector("body[data-loaded=true]")
    assert page.input_value("input[name=search]") == np_study.accession_number
    np_study.refresh_from_db()
    covid.refresh_from_db()
    assert (np_study.status, covid.status) == ("reviewed", "ai_done")

    # From the unfiltered worklist the next case is the other study, and the sort travels along.
    np_study.status = "ai_done"
    np_study.save(update_fields=["status"])
    page.goto(f"{world.url}/studies/{np_study.pk}/?ordering=-ai_probability")
    page.wait_for_selector("#viewer-app[data-ready=true]", timeout=30_000)
    page.focus("#ct-viewport")
    page.keyboard.press("Shift+Enter")
    page.wait_for_url(f"{world.url}/studies/{covid.pk}/?ordering=-ai_probability")
    assert not page.errors, page.errors

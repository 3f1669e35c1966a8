"""The worklist's upload button in a real browser: per-file progress and per-file errors, then the new study's
analysis status moving live (analysing -> AI done, done by a real Celery worker) without a page reload."""
from __future__ import annotations

import pytest

from e2e_helpers import MODEL, SIZE, login, save_screenshot

pytestmark = pytest.mark.e2e

UPLOAD_SLICES = 8  # few files keep the upload quick; the default model still calls this one COVID (0.67)


def test_upload_button_shows_each_file_and_the_analysis_status_goes_live(page, bare_world, settings, start_worker,
                                                                         tmp_path):
    from training.phantom import generate_study, write_dicom_series
    from webapp.studies.models import Instance, Study

    settings.LUNGSCOPE_ANALYZE_ON_INGEST = True  # as in production: an upload queues the study's analysis
    phantom = generate_study(31, "COVID", n_slices=UPLOAD_SLICES, size=SIZE)
    good = write_dicom_series(phantom, tmp_path / "upload")
    bad = tmp_path / "upload" / "notes.txt"
    bad.write_text("not an image\n")

    login(page, bare_world, "clin")
    page.wait_for_selector("body[data-loaded=true]")
    assert page.locator("tr.study-row").count() == 0
    page.evaluate("() => { window.__sameDocument = true; }")  # gone if anything reloads the page
    with page.expect_file_chooser() as chooser:
        page.click("#upload-button")
    chooser.value.set_files([str(p) for p in good] + [str(bad)])

    items = page.locator("#upload-panel li.upload-item")
    page.wait_for_function(f"""() => {{
        const items = [...document.querySelectorAll('#upload-panel li.upload-item')];
        return items.length === {len(good) + 1} && items.every((li) => li.dataset.state === 'done' || li.dataset.state === 'error');
    }}""", timeout=60_000)
    for i, path in enumerate(good):
        item = items.nth(i)
        assert item.locator(".name").inner_text() == path.name
        assert item.get_attribute("data-state") == "done", item.inner_text()
        assert item.locator(".result").inner_text() == "stored"
        assert item.locator("progress").evaluate("(bar) => bar.value") == 1
    item = items.nth(len(good))
    assert item.locator(".name").inner_text() == "notes.txt"
    assert item.get_attribute("data-state") == "error"
    result = item.locator(".result").inner_text()
    assert result.startswith("rejected: ") and "not a DICOM file" in result, result

    # The new study is in the list, analysing: no worker runs yet, so it waits in the queue.
    study = Study.objects.get()
    assert Instance.objects.filter(series__study=study).count() == UPLOAD_SLICES
    row = page.locator(f"tr[data-study-id='{study.pk}']")
    row.locator(".badge:has-text('Analysing')").wait_for(timeout=15_000)
    save_screenshot(page, "worklist-upload.png")

    # A worker picks the analysis up; the worklist polls and shows the result without a reload.
    start_worker(LUNGSCOPE_MODEL=MODEL, LUNGSCOPE_SALIENCY="none")
    row.locator(".badge:has-text('AI done')").wait_for(timeout=150_000)
    assert page.evaluate("() => window.__sameDocument === true"), "the page was reloaded"
    from webapp.analysis.models import AnalysisRun

    label = AnalysisRun.objects.filter(study_id=int(row.get_attribute("data-study-id"))).latest("created_at").label
    assert row.locator(".ai .label").inner_text() == {"COVID": "COVID-19"}.get(label, label), "the stored AI label"
    study.refresh_from_db()
    assert study.status == "ai_done"
    assert study.analysis_runs.count() == 1, "one upload of one study queues one analysis"
    assert not page.errors, page.errors

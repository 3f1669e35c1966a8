"""The review UI in a real browser: worklist, viewer rendering and overlays, boxes, decisions, conflicts, roles."""
from __future__ import annotations

import numpy as np
import pytest

from e2e_helpers import SLICES, differs, go_to_slice, login, open_viewer, save_screenshot, viewport_pixels, wait_rendered
from factories import wait_until

pytestmark = pytest.mark.e2e


def test_clinician_reads_a_study_and_confirms_the_diagnosis(page, world):
    from webapp.review.models import Decision

    covid, np_study = world.studies
    login(page, world, "clin")
    page.wait_for_selector("body[data-loaded=true]")
    rows = page.locator("tr.study-row")
    assert rows.count() == 2
    for study in world.studies:
        row = page.locator(f"tr[data-study-id='{study.pk}']")
        assert row.locator(".badge").inner_text() == "AI done"
        assert row.locator(".ai .label").inner_text() in {"COVID-19", "CAP", "NP"}
        assert "%" in row.locator(".ai").inner_text()
    save_screenshot(page, "worklist.png")

    page.locator(f"tr[data-study-id='{covid.pk}'] td.patient a").click()
    page.wait_for_selector("#viewer-app[data-ready=true]", timeout=30_000)
    wait_rendered(page)
    assert not page.errors, page.errors
    go_to_slice(page, SLICES // 2)
    first = viewport_pixels(page)
    assert first.std() > 10, "the viewport is blank"

    for _ in range(2):
        page.keyboard.press("ArrowDown")
    wait_rendered(page)
    assert page.inner_text("#slice-info").startswith(f"Slice {SLICES // 2 + 3} / {SLICES}")
    scrolled = viewport_pixels(page)
    assert differs(first, scrolled, 0.2), "scrolling did not change the image"

    page.click("[data-preset=mediastinum]")
    wait_rendered(page)
    assert "W 400 L 40" in page.inner_text("#wl-info")
    windowed = viewport_pixels(page)
    assert differs(scrolled, windowed), "the W/L preset did not change the image"
    page.click("[data-preset=lung]")
    wait_rendered(page)

    # The tiny random model's joint saliency may be empty on a slice; its CAM never is.
    page.check("input[data-map=cam5]")
    page.wait_for_selector(".map-spinner", state="visible", timeout=5000)  # computed on demand meanwhile
    wait_rendered(page)
    heat = viewport_pixels(page)
    assert differs(scrolled, heat), "the heatmap did not change the image"
    assert np.abs(heat[..., 0] - heat[..., 2]).mean() > 1, "the heatmap has no colour"
    save_screenshot(page, "viewer-clinician.png")

    page.check("#decision-form input[value=covid]")
    page.fill("#decision-form textarea[name=comment]", "typical GGO")
    page.click("#decision-form button[type=submit]")
    page.wait_for_selector(".toast-success:has-text('Decision saved')")
    decision = Decision.objects.get(study=covid)
    assert (decision.label, decision.comment, decision.decided_by.username) == ("covid", "typical GGO", "clin")

    page.goto(f"{world.url}/")
    row = page.locator(f"tr[data-study-id='{covid.pk}']")
    row.locator("text=clin (COVID-19)").wait_for()
    assert row.locator(".badge").inner_text() == "In review"


def test_annotator_draws_moves_and_rejects_boxes_and_cannot_decide(page, world):
    from webapp.review.models import Box

    study = world.studies[0]
    series = study.series.get()
    instances = sorted(series.instances.all(), key=lambda i: i.image_position_patient[2])
    ai_box = Box.objects.create(study=study, analysis_run=study.analysis_runs.get(), sop_instance_uid=instances[3].sop_instance_uid,
                                x0=30, y0=40, x1=50, y1=60, label="covid_lesion", score=0.91, provenance="ai")
    login(page, world, "anno")
    open_viewer(page, world, study)

    assert page.locator("#decision-form").count() == 0, "annotators must not see the decision form"
    status = page.evaluate("""async (id) => {
        const token = document.cookie.match(/csrftoken=([^;]+)/)[1];
        const res = await fetch(`/api/studies/${id}/decision/`, {method: 'PUT', headers: {'Content-Type': 'application/json',
            'X-CSRFToken': token}, body: JSON.stringify({label: 'np', comment: '', version: 0})});
        return res.status;
    }""", study.pk)
    assert status == 403

    # Reject the AI box: pick it in the list (jumps to its slice), then Reject.
    page.click(f"li[data-box-id='{ai_box.pk}']")
    page.wait_for_function("() => document.querySelector('#slice-info').dataset.index === '3'")
    wait_rendered(page)
    page.click("[data-action=reject]")
    page.wait_for_selector(".toast-success:has-text('Box rejected')")
    ai_box.refresh_from_db()
    assert (ai_box.status, ai_box.version) == ("rejected", 2)

    # Draw a box: the image (SIZE x SIZE) is fitted to the viewport's height and centred.
    page.keyboard.press("b")
    rect = page.locator("#ct-viewport").bounding_box()
    scale = min(rect["width"], rect["height"]) / 128
    left = rect["x"] + (rect["width"] - 128 * scale) / 2
    top = rect["y"] + (rect["height"] - 128 * scale) / 2

    def at(px: float, py: float) -> tuple[float, float]:
        return left + px * scale, top + py * scale

    page.mouse.move(*at(60.5, 70.5))
    page.mouse.down()
    page.mouse.move(*at(70, 78), steps=4)
    page.mouse.move(*at(80.5, 90.5), steps=4)
    page.mouse.up()
    page.wait_for_selector(".toast-success:has-text('Box saved')")
    box = Box.objects.get(study=study, provenance="human")
    assert box.sop_instance_uid == instances[3].sop_instance_uid
    drawn = np.array([box.x0, box.y0, box.x1, box.y1])
    assert np.abs(drawn - [60, 70, 80, 90]).max() <= 1, drawn  # screen -> pixel mapping estimated here, hence +-1
    assert box.label == "covid_lesion"
    assert box.created_by.username == "anno" and box.patient_coords

    # The Rectangle ROI tool draws it: a solid annotation (the AI box's is dashed, with its score in the text).
    human_rect = page.locator(f"svg.svg-layer rect[data-id='lungscope-box-{box.pk}-rect']")
    ai_rect = page.locator(f"svg.svg-layer rect[data-id='lungscope-box-{ai_box.pk}-rect']")
    human_rect.wait_for()
    assert (human_rect.get_attribute("stroke-dasharray") or "") == ""
    assert ai_rect.get_attribute("stroke-dasharray") == "6,4"
    assert "COVID lesion 0.91 (rejected)" in page.text_content("svg.svg-layer")

    # Move it 10 pixels right and 5 down: grab its left edge (inside, a drag would draw a new box).
    edge = (float(drawn[0]), (drawn[1] + drawn[3] + 1) / 2)
    page.mouse.move(*at(*edge))
    page.mouse.down()
    page.mouse.move(*at(edge[0] + 5, edge[1] + 2.5), steps=4)
    page.mouse.move(*at(edge[0] + 10, edge[1] + 5), steps=4)
    page.mouse.up()
    moved = (drawn + [10, 5, 10, 5]).tolist()
    wait_until(lambda: box.refresh_from_db() or box.version == 2, 10, what="the moved box saved")
    assert [box.x0, box.y0, box.x1, box.y1] == moved
    page.wait_for_selector(f"li[data-box-id='{box.pk}'][data-rect='{','.join(map(str, moved))}']")
    assert Box.objects.filter(study=study, provenance="human").count() == 1, "the move drew a second box"
    page.check("input[data-map=cam5]")
    page.check("input[data-map=lung]")
    wait_rendered(page)
    save_screenshot(page, "viewer.png")  # heatmap, lung outline, an AI box (rejected) and a human one


def test_stale_decision_save_gets_409_and_the_ui_says_so(page, world):
    from webapp.review.models import Decision

    study = world.studies[1]
    login(page, world, "clin")
    open_viewer(page, world, study)
    # Someone else decides while this page is open.
    Decision.objects.create(study=study, label="cap", comment="other clinician", decided_by=world.users["clin"])

    page.check("#decision-form input[value=np]")
    page.click("#decision-form button[type=submit]")
    toast = page.wait_for_selector(".toast-warning")
    assert "Someone else saved a decision" in toast.inner_text()
    assert page.is_checked("#decision-form input[value=cap]"), "the form shows the reloaded decision"
    assert Decision.objects.get(study=study).label == "cap"

"""The review UI in a real browser: worklist, viewer rendering and overlays, boxes, decisions, conflicts, roles."""
from __future__ import annotations

import numpy as np
import pytest

from e2e_helpers import (SLICES, ai_boxes_on_lesions, change_where, differs, drag, go_to_slice, image_to_page,
                         lesion_share, login, open_viewer, save_screenshot, served_map, slice_index, viewport_pixels,
                         wait_rendered)
from factories import wait_until

pytestmark = pytest.mark.e2e

BOX_LABEL_TEXT = {"covid_lesion": "COVID lesion", "cap_lesion": "CAP lesion", "other": "Other"}


def overlap(a, b) -> int:
    """Pixels shared by two inclusive (x0, y0, x1, y1) boxes."""
    return max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1) * max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)


def test_clinician_reads_a_study_and_confirms_the_diagnosis(page, world):
    from webapp.review.models import Box, Decision

    covid, np_study = world.studies
    run = covid.analysis_runs.get()
    # The default model's best box on a slice it calls diseased lies on a ground-truth lesion; that slice is shown.
    hits = ai_boxes_on_lesions(covid, world.phantoms[0], diseased=True)
    assert hits and hits[0][0] >= 0.5, [(share, index, box.score) for share, index, box in hits]
    shown = hits[0][1]
    # A lung slice the model calls NP has no stored maps: the viewer has them computed when asked.
    plain = min((s.index for s in run.slices.filter(maps="") if s.index >= 2), key=lambda k: abs(k - SLICES // 2))
    instances = sorted(covid.series.get().instances.all(), key=lambda i: i.image_position_patient[2])
    box = Box.objects.create(study=covid, sop_instance_uid=instances[plain].sop_instance_uid, x0=30, y0=30,
                             x1=50, y1=50, label="other", provenance="human", status="accepted")
    login(page, world, "clin")
    page.wait_for_selector("body[data-loaded=true]")
    rows = page.locator("tr.study-row")
    assert rows.count() == 2
    for study in (covid, np_study):
        row = page.locator(f"tr[data-study-id='{study.pk}']")
        assert row.locator(".badge").inner_text() == "AI done"
        label = study.analysis_runs.get().label
        assert row.locator(".ai .label").inner_text() == {"COVID": "COVID-19"}.get(label, label), \
            "the worklist shows the stored AI label"
        assert "%" in row.locator(".ai").inner_text()
    save_screenshot(page, "worklist.png")

    page.locator(f"tr[data-study-id='{covid.pk}'] td.patient a").click()
    page.wait_for_selector("#viewer-app[data-ready=true]", timeout=30_000)
    wait_rendered(page)
    assert not page.errors, page.errors
    go_to_slice(page, plain - 2)
    first = viewport_pixels(page)
    assert first.std() > 10, "the viewport is blank"

    for _ in range(2):
        page.keyboard.press("ArrowDown")
    wait_rendered(page)
    assert page.inner_text("#slice-info").startswith(f"Slice {plain + 1} / {SLICES}")
    scrolled = viewport_pixels(page)
    assert differs(first, scrolled, 0.2), "scrolling did not change the image"

    page.click("[data-preset=mediastinum]")
    wait_rendered(page)
    assert "W 400 L 40" in page.inner_text("#wl-info")
    windowed = viewport_pixels(page)
    assert differs(scrolled, windowed), "the W/L preset did not change the image"
    page.click("[data-preset=lung]")
    wait_rendered(page)

    # The saliency heatmap (`h`) of a slice without stored maps: computed on demand meanwhile, then stored. Model
    # 2.0.0's joint map of an NP slice is a few hot spots (here about 0.1 % of the image above the overlay's
    # transparent floor, as the stored maps of its positive slices are), so the image as a whole hardly changes: the
    # check is at the pixels the served map says are hot, against the rest of the image.
    page.focus("#ct-viewport")
    page.keyboard.press("h")
    assert page.is_checked("input[data-map=joint]")
    page.wait_for_selector(".map-spinner", state="visible", timeout=5000)
    wait_rendered(page)
    heat = viewport_pixels(page)
    assert run.slices.get(index=plain).maps, "the on-demand maps were not stored"
    hot = served_map(page, run.pk, plain, "joint") >= 64  # a quarter of the map's maximum and up
    inside, outside = change_where(page, scrolled, heat, hot)
    assert hot.any() and inside > 30 and inside > 20 * outside, \
        f"the heatmap is not drawn where the map is hot: {inside:.1f} there, {outside:.2f} elsewhere"
    changed = np.abs(heat - scrolled).sum(axis=2) > 30  # the CT under it is grey: R = G = B
    assert (heat.max(axis=2) - heat.min(axis=2))[changed].mean() > 20, "the heatmap has no colour"
    # Its opacity slider at 0 leaves the image as it was: what a blank overlay would look like to the check above.
    page.fill("input[data-opacity=joint]", "0")
    wait_rendered(page)
    assert change_where(page, scrolled, viewport_pixels(page), hot)[0] < 1, "opacity 0 still draws the heatmap"
    page.keyboard.press("h")

    # Clinicians see the boxes but cannot edit them: no box mode, and a drag on a box's edge only changes W/L.
    page.locator(f"svg.svg-layer rect[data-id='lungscope-box-{box.pk}-rect']").wait_for()
    assert page.locator("[data-tool=box]").count() == 0
    page.keyboard.press("b")
    wl_before = page.inner_text("#wl-info")
    drag(page, image_to_page(page), (30, 40.5), (40, 45.5))
    page.wait_for_function(f"() => document.querySelector('#wl-info').textContent !== {wl_before!r}")
    box.refresh_from_db()
    assert ([box.x0, box.y0, box.x1, box.y1], box.version) == ([30, 30, 50, 50], 1)
    assert page.locator("select[name=selected-box-label], [data-action]").count() == 0
    page.click("[data-preset=lung]")

    # The lesion slice: its stored maps (CAM 3 lies on the lesion) and the model's proposed boxes (dashed).
    go_to_slice(page, shown)
    page.locator(f"svg.svg-layer rect[data-id='lungscope-box-{hits[0][2].pk}-rect'][stroke-dasharray='6,4']").wait_for()
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
    from webapp.analysis.maps import load_map
    from webapp.review.models import Box

    study, phantom = world.studies[0], world.phantoms[0]
    # The model's boxes: the best one on a lesion of a slice it calls diseased (shown: its CAM is of the disease),
    # the one least on a lesion elsewhere (rejected).
    hits = ai_boxes_on_lesions(study, phantom)
    [(share, shown, best), *_] = ai_boxes_on_lesions(study, phantom, diseased=True)
    assert len(hits) >= 2 and share >= 0.5, [(share, index, box.score) for share, index, box in hits]
    _, wrong_index, wrong = min((h for h in hits if h[1] != shown), key=lambda h: (h[0], h[2].score))
    # The annotator outlines the ground-truth lesion under the best box: drawn 10 px left and 5 up, then moved there.
    lesion = max(phantom.boxes[shown], key=lambda b: overlap(b, (best.x0, best.y0, best.x1, best.y1)))
    target = np.array(lesion) + [-2, -2, 2, 2]  # a margin round the lesion
    drawn_at = target - [10, 5, 10, 5]
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

    # Reject the AI box that misses: pick it in the list (jumps to its slice), then Reject.
    page.click(f"li[data-box-id='{wrong.pk}']")
    page.wait_for_function(f"() => document.querySelector('#slice-info').dataset.index === '{wrong_index}'")
    wait_rendered(page)
    page.click("[data-action=reject]")
    page.wait_for_selector(".toast-success:has-text('Box rejected')")
    wrong.refresh_from_db()
    assert (wrong.status, wrong.version) == ("rejected", 2)
    rejected_text = f"{BOX_LABEL_TEXT[wrong.label]} {wrong.score:.2f} (rejected)"
    page.wait_for_function(f"() => document.querySelector('svg.svg-layer').textContent.includes({rejected_text!r})")

    # Draw a box with the Rectangle ROI tool (box mode) on the lesion slice.
    go_to_slice(page, shown)
    page.keyboard.press("b")
    at = image_to_page(page)
    drag(page, at, drawn_at[:2] + 0.5, drawn_at[2:] + 0.5)
    page.wait_for_selector(".toast-success:has-text('Box saved')")
    box = Box.objects.get(study=study, provenance="human")
    assert slice_index(study, box.sop_instance_uid) == shown
    drawn = np.array([box.x0, box.y0, box.x1, box.y1])
    assert np.abs(drawn - drawn_at).max() <= 1, (drawn, drawn_at)  # screen -> pixel mapping estimated here, hence +-1
    assert box.label == "covid_lesion"
    assert box.created_by.username == "anno" and box.patient_coords

    # The Rectangle ROI tool draws it: a solid annotation (the AI's are dashed, with their scores in the text).
    human_rect = page.locator(f"svg.svg-layer rect[data-id='lungscope-box-{box.pk}-rect']")
    ai_rect = page.locator(f"svg.svg-layer rect[data-id='lungscope-box-{best.pk}-rect']")
    human_rect.wait_for()
    assert (human_rect.get_attribute("stroke-dasharray") or "") == ""
    assert ai_rect.get_attribute("stroke-dasharray") == "6,4"
    assert f"{BOX_LABEL_TEXT[best.label]} {best.score:.2f}" in page.text_content("svg.svg-layer")

    # Move it 10 pixels right and 5 down onto the lesion: grab its left edge (inside, a drag would draw a new box).
    edge = (float(drawn[0]), (drawn[1] + drawn[3] + 1) / 2)
    drag(page, at, edge, (edge[0] + 10, edge[1] + 5))
    moved = (drawn + [10, 5, 10, 5]).tolist()
    wait_until(lambda: box.refresh_from_db() or box.version == 2, 10, what="the moved box saved")
    assert [box.x0, box.y0, box.x1, box.y1] == moved
    assert lesion_share(phantom, shown, box) > 0.3, "the moved box is not on the lesion"
    page.wait_for_selector(f"li[data-box-id='{box.pk}'][data-rect='{','.join(map(str, moved))}']")
    assert Box.objects.filter(study=study, provenance="human").count() == 1, "the move drew a second box"
    # The CAM of the scale with the strongest evidence on this slice (one scale's CAM can be negative everywhere on
    # a slice the three together call diseased; the viewer draws positive evidence only) is drawn where it is hot.
    # Whether the model's evidence lies on lesions is measured by bench/localisation.py, per scale.
    run = study.analysis_runs.get()
    stored = run.slices.get(index=shown).maps.name
    cam = max(("cam3", "cam4", "cam5"), key=lambda kind: float(load_map(stored, kind).max()))
    without = viewport_pixels(page)
    page.check(f"input[data-map={cam}]")
    wait_rendered(page)
    hot = served_map(page, run.pk, shown, cam) >= 64  # a quarter of the map's maximum and up
    inside, outside = change_where(page, without, viewport_pixels(page), hot)
    assert hot.any() and inside > 30 and inside > 20 * outside, \
        f"{cam} is not drawn where it is hot: {inside:.1f} there, {outside:.2f} elsewhere"
    page.check("input[data-map=lung]")
    wait_rendered(page)
    save_screenshot(page, "viewer.png")  # the CAM, lung outline, the model's box(es) and the annotator's


def test_annotator_accepts_resizes_relabels_adds_and_deletes_boxes_and_a_stale_move_gets_409(page, plain_world):
    world = plain_world
    from webapp.review.models import Box

    study = world.studies[0]
    instances = sorted(study.series.get().instances.all(), key=lambda i: i.image_position_patient[2])
    sop = instances[5].sop_instance_uid
    ai_box = Box.objects.create(study=study, analysis_run=study.analysis_runs.get(), sop_instance_uid=sop,
                                x0=20, y0=20, x1=40, y1=40, label="covid_lesion", score=0.8, provenance="ai")
    other = Box.objects.create(study=study, sop_instance_uid=sop, x0=20, y0=90, x1=40, y1=110, label="other",
                               provenance="human", status="accepted", created_by=world.users["anno"])
    login(page, world, "anno")
    open_viewer(page, world, study)
    at = image_to_page(page)
    svg_rect = lambda box: page.locator(f"svg.svg-layer rect[data-id='lungscope-box-{box.pk}-rect']")  # noqa: E731

    # Accept the AI proposal with the keyboard: it turns solid.
    page.click(f"li[data-box-id='{ai_box.pk}']")
    page.wait_for_function("() => document.querySelector('#slice-info').dataset.index === '5'")
    wait_rendered(page)
    assert svg_rect(ai_box).get_attribute("stroke-dasharray") == "6,4"
    page.keyboard.press("a")
    page.wait_for_selector(".toast-success:has-text('Box accepted')")
    ai_box.refresh_from_db()
    assert (ai_box.status, ai_box.provenance, ai_box.version) == ("accepted", "ai_accepted", 2)
    page.wait_for_function(f"""() => !document.querySelector("svg.svg-layer rect[data-id='lungscope-box-{ai_box.pk}-rect']")
        .getAttribute('stroke-dasharray')""")

    # Resize it by its bottom-right corner (the tool's handle): 5 pixels wider, 10 taller.
    page.keyboard.press("b")
    drag(page, at, (41, 41), (46, 51))
    wait_until(lambda: ai_box.refresh_from_db() or ai_box.version == 3, 10, what="the resized box saved")
    assert ([ai_box.x0, ai_box.y0, ai_box.x1, ai_box.y1], ai_box.provenance) == ([20, 20, 45, 50], "ai_edited")

    # Relabel the selected box in the side panel; its text follows.
    page.select_option("select[name=selected-box-label]", "cap_lesion")
    page.wait_for_selector(".toast-success:has-text('Label saved')")
    ai_box.refresh_from_db()
    assert (ai_box.label, ai_box.version) == ("cap_lesion", 4)
    page.wait_for_function("() => document.querySelector('svg.svg-layer').textContent.includes('CAP lesion 0.80')")

    # Add a box labelled "other", then delete it with the keyboard.
    page.select_option("select[name=new-box-label]", "other")
    page.focus("#ct-viewport")
    drag(page, at, (80.5, 60.5), (100.5, 75.5))
    added = wait_until(lambda: Box.objects.filter(study=study, provenance="human", label="other").exclude(pk=other.pk).first(),
                       10, what="the drawn box saved")
    assert ([added.x0, added.y0, added.x1, added.y1], added.sop_instance_uid) == ([80, 60, 100, 75], sop)
    svg_rect(added).wait_for()
    page.keyboard.press("Delete")
    page.wait_for_selector(".toast-success:has-text('Box deleted')")
    added.refresh_from_db()
    assert added.status == "deleted"
    svg_rect(added).wait_for(state="detached")

    # Someone else moves the other box meanwhile; this annotator's move of the stale version gets 409: the box
    # reloads (theirs) and the UI says so.
    Box.objects.filter(pk=other.pk).update(x0=22, x1=42, version=2)
    live = Box.objects.filter(study=study).exclude(status="deleted")
    before = live.count()  # the AI's boxes on every lung slice with opacity, and this annotator's
    drag(page, at, (20, 100.5), (25, 100.5))
    toast = page.wait_for_selector(".toast-warning")
    assert "Someone else changed this box" in toast.inner_text()
    other.refresh_from_db()
    assert ([other.x0, other.y0, other.x1, other.y1], other.version) == ([22, 90, 42, 110], 2)
    page.wait_for_selector(f"li[data-box-id='{other.pk}'][data-rect='22,90,42,110']")
    assert live.count() == before, "a drag drew an extra box"
    assert not page.errors, page.errors


def test_stale_decision_save_gets_409_and_the_ui_says_so(page, plain_world):
    world = plain_world
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

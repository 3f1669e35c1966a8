"""The viewer on real CT, as a clinician sees it: two real series from ../shared/data analysed by a real Celery
worker with the shipped ``models/default`` bundle, then read in the browser.

The phantom tests know the truth pixel by pixel; here there is none (study-level labels only), so the test checks
that what the viewer shows is what the worker stored (label, probabilities, opacity figures, the outside banner)
and that each overlay draws where the stored masks are (the lung outline round the lungs, the opacity overlay on the
measured opacities, the AI's boxes inside the lung outline). Whether the model is right on these scans is for a
person to judge from the screenshots (README, Screenshots): RICORD patient_1 is COVID-19 positive, LIDC-IDRI-0001
has a lung tumour and no pneumonia.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from e2e_helpers import (MODEL, differs, go_to_slice, image_to_page, ingested_study, login, open_viewer,
                         save_screenshot, slice_index, viewport_pixels, wait_rendered)
from factories import wait_for_job

pytestmark = [pytest.mark.e2e, pytest.mark.worker, pytest.mark.slow, pytest.mark.timeout(1800)]

#: (screenshot, folder under real-ct, slices, the study's true class in the model's scheme)
SERIES = (
    ("viewer-real-ricord.png", "ricord-slabs/covid-positive/patient_1", 10, "COVID"),
    ("viewer-real-lidc.png", "lidc-idri/LIDC-IDRI-0001", 133, "NP"),
)
BOX_MARGIN_PX = 6  # original pixels: about two of the model's input-grid pixels on a 512 px chest
ANALYSIS_TIMEOUT_S = 1200  # both series on this machine's two shared cores, LIDC's 133 slices the most of it


def series_files(shared_data: Path, folder: str, count: int) -> list[Path]:
    files = sorted((shared_data / "real-ct" / folder).rglob("*.dcm"))
    if len(files) != count:
        pytest.skip(f"expected {count} DICOM files under real-ct/{folder}, found {len(files)}")
    return files


@pytest.fixture
def real_world(bare_world, start_worker, settings, shared_data):
    """The two real series ingested like uploads and analysed by a worker on the gpu queue, as in production
    (saliency ``positive``: maps and boxes stored for the slices the model calls diseased)."""
    settings.LUNGSCOPE_SALIENCY = "positive"
    from webapp.analysis.tasks import enqueue_analysis

    files = [series_files(shared_data, folder, count) for _, folder, count, _ in SERIES]
    studies = [ingested_study(paths, truth) for paths, (_, _, _, truth) in zip(files, SERIES)]
    jobs = [enqueue_analysis(study) for study in studies]
    start_worker(queues="gpu", LUNGSCOPE_MODEL=MODEL, OMP_NUM_THREADS="2")
    for job in jobs:
        assert wait_for_job(job, timeout=ANALYSIS_TIMEOUT_S).status == "succeeded", job.error
    for study in studies:
        study.refresh_from_db()
    bare_world.studies.extend(studies)
    return bare_world


def pct(value: float) -> str:
    """As the viewer writes a fraction (ui/format.ts percent(value, 1))."""
    return f"{value * 100:.1f}%"


def overlay_pixels(page) -> int:
    """Non-transparent pixels of the viewer's maps canvas (the heatmaps, lung outline and opacity overlay)."""
    return page.evaluate("""() => {
        const canvas = document.querySelector('canvas.maps-layer');
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let n = 0;
        for (let i = 3; i < data.length; i += 4) if (data[i] > 0) n++;
        return n;
    }""")


def bbox(mask: np.ndarray, margin: int = 0) -> tuple[int, int, int, int]:
    """Inclusive (x0, y0, x1, y1) of a 2-D mask's pixels, grown by ``margin`` image pixels."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()) - margin, int(ys.min()) - margin, int(xs.max()) + margin, int(ys.max()) + margin


def share_inside(page, before: np.ndarray, after: np.ndarray, box, size: int) -> float:
    """The share of the screen pixels an overlay changed that lie inside an image box (inclusive corners)."""
    rect = page.locator("#ct-viewport").bounding_box()
    at = image_to_page(page, size)
    changed = np.abs(after - before).sum(axis=2) > 30
    (x0, y0), (x1, y1) = at(box[0], box[1]), at(box[2] + 1, box[3] + 1)
    rows = slice(max(round(y0 - rect["y"]), 0), round(y1 - rect["y"]))
    inside = changed[rows, max(round(x0 - rect["x"]), 0):round(x1 - rect["x"])]
    return float(inside.sum() / max(changed.sum(), 1))


def toggle(page, key: str, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """The viewport before and after a map is switched on with its shortcut; asserts it drew something."""
    before = viewport_pixels(page)
    page.focus("#ct-viewport")
    page.keyboard.press(key)
    assert page.is_checked(f"input[data-map={kind}]")
    wait_rendered(page)
    assert overlay_pixels(page) > 0, f"the {kind} overlay drew nothing"
    after = viewport_pixels(page)
    assert differs(before, after, 0.05), f"the {kind} overlay did not change the image"
    return before, after


def switch_off(page, key: str, kind: str, before: np.ndarray) -> None:
    page.focus("#ct-viewport")
    page.keyboard.press(key)
    assert not page.is_checked(f"input[data-map={kind}]")
    wait_rendered(page)
    assert not differs(before, viewport_pixels(page), 0.05), f"toggling the {kind} overlay off did not remove it"


def check_summary(page, run) -> None:
    """The AI label, its probability and every class's probability, the opacity figures and the banner, as stored."""
    summary = page.locator("#decision-panel .ai-summary")
    classes = {"COVID": "COVID-19", "CAP": "CAP", "NP": "NP"}
    assert summary.locator(".ai-label .label").inner_text() == classes[run.label]
    assert summary.locator(".ai-label strong").inner_text() == pct(run.probabilities[run.label])
    rows = summary.locator("table.probs tr")
    shown = {rows.nth(i).locator("td").nth(0).inner_text(): rows.nth(i).locator("td.num").inner_text()
             for i in range(rows.count())}
    assert shown == {classes[k]: pct(p) for k, p in run.probabilities.items()}
    alone = run.result["prediction"].get("classifier_probabilities")  # a decision made with the opacity too
    line = summary.locator(".classifier-alone")
    assert line.count() == (1 if alone else 0)
    if alone:
        assert line.inner_text().endswith(", ".join(f"{classes[k]} {pct(p)}" for k, p in alone.items()))
    opacity = run.result["opacity"]
    for key, value in (("total", opacity["percent"]), ("high", opacity["high_percent"]),
                       ("left", opacity["per_lung"]["left"]), ("right", opacity["per_lung"]["right"])):
        assert page.inner_text(f"#opacity-panel [data-measure={key}]") == f"{value:.1f}%"
    assert page.locator("#outside-banner").is_visible() == bool(run.domain_outside)


def check_boxes_in_lungs(page, study, run, lungs: np.ndarray, size: int) -> None:
    """Every AI box is drawn on its slice over some lung and inside the lung outline's extent (the pipeline keeps
    only saliency components inside the lungs; a box is such a component's bounding rectangle, mapped back from the
    model's 112 px input grid, so its edges may pass the outline by a few pixels)."""
    from webapp.review.models import Box

    by_sop = {s.sop_instance_uid: s.index for s in run.slices.all()}
    for box in Box.objects.filter(study=study, provenance="ai"):
        lung = lungs[by_sop[box.sop_instance_uid]]
        corners = (box.x0, box.y0, box.x1, box.y1)
        assert lung[box.y0:box.y1 + 1, box.x0:box.x1 + 1].any(), f"AI box {corners} covers no lung"
        go_to_slice(page, slice_index(study, box.sop_instance_uid))
        rect = page.locator(f"svg.svg-layer rect[data-id='lungscope-box-{box.pk}-rect']")
        rect.wait_for()
        drawn = rect.bounding_box()
        at = image_to_page(page, size)
        x0, y0, x1, y1 = bbox(lung, margin=BOX_MARGIN_PX)
        (lx0, ly0), (lx1, ly1) = at(x0, y0), at(x1 + 1, y1 + 1)
        assert (lx0 <= drawn["x"] and ly0 <= drawn["y"] and drawn["x"] + drawn["width"] <= lx1
                and drawn["y"] + drawn["height"] <= ly1), f"AI box {corners} drawn off the lungs {x0, y0, x1, y1}"


def test_clinician_reads_real_scans_analysed_by_the_shipped_model(page, real_world):
    from webapp.analysis import maps

    login(page, real_world, "clin")
    for study, (screenshot, _, count, _) in zip(real_world.studies, SERIES):
        run = study.analysis_runs.get()
        assert run.status == "succeeded", run.error
        lungs = maps.load_lung_mask(run.pk)
        assert lungs is not None and lungs.any(), "the run stored no lung mask"
        size = lungs.shape[-1]
        slices = list(run.slices.all())

        open_viewer(page, real_world, study)
        assert not page.errors, page.errors
        check_summary(page, run)

        # The viewer opens at the slice the AI ranks highest for its label.
        top = max(slices, key=lambda s: s.probabilities[run.label])
        top_index = slice_index(study, top.sop_instance_uid)
        assert page.get_attribute("#slice-info", "data-index") == str(top_index)
        assert page.inner_text("#slice-info").startswith(f"Slice {top_index + 1} / {count}")

        # The opacity overlay on the slice with the most opacity, where the labels are.
        most = max(slices, key=lambda s: s.opacity_px)
        if most.opacity_px:
            go_to_slice(page, slice_index(study, most.sop_instance_uid))
            before, after = toggle(page, "o", "opacity")
            labels = maps.load_opacity_slice(run.pk, most.index)
            assert share_inside(page, before, after, bbox(labels, margin=2), size) > 0.9, \
                "the opacity overlay is not on the measured opacities"
            change = (after - before).reshape(-1, 3)
            assert change[:, 0].sum() > 2 * max(change[:, 2].sum(), 1), "the overlay is not amber / red"
            switch_off(page, "o", "opacity", before)

        # The lung outline round the lungs of the top slice.
        go_to_slice(page, top_index)
        before, after = toggle(page, "g", "lung")
        assert share_inside(page, before, after, bbox(lungs[top.index], margin=3), size) > 0.9, \
            "the lung outline is not round the lungs"
        switch_off(page, "g", "lung", before)

        # The joint saliency heatmap (the paper's smoothed magnitude) on the top slice: inside the lungs.
        if run.label != "NP":  # the slices called diseased are the explained ones
            before, heat = toggle(page, "h", "joint")
            assert share_inside(page, before, heat, bbox(lungs[top.index], margin=3), size) > 0.9, \
                "the heatmap is not on the lungs"
            switch_off(page, "h", "joint", before)

        check_boxes_in_lungs(page, study, run, lungs, size)

        # The picture: the top slice in the lung window, opacity overlay and lung outline on, the AI's boxes (if any).
        # After all the scrolling the viewer is still in the lung preset it opened in, whatever window the slices'
        # headers carry (RICORD's are W 400 L 40).
        go_to_slice(page, top_index)
        assert page.inner_text("#wl-info") == "W 1500 L -600"
        assert page.eval_on_selector_all("[data-preset].active", "(bs) => bs.map((b) => b.dataset.preset)") == ["lung"]
        for key, kind in (("o", "opacity"), ("g", "lung")):
            page.focus("#ct-viewport")
            page.keyboard.press(key)
            assert page.is_checked(f"input[data-map={kind}]")
        wait_rendered(page)
        save_screenshot(page, screenshot)
        if run.label != "NP":  # the same slice with the heatmap and the lung outline only
            for key, kind, on in (("o", "opacity", False), ("h", "joint", True)):
                page.focus("#ct-viewport")
                page.keyboard.press(key)
                assert page.is_checked(f"input[data-map={kind}]") == on
            wait_rendered(page)
            save_screenshot(page, screenshot.replace(".png", "-saliency.png"))
        assert not page.errors, page.errors

"""The lungscope.analysis/2 figures in a real browser: the worklist's opacity column and "outside the model's
experience" marker (first under "least certain first", and its filter), the viewer's banner, opacity figures and
the opacity overlay (GGO and consolidation coloured, with a legend, toggled with `o`); on a slice with both kinds
of opacity, each drawn in its legend's colour beside the saliency heatmap, inside a lung outline that holds the
phantom's lesions."""
from __future__ import annotations

import numpy as np
import pytest

from e2e_helpers import (change_where, differs, go_to_slice, heat_density, login, on_screen, open_viewer,
                         save_screenshot, served_map, slice_index, viewport_pixels, wait_rendered)

pytestmark = pytest.mark.e2e

OUTSIDE_TEXT = "Outside the model's experience: the AI result is unreliable"


def flag_outside(study) -> None:
    """Record the study's run as a domain model would flag it: the phantoms are the model's own training data, so
    the shipped model never finds them outside its experience."""
    from webapp.analysis.models import AnalysisRun
    from webapp.analysis.columns import refresh_ai_columns

    run = study.analysis_runs.get()
    domain = {"score": 0.97, "threshold": 0.5, "outside": True}
    AnalysisRun.objects.filter(pk=run.pk).update(domain_score=0.97, domain_outside=True,
                                                 result={**run.result, "domain": domain})
    refresh_ai_columns([study.pk])


def test_worklist_and_viewer_show_opacity_and_the_outside_flag(page, plain_world):
    from webapp.analysis import maps

    world = plain_world
    covid, np_study = world.studies
    run = covid.analysis_runs.get()
    opacity = run.result["opacity"]
    assert run.opacity_percent == opacity["percent"] > 0, "the COVID phantom's lesions are opacities"
    flag_outside(covid)

    login(page, world, "clin")
    page.wait_for_selector("body[data-loaded=true]")
    covid_row, np_row = (page.locator(f"tr[data-study-id='{s.pk}']") for s in (covid, np_study))
    assert covid_row.locator("td.opacity").inner_text() == f"{opacity['percent']:.1f}%"
    assert covid_row.locator(".outside-flag").get_attribute("title") == OUTSIDE_TEXT
    assert np_row.locator(".outside-flag").count() == 0
    assert page.locator("th[data-order=opacity_percent]").text_content() == "Opacity %"

    # "Least certain first" opens with the flagged study, whichever result is the less certain.
    page.select_option("select[name=ordering]", "-ai_uncertainty")
    page.wait_for_function(f"() => document.querySelector('tr.study-row')?.dataset.studyId === '{covid.pk}'")
    page.select_option("select[name=outside]", "true")
    page.wait_for_function("() => document.querySelectorAll('tr.study-row').length === 1")
    assert page.locator("tr.study-row").get_attribute("data-study-id") == str(covid.pk)
    save_screenshot(page, "worklist-outside.png")

    open_viewer(page, world, covid)
    banner = page.locator("#outside-banner")
    assert banner.is_visible() and OUTSIDE_TEXT in banner.inner_text()
    for key, value in (("total", opacity["percent"]), ("high", opacity["high_percent"]),
                       ("left", opacity["per_lung"]["left"]), ("right", opacity["per_lung"]["right"])):
        assert page.inner_text(f"#opacity-panel [data-measure={key}]") == f"{value:.1f}%"
    legend = page.inner_text(".opacity-legend")
    assert "Ground-glass" in legend and "Consolidation" in legend

    # The slice with the most opacity (no maps stored: the run was analysed without saliency).
    shown = max(run.slices.all(), key=lambda s: s.opacity_px)
    labels = maps.load_opacity_slice(run.pk, shown.index)
    go_to_slice(page, slice_index(covid, shown.sop_instance_uid))
    before = viewport_pixels(page)
    page.keyboard.press("o")
    assert page.is_checked("input[data-map=opacity]")
    wait_rendered(page)
    after = viewport_pixels(page)
    assert differs(before, after, 0.05), "the opacity overlay did not change the image"
    ys, xs = np.nonzero(labels)
    where = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    assert heat_density(page, before, after, where) > 3, "the overlay is not on the opacities"
    change = (after - before).reshape(-1, 3)
    assert change[:, 0].sum() > 2 * max(change[:, 2].sum(), 1), "the overlay is not amber / red"
    save_screenshot(page, "viewer-opacity.png")
    page.keyboard.press("o")
    wait_rendered(page)
    assert not differs(before, viewport_pixels(page), 0.05), "toggling the overlay off did not remove it"
    assert not page.errors, page.errors

    open_viewer(page, world, np_study)
    assert page.locator("#outside-banner").is_hidden()


def rgb(css: str) -> np.ndarray:
    """'rgb(255, 196, 0)' -> [255, 196, 0]."""
    return np.array([float(v) for v in css[css.index("(") + 1:css.index(")")].split(",")[:3]])


def test_opacity_labels_in_their_legend_colours_beside_the_heatmap_inside_the_lung_outline(page, world):
    from scipy.ndimage import binary_dilation, binary_erosion

    from webapp.analysis import maps

    covid, phantom = world.studies[0], world.phantoms[0]
    run = covid.analysis_runs.get()
    # A slice with stored saliency (the model calls it diseased) and both kinds of opacity.
    labels = {s.index: maps.load_opacity_slice(run.pk, s.index) for s in run.slices.exclude(maps="")}
    index = max(labels, key=lambda k: min((labels[k] == 1).sum(), (labels[k] == 2).sum()))
    shown = labels[index]
    assert min((shown == 1).sum(), (shown == 2).sum()) > 100, "no slice with both ground glass and consolidation"
    login(page, world, "clin")
    open_viewer(page, world, covid)
    go_to_slice(page, slice_index(covid, run.slices.get(index=index).sop_instance_uid))
    plain = viewport_pixels(page)

    # The opacity labels (`o`), then the heatmap (`h`): both stay on, and the heatmap shows at its hot pixels over
    # what the opacity overlay drew (the saliency is kept inside the lungs and mostly falls on the opacities).
    page.focus("#ct-viewport")
    page.keyboard.press("o")
    wait_rendered(page)
    opacity_only = viewport_pixels(page)
    page.focus("#ct-viewport")
    page.keyboard.press("h")
    assert page.is_checked("input[data-map=joint]") and page.is_checked("input[data-map=opacity]")
    wait_rendered(page)
    both = viewport_pixels(page)
    joint = served_map(page, run.pk, index, "joint")
    heat = joint >= 21  # drawn at all: the colour map is transparent below 8 % of the map's maximum
    inside, _ = change_where(page, opacity_only, both, joint >= 64)
    assert inside > 30, f"the heatmap is hidden with the opacity overlay on ({inside:.1f} at its hot pixels)"

    # Ground glass and consolidation each in its legend's colour: what the overlay adds at their pixels (away from
    # their edges and from the heatmap), unblended with the overlay's opacity, is the swatch's colour.
    alpha = float(page.input_value("input[data-opacity=opacity]"))
    legend = page.eval_on_selector_all(".opacity-legend .swatch", "(ss) => ss.map((s) => getComputedStyle(s).backgroundColor)")
    assert page.inner_text(".opacity-legend").split()[:1] == ["Ground-glass"], "the legend lists ground glass first"
    for label, css in zip((1, 2), legend):
        core = binary_erosion(shown == label) & ~binary_dilation(heat, iterations=2)
        under, _ = on_screen(page, both.shape[:2], core)
        colour = np.median((both[under] - (1 - alpha) * plain[under]) / alpha, axis=0)
        assert np.abs(colour - rgb(css)).max() < 20, f"label {label} drawn in {colour.round()}, its legend says {css}"
    assert np.abs(rgb(legend[0]) - rgb(legend[1])).max() > 100, "ground glass and consolidation look alike"

    # The lung outline (`g`) is drawn on the boundary of the run's lung mask, and that mask holds the lesions.
    page.focus("#ct-viewport")
    page.keyboard.press("g")
    wait_rendered(page)
    lungs = served_map(page, run.pk, index, "lung") > 127
    boundary = binary_dilation(lungs & ~binary_erosion(lungs), iterations=1)
    inside, outside = change_where(page, both, viewport_pixels(page), boundary)
    assert inside > 20 * max(outside, 0.1), f"the outline is not the lung mask's edge: {inside:.1f} vs {outside:.2f}"
    lesion = phantom.lesion_mask[index] > 0
    held = (lesion & lungs).sum() / lesion.sum()
    assert held >= 0.95, f"the lung outline leaves {1 - held:.1%} of the slice's lesion pixels outside"
    save_screenshot(page, "viewer-opacity-heatmap-lungs.png")
    assert not page.errors, page.errors

"""The lungscope.analysis/2 figures in a real browser: the worklist's opacity column and "outside the model's
experience" marker (first under "least certain first", and its filter), the viewer's banner, opacity figures and
the opacity overlay (GGO and consolidation coloured, with a legend, toggled with `o`)."""
from __future__ import annotations

import numpy as np
import pytest

from e2e_helpers import (differs, go_to_slice, heat_density, login, open_viewer, save_screenshot, slice_index,
                         viewport_pixels, wait_rendered)

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

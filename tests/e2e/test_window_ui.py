"""The viewer's window in a real browser: the W/L readout and the lit preset button always name the window on screen.

The phantoms carry the lung window in their headers (W 1500 L -600, the viewer's default), which hides whether
the viewer keeps its own window or falls back to a slice's; real series do not (RICORD's say W 400 L 40). So the
phantom here is written with RICORD's window: the viewer opens in the lung preset and must stay in it on every
slice, and a W/L drag must start from the window shown.
"""
from __future__ import annotations

import pydicom
import pytest

from e2e_helpers import drag, image_to_page, ingested_study, login, open_viewer, wait_rendered

pytestmark = pytest.mark.e2e

SERIES_WINDOW = (400, 40)  # (width, level) written into every header: RICORD's, and the mediastinum preset's


def readout(page) -> tuple[str, list[str]]:
    """The W/L readout and the presets whose buttons are lit."""
    lit = page.eval_on_selector_all("[data-preset].active", "(bs) => bs.map((b) => b.dataset.preset)")
    return page.inner_text("#wl-info"), lit


def test_the_readout_and_the_lit_preset_show_the_window_on_every_slice(page, bare_world, phantom_files, tmp_path):
    (_, files), *_ = phantom_files.values()
    for path in files:  # the phantom as a scanner would send it, its own display window in the header
        ds = pydicom.dcmread(path)
        ds.WindowWidth, ds.WindowCenter = SERIES_WINDOW
        ds.save_as(tmp_path / path.name)
    study = ingested_study([tmp_path / path.name for path in files], "COVID")
    login(page, bare_world, "clin")
    open_viewer(page, bare_world, study)
    assert readout(page) == ("W 1500 L -600", ["lung"])

    # Scrolling keeps the lung window: every slice's header says W 400 L 40.
    page.focus("#ct-viewport")
    start = int(page.get_attribute("#slice-info", "data-index"))
    for step in range(1, 6):
        page.keyboard.press("ArrowDown")
        page.wait_for_function(f"() => document.querySelector('#slice-info').dataset.index === '{start + step}'")
        wait_rendered(page)
        assert readout(page) == ("W 1500 L -600", ["lung"]), f"{step} slice(s) down"

    # A W/L drag starts from the window shown (the lung's, not the header's) and leaves no preset lit.
    drag(page, image_to_page(page), (128, 128), (148, 128))
    page.wait_for_function("() => document.querySelector('#wl-info').textContent !== 'W 1500 L -600'")
    text, lit = readout(page)
    width = int(text.split()[1])
    assert abs(width - 1500) < abs(width - SERIES_WINDOW[0]), f"the drag started from the header's window: {text}"
    assert lit == [], f"{lit} lit after a W/L drag to {text}"
    page.keyboard.press("ArrowDown")
    wait_rendered(page)
    assert readout(page) == (text, []), "the dragged window was not kept on the next slice"

    # `r` goes back to the preset; the mediastinum preset is the header's window, and it is kept too.
    page.keyboard.press("r")
    wait_rendered(page)
    assert readout(page) == ("W 1500 L -600", ["lung"])
    page.keyboard.press("2")
    wait_rendered(page)
    page.keyboard.press("ArrowUp")
    wait_rendered(page)
    assert readout(page) == ("W 400 L 40", ["mediastinum"])
    assert not page.errors, page.errors

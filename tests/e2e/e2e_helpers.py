"""Helpers for the browser tests: signing in, waiting for the viewer, pixel statistics of the viewport, screenshots."""
from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
PASSWORD = "e2e-password-1"
MODEL = "default"  # the bundle every analysis here runs: the trained one the app ships (models/default)
SLICES, SIZE = 40, 256  # phantom studies: the grid the default model was trained on (smaller ones blur its lesions)


def ingested_study(files: list[Path], label: str):
    """DICOM files ingested one by one like an upload, queueing no analysis: the study they made."""
    from webapp.studies.ingest import ingest_file
    from webapp.studies.models import Study

    results = []
    for path in files:
        with open(path, "rb") as fh:
            results.append(ingest_file(fh, path.name, source_label=label))
    assert all(r.landed for r in results), [r.reason for r in results if not r.landed]
    return Study.objects.get(study_instance_uid=results[0].study_instance_uid)


def login(page, world, username: str) -> None:
    page.goto(f"{world.url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    # The worklist, whatever query it has written into the address by the time this looks (it adds its ordering as
    # soon as its script runs: an exact "/" missed it whenever the script was faster than this call).
    page.wait_for_url(lambda url: url.split("?")[0] == f"{world.url}/")


def open_viewer(page, world, study) -> None:
    page.goto(f"{world.url}/studies/{study.pk}/")
    page.wait_for_selector("#viewer-app[data-ready=true]", timeout=30_000)
    wait_rendered(page)


def wait_rendered(page) -> None:
    """Until the image and every overlay that is on are drawn for the current slice."""
    page.wait_for_function("""() => {
        const maps = document.querySelector('.maps-layer');
        return document.querySelector('#slice-info')?.dataset.index !== undefined
            && (!maps || maps.dataset.complete === 'true');
    }""", timeout=30_000)
    page.wait_for_timeout(150)  # one more animation frame for the WebGL canvas


def go_to_slice(page, index: int) -> None:
    page.focus("#ct-viewport")  # the shortcuts ignore keys typed into a form control (e.g. an overlay's checkbox)
    page.keyboard.press("Home")
    for _ in range(index):
        page.keyboard.press("ArrowDown")
    page.wait_for_function(f"() => document.querySelector('#slice-info').dataset.index === '{index}'")
    wait_rendered(page)


def image_to_page(page, size: int = SIZE):
    """A function from image pixel coordinates (x = column, pixel i spans [i, i+1)) to page coordinates for
    page.mouse: the image (size x size) is fitted to the viewport and centred (no zoom or pan)."""
    rect = page.locator("#ct-viewport").bounding_box()
    scale = min(rect["width"], rect["height"]) / size
    left = rect["x"] + (rect["width"] - size * scale) / 2
    top = rect["y"] + (rect["height"] - size * scale) / 2
    return lambda px, py: (left + px * scale, top + py * scale)


def heat_density(page, before: np.ndarray, after: np.ndarray, box) -> float:
    """How much more an overlay changed the viewport inside an image box (inclusive x0, y0, x1, y1) than on
    average over the image: the mean change per screen pixel inside over the mean over the whole image."""
    rect = page.locator("#ct-viewport").bounding_box()
    at = image_to_page(page)
    change = np.abs(after - before).sum(axis=2)
    (ix0, iy0), (ix1, iy1) = at(0, 0), at(SIZE, SIZE)
    (bx0, by0), (bx1, by1) = at(box[0], box[1]), at(box[2] + 1, box[3] + 1)
    crop = lambda x0, y0, x1, y1: change[round(y0 - rect["y"]):round(y1 - rect["y"]),  # noqa: E731
                                         round(x0 - rect["x"]):round(x1 - rect["x"])]
    return float(crop(bx0, by0, bx1, by1).mean() / max(crop(ix0, iy0, ix1, iy1).mean(), 1e-6))


def on_screen(page, shape: tuple[int, int], mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a viewport screenshot of ``shape`` (rows, columns): the screen pixels whose centre lies on a pixel of an
    image mask (rows x columns of the slice, fitted and centred as in image_to_page), and those on the image."""
    rows, cols = mask.shape
    rect = page.locator("#ct-viewport").bounding_box()
    at = image_to_page(page, cols)  # square slices
    (x0, y0), (x1, y1) = at(0, 0), at(cols, rows)
    sy, sx = np.mgrid[0:shape[0], 0:shape[1]] + 0.5
    ix = np.floor((sx + rect["x"] - x0) / (x1 - x0) * cols).astype(int)
    iy = np.floor((sy + rect["y"] - y0) / (y1 - y0) * rows).astype(int)
    on_image = (ix >= 0) & (ix < cols) & (iy >= 0) & (iy < rows)
    under = np.zeros(shape, bool)
    under[on_image] = mask[iy[on_image], ix[on_image]]
    return under, on_image


def change_where(page, before: np.ndarray, after: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """The mean change of the viewport's pixels (summed over R, G, B) over an image mask's pixels, and over the rest
    of the image: for an overlay, how much it drew where its map says and elsewhere, however little it covers."""
    change = np.abs(after - before).sum(axis=2)
    under, on_image = on_screen(page, change.shape, mask)
    return float(change[under].mean()), float(change[on_image & ~under].mean())


def served_map(page, run_id: int, index: int, kind: str) -> np.ndarray:
    """The map PNG the server serves the viewer for one slice, fetched in the page's session."""
    origin = page.evaluate("() => location.origin")
    response = page.request.get(f"{origin}/api/analysis-runs/{run_id}/slices/{index}/maps/{kind}.png")
    assert response.ok, (response.status, response.text())
    return np.asarray(Image.open(io.BytesIO(response.body())))


def drag(page, at, start, end, steps: int = 8) -> None:
    """A real mouse drag (left button) between two image points, through a midpoint, as a user would."""
    page.mouse.move(*at(*start))
    page.mouse.down()
    mid = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
    page.mouse.move(*at(*mid), steps=steps // 2)
    page.mouse.move(*at(*end), steps=steps // 2)
    page.mouse.up()


def viewport_pixels(page) -> np.ndarray:
    png = page.locator("#ct-viewport").screenshot()
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)


def differs(a: np.ndarray, b: np.ndarray, threshold: float = 1.0) -> bool:
    return float(np.abs(a - b).mean()) > threshold


def slice_index(study, sop_instance_uid: str) -> int:
    """The viewer's slice index (0 = the most caudal, as in the phantom) of one of the study's images."""
    instances = sorted(study.series.get().instances.all(), key=lambda i: i.image_position_patient[2])
    return [i.sop_instance_uid for i in instances].index(sop_instance_uid)


def lesion_share(phantom, index: int, box) -> float:
    """The share of a box's pixels (inclusive corners) that are a ground-truth lesion of the phantom."""
    return float(phantom.lesion_mask[index, box.y0:box.y1 + 1, box.x0:box.x1 + 1].mean())


def ai_boxes_on_lesions(study, phantom, diseased: bool = False) -> list:
    """The study's AI boxes as (share of lesion under the box, slice index, box), the one covering the most lesion
    pixels first; ``diseased``: only those on slices the model calls diseased, whose maps (CAM, IG) the viewer draws
    for the disease (an opacity box may also lie on a slice it calls NP)."""
    from webapp.review.models import Box

    called = {s.index for s in study.analysis_runs.get().slices.all()
              if s.probabilities and max(s.probabilities, key=s.probabilities.get) != "NP"}
    scored = []
    for box in Box.objects.filter(study=study, provenance="ai"):
        index = slice_index(study, box.sop_instance_uid)
        if index in called or not diseased:
            scored.append((lesion_share(phantom, index, box), index, box))
    return sorted(scored, key=lambda t: -t[0] * (t[2].x1 - t[2].x0 + 1) * (t[2].y1 - t[2].y0 + 1))


def save_screenshot(page, name: str) -> Path:
    """Into test-artifacts/; also into docs/screenshots/ (the README's pictures) when LUNGSCOPE_UPDATE_SCREENSHOTS=1,
    so an ordinary test run leaves the working tree clean. The toasts are dismissed first (a click each, as a user
    would), so they do not cover the side panel, and the viewer's side panel is scrolled back to its top."""
    page.evaluate("""() => {
        document.querySelectorAll('.toast').forEach((toast) => toast.click());
        const side = document.querySelector('aside.side');
        if (side) side.scrollTop = 0;
    }""")
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    if os.environ.get("LUNGSCOPE_UPDATE_SCREENSHOTS") == "1":
        docs = REPO / "docs" / "screenshots"
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, docs / name)
    return path

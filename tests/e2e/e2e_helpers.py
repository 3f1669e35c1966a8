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
SLICES, SIZE = 16, 128  # phantom studies: small, so ingest and analysis stay quick


def login(page, world, username: str) -> None:
    page.goto(f"{world.url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{world.url}/")


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


def save_screenshot(page, name: str) -> Path:
    """Into test-artifacts/; also into docs/screenshots/ (the README's pictures) when LUNGSCOPE_UPDATE_SCREENSHOTS=1,
    so an ordinary test run leaves the working tree clean."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    if os.environ.get("LUNGSCOPE_UPDATE_SCREENSHOTS") == "1":
        docs = REPO / "docs" / "screenshots"
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, docs / name)
    return path

"""Crop geometry: the lung box made square and kept in the image, and the way back to original pixels."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from inference.preprocess import crop_geometry, near_lungs_only, prepare_slice


def _mask(shape: tuple[int, int], y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def test_crop_is_square_with_margin_and_inside_the_image() -> None:
    g = crop_geometry(_mask((512, 512), 100, 300, 150, 400), margin=0.05, shape=(512, 512))
    assert g.y1 - g.y0 == g.x1 - g.x0 == 275  # 250 * 1.1
    assert g.y0 <= 100 and g.y1 >= 300 and g.x0 <= 150 and g.x1 >= 400
    edge = crop_geometry(_mask((512, 512), 0, 200, 0, 100), margin=0.1, shape=(512, 512))
    assert (edge.y0, edge.x0) == (0, 0) and edge.y1 - edge.y0 == edge.x1 - edge.x0 == 240  # shifted, not cut


def test_no_lung_means_the_whole_image() -> None:
    g = crop_geometry(np.zeros((300, 400), bool), margin=0.05, shape=(300, 400))
    assert (g.y0, g.x0, g.y1, g.x1) == (0, 0, 300, 400)


def test_box_round_trip_from_224_to_original() -> None:
    """A bright square drawn in original pixels, found in the 224 input, maps back onto itself (within a pixel)."""
    shape = (512, 512)
    g = crop_geometry(_mask(shape, 80, 420, 60, 460), margin=0.05, shape=shape)
    image = np.zeros(shape, np.float32)
    image[200:260, 300:340] = 1.0
    x224 = prepare_slice(image, g)
    ys, xs = np.nonzero(x224 > 0.5)
    back = g.box_to_original(xs.min(), ys.min(), xs.max(), ys.max())
    assert np.allclose(back, (300, 200, 339, 259), atol=2)
    # whole-output box covers exactly the crop, and points map to pixel centres
    assert g.box_to_original(0, 0, 223, 223) == (g.x0, g.y0, g.x1 - 1, g.y1 - 1)
    cx, cy = g.to_original(111.5, 111.5)
    assert np.isclose(cx, (g.x0 + g.x1) / 2 - 0.5) and np.isclose(cy, (g.y0 + g.y1) / 2 - 0.5)


def test_map_back_to_original_keeps_the_crop_content() -> None:
    shape = (256, 320)
    g = crop_geometry(_mask(shape, 40, 200, 60, 260), margin=0.05, shape=shape)
    image = np.random.default_rng(0).random(shape).astype(np.float32)
    image = np.round(image)  # blocky content survives a down/up resize in the mean
    back = g.map_to_original(prepare_slice(image, g))
    assert back.shape == shape
    assert np.all(back[: g.y0] == 0) and np.all(back[g.y1:] == 0)
    inside = (slice(g.y0, g.y1), slice(g.x0, g.x1))
    assert abs(back[inside].mean() - image[inside].mean()) < 0.01


def test_beyond_the_lungs_reach_is_blanked_within_it_kept() -> None:
    """``crop.outside_lungs_mm``: the model input keeps the lungs and a margin of ``reach`` original pixels round
    them (scaled into the output grid) and sets the rest (spine, heart, chest wall) to 0; a slice without lung is
    left whole."""
    image = np.full((200, 200), 0.6, dtype=np.float32)
    lung = np.zeros((200, 200), dtype=bool)
    lung[60:140, 30:90] = True  # one lung, 80 x 60 pixels
    geometry = crop_geometry(lung, 0.05, lung.shape, 100)  # ~84 original pixels -> 100: 0.84 per output pixel
    plain = prepare_slice(image, geometry, 100)
    masked = prepare_slice(image, geometry, 100, lung, reach_px=8.4)  # 10 output pixels
    lung_out = geometry.mask_to_output(lung)
    distance = ndimage.distance_transform_edt(~lung_out)
    assert np.array_equal(masked[distance <= 9.5], plain[distance <= 9.5])
    assert (masked[distance > 10.5] == 0).all() and (distance > 10.5).any()
    assert np.array_equal(near_lungs_only(plain, np.zeros_like(lung_out), 5.0), plain)

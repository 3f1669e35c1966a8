"""Boxes and severity from a saliency map: a blob gives a box where the blob is, in original pixels."""
from __future__ import annotations

import numpy as np
from skimage.filters import threshold_isodata

from inference.boxes import (blur5, extract_lesions, infection_percent, lung_volume_ml, opacity_boxes, saliency_mask,
                            smoothed_magnitude)
from inference.preprocess import crop_geometry


def _blob(shape: tuple[int, int], cy: float, cx: float, sigma: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma ** 2))


def test_isodata_binarisation_is_scikit_images() -> None:
    rng = np.random.default_rng(0)
    saliency = _blob((224, 224), 80, 150, 10) * rng.uniform(0.5, 1.5) + 0.05 * rng.standard_normal((224, 224))
    blurred = blur5(saliency)
    expected = blurred > threshold_isodata(blurred)
    labels, blurred_again = saliency_mask(saliency, min_area_px=1)
    np.testing.assert_array_equal(blurred_again, blurred)
    # the closing only adds pixels next to the Isodata foreground, never removes a foreground pixel
    assert np.all((labels > 0)[expected])
    assert (labels > 0).sum() <= expected.sum() * 1.2


def test_blur_is_a_5x5_kernel() -> None:
    impulse = np.zeros((11, 11))
    impulse[5, 5] = 1.0
    support = np.argwhere(blur5(impulse) > 0)
    assert support.min(axis=0).tolist() == [3, 3] and support.max(axis=0).tolist() == [7, 7]


def test_the_smoothed_magnitude_points_at_dense_attribution_not_at_a_lone_pixel() -> None:
    """IG is speckled: a lone pixel can outweigh every pixel of a region of dense attribution of either sign. The
    smoothed magnitude (the form the pipeline keeps) peaks inside the region; the raw map's maximum is the lone
    pixel."""
    rng = np.random.default_rng(3)
    saliency = 0.02 * rng.standard_normal((64, 64))
    saliency[40:48, 10:18] = rng.choice([-0.5, 0.5], size=(8, 8))  # attribution of both signs, as IG gives
    saliency[12, 50] = 1.0
    assert np.unravel_index(np.argmax(np.abs(saliency)), saliency.shape) == (12, 50)
    smoothed = smoothed_magnitude(saliency)
    assert np.all(smoothed >= 0)
    peak = np.unravel_index(np.argmax(smoothed), smoothed.shape)
    assert 40 <= peak[0] < 48 and 10 <= peak[1] < 18
    np.testing.assert_allclose(blur5(saliency), smoothed / smoothed.max())


def test_blob_gives_one_box_at_the_blob_in_original_pixels() -> None:
    shape = (512, 512)
    lungs = np.zeros(shape, bool)
    lungs[100:400, 80:440] = True
    geometry = crop_geometry(lungs, 0.05, shape)
    # the blob sits at original (row 250, col 300); place it in the 224 grid through the crop geometry
    cy = (250 + 0.5 - geometry.y0) / geometry.scale_y - 0.5
    cx = (300 + 0.5 - geometry.x0) / geometry.scale_x - 0.5
    joint = -_blob((224, 224), cy, cx, 6.0)  # the sign does not matter: boxes use the magnitude
    lesions = extract_lesions(joint, geometry, lungs, "covid_lesion", min_area_px=30)
    assert len(lesions.boxes) == 1
    box = lesions.boxes[0]
    assert box.x0 < 300 < box.x1 and box.y0 < 250 < box.y1
    assert abs((box.x0 + box.x1) / 2 - 300) <= 2 and abs((box.y0 + box.y1) / 2 - 250) <= 2
    assert 10 < box.x1 - box.x0 < 60 and box.label == "covid_lesion" and 0 < box.score <= 1
    assert lesions.infected_area_px == int((lesions.positive & lungs).sum()) > 0
    rows, cols = np.nonzero(lesions.positive)
    assert rows.min() >= box.y0 - 1 and rows.max() <= box.y1 + 1 and cols.min() >= box.x0 - 1


def test_saliency_outside_the_lungs_gives_no_box_and_small_spots_are_dropped() -> None:
    shape = (256, 256)
    lungs = np.zeros(shape, bool)
    lungs[60:200, 60:200] = True
    geometry = crop_geometry(None, 0.0, shape)  # whole image
    joint = _blob((224, 224), 20, 20, 5.0) + 0.9 * _blob((224, 224), 110, 110, 1.0)
    lesions = extract_lesions(joint, geometry, lungs, "cap_lesion", min_area_px=30)
    assert lesions.boxes == [] and lesions.infected_area_px == 0


def test_severity_numbers() -> None:
    assert infection_percent(25, 100) == 25.0 and infection_percent(0, 0) == 0.0
    mask = np.ones((2, 10, 10), bool)
    assert lung_volume_ml(mask, (2.0, 0.5, 0.5)) == 200 * 0.5 / 1000
    assert lung_volume_ml(mask, None) is None


def test_a_lone_spot_and_an_empty_map() -> None:
    """A single salient square on zeros is one component; an all-zero joint map (scales that never agree) none."""
    saliency = np.zeros((64, 64))
    saliency[30:38, 30:38] = 1.0
    labels, _ = saliency_mask(saliency, min_area_px=10)
    assert labels.max() == 1 and labels[34, 34] == 1
    assert saliency_mask(np.zeros((64, 64)))[0].max() == 0


def test_opacity_boxes_are_ranked_by_saliency_then_size_and_small_ones_dropped() -> None:
    """Every opacity component of at least the minimum area becomes a box: the one the saliency points at first,
    the others after it at half the score (the classifier often misses where the lesions are), larger before
    smaller; without saliency, by size alone."""
    opacity = np.zeros((100, 100), dtype=np.uint8)
    opacity[10:40, 10:40] = 1  # large, away from the saliency
    opacity[60:75, 60:75] = 2  # smaller, under the saliency
    opacity[5:8, 80:83] = 1  # below the minimum area
    opacity[80:90, 10:20] = 1  # the smallest kept
    salient = np.zeros((100, 100), dtype=bool)
    salient[62:70, 62:70] = True
    boxes = opacity_boxes(opacity, salient, "cap_lesion", min_area_px=50, score=0.8)
    assert [(b.x0, b.y0, b.x1, b.y1) for b in boxes] == [(60, 60, 74, 74), (10, 10, 39, 39), (10, 80, 19, 89)]
    assert boxes[0].score > boxes[1].score == boxes[2].score == 0.4 and {b.label for b in boxes} == {"cap_lesion"}
    by_size = opacity_boxes(opacity, None, "covid_lesion", min_area_px=50, score=0.5)
    assert [(b.x0, b.y0) for b in by_size] == [(10, 10), (60, 60), (10, 80)] and {b.score for b in by_size} == {0.5}

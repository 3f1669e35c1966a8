"""The sliding window W(Q, S) on histograms whose modes are known."""
from __future__ import annotations

import numpy as np
import pytest

from inference.normalize import fixed_window, normalize_volume, scale_8bit, sliding_window


def test_window_centres_on_the_dominant_mode() -> None:
    rng = np.random.default_rng(0)
    big = rng.uniform(-900, -700, 50_000)  # lung parenchyma: the dominant mode
    small = rng.uniform(0, 100, 10_000)  # soft tissue
    values = np.concatenate([big, small])
    out, (lo, hi) = sliding_window(values, Q=400, S=10, hu_range=(-1200, 600))
    assert hi - lo == 400
    assert lo <= -900 and hi >= -700  # the window covers the whole dominant mode
    assert abs((lo + hi) / 2 - (-800)) <= 10  # ties are resolved to the centred position
    assert out.dtype == np.float32 and 0.0 <= out.min() and out.max() == 1.0


def test_window_moves_with_the_mode() -> None:
    """A scanner shift of the lung HU moves the window by the same amount: the point of W(Q, S)."""
    rng = np.random.default_rng(1)
    base = np.concatenate([rng.normal(-850, 30, 40_000), rng.normal(40, 20, 20_000)])
    _, (lo_a, _) = sliding_window(base, Q=300, S=5, hu_range=(-1100, 400))
    _, (lo_b, _) = sliding_window(base + 60, Q=300, S=5, hu_range=(-1100, 400))
    assert abs((lo_b - lo_a) - 60) <= 5


def test_mask_selects_the_histogram_but_all_values_are_mapped() -> None:
    values = np.full((4, 10, 10), 50.0)
    values[:, 2:8, 2:8] = -800.0
    mask = values < -500
    out, (lo, hi) = sliding_window(values, Q=200, S=10, mask=mask)
    assert lo <= -800 <= hi
    assert out.shape == values.shape
    assert np.all(out[~mask] == 1.0)  # soft tissue above the lung window clips to 1


def test_hu_range_limits_the_relevant_voxels() -> None:
    rng = np.random.default_rng(2)
    values = np.concatenate([rng.uniform(-3000, -2000, 100_000), rng.uniform(-800, -600, 10_000)])
    _, (lo, hi) = sliding_window(values, Q=400, S=10, hu_range=(-1200, 600))
    assert lo >= -1200 and lo <= -800 and hi >= -600


def test_fixed_window_and_8bit() -> None:
    np.testing.assert_allclose(fixed_window(np.array([-1350.0, -600.0, 150.0]), 1500, -600), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(scale_8bit(np.array([0, 51, 255], dtype=np.uint8)), [0.0, 0.2, 1.0])
    out, window = normalize_volume(np.array([0, 255]), {"method": "sliding_window", "Q": 1, "S": 1}, is_hu=False)
    assert window is None and out.tolist() == [0.0, 1.0]
    with pytest.raises(ValueError):
        normalize_volume(np.zeros(3), {"method": "nope"})

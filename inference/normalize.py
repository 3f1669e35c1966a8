"""Intensity normalisation: the paper's sliding histogram window W(Q, S), a fixed window for comparison, 8-bit scaling.

CT scanners and reconstruction kernels shift the HU of lung tissue by tens of units, so a fixed window (e.g. the lung
window W1500/L-600) puts the same tissue at different grey levels from scanner to scanner. Hu et al. instead slide a
window of fixed width ``Q`` in steps of ``S`` over the histogram of the lung-relevant voxels and keep the position that
covers the most voxels: the window follows the study's own intensity mass. The chosen window is mapped to [0, 1].

Training and inference both call :func:`normalize_volume` with the bundle's ``normalization`` block, so the model
sees the same intensities in both.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["sliding_window", "sliding_window_bounds", "fixed_window", "scale_8bit", "window_to_unit", "normalize_volume",
           "study_window", "apply_window"]


#: Voxels binned at a time by :func:`sliding_window_bounds`.
_CHUNK = 1 << 20


def window_to_unit(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map ``[lo, hi]`` linearly to ``[0, 1]`` and clip: the common last step of every window."""
    if hi <= lo:
        raise ValueError(f"window upper bound {hi} must exceed lower bound {lo}")
    out = (np.asarray(values, dtype=np.float32) - np.float32(lo)) / np.float32(hi - lo)
    return np.clip(out, 0.0, 1.0, out=out)


def _bin_width(Q: float, S: float) -> float:
    """The histogram resolution at which every window edge falls on a bin edge (exact counts).

    With integer Q and S (the usual HU case) that is gcd(Q, S); otherwise S, and Q is rounded to a multiple of S.
    """
    if float(Q).is_integer() and float(S).is_integer():
        return float(math.gcd(int(Q), int(S)))
    return float(S)


def sliding_window(values: np.ndarray, Q: float, S: float, mask: np.ndarray | None = None,
                   hu_range: tuple[float, float] | list[float] | None = None) -> tuple[np.ndarray, tuple[float, float]]:
    """``values`` mapped to [0, 1] through :func:`sliding_window_bounds`' window, and the window."""
    lo, hi = sliding_window_bounds(values, Q, S, mask, hu_range)
    return window_to_unit(values, lo, hi), (lo, hi)


def sliding_window_bounds(values: np.ndarray, Q: float, S: float, mask: np.ndarray | None = None,
                          hu_range: tuple[float, float] | list[float] | None = None) -> tuple[float, float]:
    """The paper's W(Q, S): the width-``Q`` window, moved in steps of ``S``, that covers the most relevant voxels.

    Args:
        values: intensities in HU, any shape.
        Q: window width (HU). The paper's default region of interest is about the lung window width.
        S: step between candidate window positions (HU); smaller is finer and slower.
        mask: optional bool array like ``values``: only these voxels (e.g. the lungs) form the histogram.
        hu_range: optional ``(lo, hi)``: only voxels inside it form the histogram, and the window slides inside it
            (when the range is narrower than Q, the window starts at its lower end). Without it the window slides over
            the relevant voxels' own min..max.

    Returns:
        The window ``(lo, hi)``. When several positions tie, the middle of the first tied run is taken, so a
        flat-topped mode is centred.
    """
    if Q <= 0 or S <= 0:
        raise ValueError("Q and S must be positive")
    values = np.asarray(values)
    relevant = values[np.asarray(mask, dtype=bool)] if mask is not None else values.ravel()
    if hu_range is not None:
        r_lo, r_hi = float(hu_range[0]), float(hu_range[1])
        relevant = relevant[(relevant >= r_lo) & (relevant <= r_hi)]
    elif relevant.size:
        r_lo, r_hi = float(relevant.min()), float(relevant.max())
    else:
        r_lo, r_hi = 0.0, float(Q)
    if relevant.size == 0:  # nothing lung-relevant: fall back to a window starting at the range's lower end
        return r_lo, r_lo + Q

    width = _bin_width(Q, S)
    q_bins, s_bins = max(1, int(round(Q / width))), max(1, int(round(S / width)))
    n_bins = max(q_bins, int(math.ceil((r_hi - r_lo) / width)) + 1)
    hist = np.zeros(n_bins, dtype=np.int64)
    for start in range(0, relevant.size, _CHUNK):  # a chunk at a time: float64 and int64 copies of a chunk only
        idx = np.floor((relevant[start:start + _CHUNK].astype(np.float64) - r_lo) / width).astype(np.int64)
        hist += np.bincount(np.clip(idx, 0, n_bins - 1), minlength=n_bins)
    cum = np.concatenate([[0], np.cumsum(hist)])
    starts = np.arange(0, n_bins - q_bins + 1, s_bins)
    counts = cum[starts + q_bins] - cum[starts]
    best = counts.max()
    first = int(np.argmax(counts == best))
    run_end = first
    while run_end + 1 < len(counts) and counts[run_end + 1] == best:
        run_end += 1
    start = int(starts[(first + run_end) // 2])
    lo = r_lo + start * width
    hi = lo + q_bins * width
    return float(lo), float(hi)


def fixed_window(values: np.ndarray, width: float, level: float) -> np.ndarray:
    """The radiologist's fixed window (e.g. lung: width 1500, level -600) mapped to [0, 1]; kept for comparison."""
    return window_to_unit(values, level - width / 2.0, level + width / 2.0)


def scale_8bit(values: np.ndarray) -> np.ndarray:
    """Already-windowed 8-bit images (PNG/JPEG) carry no HU: divide by 255 to reach [0, 1]."""
    return np.clip(np.asarray(values, dtype=np.float32) / np.float32(255.0), 0.0, 1.0)


def normalize_volume(array: np.ndarray, params: dict[str, Any], is_hu: bool = True,
                     mask: np.ndarray | None = None) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Normalise a whole study the way a bundle's ``normalization`` block says; the single entry point for both
    training and inference (inference takes :func:`study_window` once and :func:`apply_window` slice by slice,
    the same values without a float copy of the study). Returns the float32 [0, 1] array and the HU window used
    (None for non-HU input)."""
    window = study_window(array, params, is_hu, mask)
    return apply_window(array, window), window


def study_window(array: np.ndarray, params: dict[str, Any], is_hu: bool = True,
                 mask: np.ndarray | None = None) -> tuple[float, float] | None:
    """The HU window a bundle's ``normalization`` block gives a study; None for non-HU input (scaled by 255).

    ``params["method"]`` is ``sliding_window`` (keys ``Q``, ``S``, optional ``hu_range``; the histogram is the voxels
    inside ``mask`` when given and non-empty) or ``fixed_window`` (keys ``width``, ``level``). Non-HU input is scaled by
    255 whatever the method.
    """
    if not is_hu:
        return None
    method = params.get("method", "sliding_window")
    if method == "sliding_window":
        use_mask = mask if mask is not None and mask.any() else None
        return sliding_window_bounds(array, float(params["Q"]), float(params["S"]), mask=use_mask,
                                     hu_range=params.get("hu_range"))
    if method == "fixed_window":
        width, level = float(params["width"]), float(params["level"])
        return level - width / 2.0, level + width / 2.0
    raise ValueError(f"unknown normalisation method {method!r}: expected sliding_window or fixed_window")


def apply_window(values: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    """Values (a study or one of its slices) in [0, 1] through a :func:`study_window` result."""
    return scale_8bit(values) if window is None else window_to_unit(values, *window)

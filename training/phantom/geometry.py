"""The voxel grid of a phantom and the conversions between voxel indices and millimetres.

Anatomy is defined in millimetres (x to the patient's left = image right, y posterior = image down) and a
normalised cranio-caudal coordinate ``t`` (0 at the top of the scan, 1 at the bottom), so one anatomy renders on any
matrix size, pixel spacing or slice count. Slice 0 is the most caudal one: the array is ordered by increasing
patient z (ImagePositionPatient), the order in which a DICOM loader sorts the slices along the slice normal.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class Grid:
    n_slices: int
    size: int
    pixel_mm: float
    coverage_mm: float  # cranio-caudal length of the scan

    @property
    def dz_mm(self) -> float:
        return self.coverage_mm / self.n_slices

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.n_slices, self.size, self.size)

    def axis_mm(self) -> np.ndarray:
        """Pixel-centre coordinates (mm) along a row or column, centred on the image middle."""
        return ((np.arange(self.size, dtype=np.float32) - (self.size - 1) / 2.0) * self.pixel_mm).astype(np.float32)

    def slice_t(self, k: np.ndarray | int) -> np.ndarray:
        """Normalised cranio-caudal position of slice ``k`` (0 = top of the scan)."""
        return 1.0 - (np.asarray(k, dtype=np.float32) + 0.5) / self.n_slices

    @cached_property
    def _axis(self) -> np.ndarray:  # box_axes runs once per vessel segment: compute the axis once
        return self.axis_mm()

    def box_axes(self, lo: Sequence[float], hi: Sequence[float]) -> tuple[tuple[slice, ...], list[np.ndarray]] | None:
        """Voxel slices and mm coordinates (depth, y, x; broadcastable) of the region between two mm corners.

        ``lo``/``hi`` are (x, y, depth) in mm. Returns None when the region misses the grid. Scalar maths on
        purpose: this runs once per vessel segment.
        """
        half, n, px, last = (self.size - 1) / 2.0, self.n_slices, self.pixel_mm, self.size - 1
        c0, c1 = max(math.floor(lo[0] / px + half), 0), min(math.ceil(hi[0] / px + half), last)
        r0, r1 = max(math.floor(lo[1] / px + half), 0), min(math.ceil(hi[1] / px + half), last)
        k0 = max(math.floor(n * (1.0 - hi[2] / self.coverage_mm) - 0.5), 0)
        k1 = min(math.ceil(n * (1.0 - lo[2] / self.coverage_mm) - 0.5), n - 1)
        if c0 > c1 or r0 > r1 or k0 > k1:
            return None
        axis = self._axis
        depth = (1.0 - (np.arange(k0, k1 + 1, dtype=np.float32) + 0.5) / n) * self.coverage_mm
        coords = [depth[:, None, None], axis[r0:r1 + 1][None, :, None], axis[c0:c1 + 1][None, None, :]]
        return (slice(k0, k1 + 1), slice(r0, r1 + 1), slice(c0, c1 + 1)), coords

"""Branching tubes (pulmonary vessels, bronchi) grown from the hila and rasterised as anti-aliased cylinders.

A tree is grown breadth-first: each segment splits into two children rotated 20-40 degrees about a random axis,
shorter and thinner, until the radius is sub-millimetre or the tip leaves the lung. Rasterising touches only each
segment's bounding box; the coverage of a voxel by the cylinder (distance to the axis minus radius, over one pixel)
gives partial-volume edges, so thin peripheral vessels fade out as on real scans.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .geometry import Grid


@dataclass(frozen=True)
class Segment:
    a: np.ndarray  # (x, y, depth) mm
    b: np.ndarray
    radius: float


def _rotate(v: np.ndarray, rng: np.random.Generator, angle: np.ndarray) -> np.ndarray:
    """Rows of ``v`` (unit vectors) rotated by ``angle`` about random axes perpendicular to them (Rodrigues)."""
    axis = np.cross(v, rng.normal(size=v.shape))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True) + 1e-9
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]
    return v * cos + np.cross(axis, v) * sin  # axis is perpendicular to v, so the axis*(axis.v) term vanishes


def _unit(v: np.ndarray) -> np.ndarray:
    return v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-9)


def grow_forest(rng: np.random.Generator, roots: np.ndarray, directions: np.ndarray, lengths: np.ndarray,
                radii: np.ndarray, inside: Callable[[np.ndarray], np.ndarray], min_radius: float = 0.6,
                outward: float = 0.0) -> list[Segment]:
    """Segments of trees grown from ``roots`` (N, 3) along ``directions``, one generation at a time for all trees.

    Each segment splits into two children rotated 20-40 degrees, 12-28 % shorter and 20-32 % thinner; a child whose
    tip is not ``inside`` (a vectorised predicate on (M, 3) points) is dropped with its subtree. ``outward`` bends
    children away from their tree's root, so trees fan out to the periphery instead of curling up near the hilum.
    """
    start, origin = np.asarray(roots, float), np.asarray(roots, float)
    d, ln, r = _unit(np.asarray(directions, float)), np.asarray(lengths, float), np.asarray(radii, float)
    segments: list[Segment] = []
    first = True
    while len(start):
        end = start + d * ln[:, None]
        keep = np.ones(len(end), dtype=bool) if first else inside(end)
        first = False
        start, end, d, ln, r, origin = start[keep], end[keep], d[keep], ln[keep], r[keep], origin[keep]
        segments += [Segment(a, b, float(rad)) for a, b, rad in zip(start, end, r)]
        split = r * 0.75 >= min_radius
        start, end, d, ln, r, origin = (np.repeat(v[split], 2, axis=0) for v in (start, end, d, ln, r, origin))
        n = len(start)
        angle = rng.uniform(0.35, 0.7, size=n) * np.tile([1.0, -1.0], n // 2)
        d = _unit(_rotate(d, rng, angle) + outward * _unit(end - origin))
        start, ln, r = end, ln * rng.uniform(0.72, 0.88, size=n), r * rng.uniform(0.68, 0.8, size=n)
    return segments


def segment_weight(grid: Grid, seg: Segment) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
    """Partial-volume coverage (0..1) of the voxels in ``seg``'s bounding box, or None off the grid."""
    pad = seg.radius + grid.pixel_mm
    (ax, ay, az), (bx, by, bz) = seg.a.tolist(), seg.b.tolist()
    half_dz = grid.dz_mm / 2
    lo = (min(ax, bx) - pad, min(ay, by) - pad, min(az, bz) - pad - half_dz)
    hi = (max(ax, bx) + pad, max(ay, by) + pad, max(az, bz) + pad + half_dz)
    region = grid.box_axes(lo, hi)
    if region is None:
        return None
    sl, (dep, yy, xx) = region
    ux, uy, uz = bx - ax, by - ay, bz - az
    denom = ux * ux + uy * uy + uz * uz + 1e-9
    vx, vy, vz = xx - ax, yy - ay, dep - az
    h = np.clip((vx * ux + vy * uy + vz * uz) / denom, 0.0, 1.0)
    dist = np.sqrt((vx - h * ux) ** 2 + (vy - h * uy) ** 2 + (vz - h * uz) ** 2)
    return sl, np.clip((seg.radius - dist) / grid.pixel_mm + 0.5, 0.0, 1.0)


def stamp(hu: np.ndarray, grid: Grid, segments: list[Segment], value: float,
          where: np.ndarray | None = None, brighten_only: bool = False) -> np.ndarray:
    """Blend ``value`` into ``hu`` along the tubes (optionally only where ``where``); returns the covered mask."""
    covered = np.zeros(hu.shape, dtype=bool)
    for seg in segments:
        hit = segment_weight(grid, seg)
        if hit is None:
            continue
        sl, w = hit
        if where is not None:
            w = w * where[sl]
        target = hu[sl]
        blended = target + w * (value - target)
        hu[sl] = np.maximum(target, blended) if brighten_only else blended
        covered[sl] |= w >= 0.5
    return covered

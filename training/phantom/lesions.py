"""Pneumonia lesions (and the non-pneumonia findings of NP studies) placed and painted the way the literature shows.

* COVID-19: 3-8 ground-glass opacities (-550..-300 HU, soft edges, vessels stay visible through them), bilateral,
  subpleural (outer third of the lung), lower-lobe and posterior predominant; some with a consolidated core (~0 HU),
  some with crazy paving (a reticular network of thickened septa over the ground glass).
* CAP: one lobar/segmental consolidation (-40..+30 HU, dense: it hides the vessels) in one lung, large and contiguous,
  filling up to the pleura, often with air bronchograms (dark branching airways inside it).
* NP: no lesion; sometimes a small solid nodule (+20 HU, 4-10 mm) or centrilobular emphysema (-970 HU holes).
  Neither is pneumonia, so neither enters the lesion mask (an NP study's infection percentage is exactly 0).

A lesion is a union of ellipsoid blobs (lobulated outline); it is painted only inside the lung mask.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import SIDES, Anatomy, diaphragm_floor, lung_at, lung_q0, taper
from .geometry import Grid
from .tubes import grow_forest, stamp


@dataclass
class Lesion:
    kind: str  # "ggo" | "consolidation" | "nodule" | "emphysema"
    side: int  # 0 right lung, 1 left lung
    blobs: list[tuple[np.ndarray, np.ndarray]]  # (centre (x, y, depth) mm, radii mm)
    hu: float
    core_hu: float | None = None
    crazy_paving: bool = False
    bronchograms: bool = False

    @property
    def is_pneumonia(self) -> bool:
        return self.kind in ("ggo", "consolidation")


def _point_in_lung(rng: np.random.Generator, an: Anatomy, grid: Grid, side: int, rho: tuple[float, float],
                   t_beta: tuple[float, float], posterior: bool, tries: int = 60) -> np.ndarray | None:
    """A point of lung ``side`` at relative radius ``rho`` of its cross-section; ``t`` ~ Beta (apex->base)."""
    for _ in range(tries):
        t = an.t_apex + 0.05 + (an.t_base[side] - an.t_apex - 0.08) * rng.beta(*t_beta)
        phi = rng.uniform(-1.0, 1.6) if posterior else rng.uniform(-np.pi, np.pi)
        r = rng.uniform(*rho) * float(taper(an, t))
        x = SIDES[side] * an.lung_cx + SIDES[side] * np.cos(phi) * r * an.lung_ax[side]
        y = an.lung_cy + np.sin(phi) * r * an.lung_ay[side]
        q0 = lung_q0(an, side, np.float32(x), np.float32(y))
        t = min(t, float(diaphragm_floor(an, side, q0)) - 0.02)
        if lung_at(an, x, y, t) == side + 1:
            return np.array([x, y, t * grid.coverage_mm])
    return None


def _blobs(rng: np.random.Generator, centre: np.ndarray, radius: float, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    out = [(centre, radius * rng.uniform(0.75, 1.25, size=3))]
    for _ in range(n - 1):
        offset = rng.normal(size=3) * radius * 0.45
        out.append((centre + offset, radius * rng.uniform(0.5, 0.9, size=3)))
    return out


def sample_lesions(rng: np.random.Generator, an: Anatomy, grid: Grid, label: str) -> list[Lesion]:
    """The findings of a study of class ``label``."""
    lesions: list[Lesion] = []
    if label == "COVID":
        n = int(rng.integers(3, 9))
        sides = [0, 1] + list(rng.integers(0, 2, size=n - 2))
        for side in sides:
            centre = _point_in_lung(rng, an, grid, int(side), (0.74, 0.93), (2.6, 1.2), posterior=True)
            if centre is None:
                continue
            core = float(rng.uniform(-60, 30)) if rng.random() < 0.35 else None
            lesions.append(Lesion("ggo", int(side), _blobs(rng, centre, rng.uniform(9, 24), int(rng.integers(1, 4))),
                                  float(rng.uniform(-550, -300)), core_hu=core, crazy_paving=rng.random() < 0.3))
    elif label == "CAP":
        side = int(rng.integers(0, 2))
        centre = _point_in_lung(rng, an, grid, side, (0.4, 0.75), (1.8, 1.2), posterior=False)
        if centre is not None:
            blobs = _blobs(rng, centre, rng.uniform(34, 58), int(rng.integers(3, 6)))
            lesions.append(Lesion("consolidation", side, blobs, float(rng.uniform(-40, 30)),
                                  bronchograms=rng.random() < 0.6))
    elif label == "NP":
        if rng.random() < 0.4:
            side = int(rng.integers(0, 2))
            centre = _point_in_lung(rng, an, grid, side, (0.2, 0.85), (1.5, 1.5), posterior=False)
            if centre is not None:
                lesions.append(Lesion("nodule", side, [(centre, np.full(3, rng.uniform(2.0, 5.0)))], 20.0))
        if rng.random() < 0.3:
            for _ in range(int(rng.integers(6, 16))):
                side = int(rng.integers(0, 2))
                centre = _point_in_lung(rng, an, grid, side, (0.1, 0.9), (1.2, 3.0), posterior=False)
                if centre is not None:
                    lesions.append(Lesion("emphysema", side, [(centre, np.full(3, rng.uniform(2.0, 6.0)))], -975.0))
    else:
        raise ValueError(f"label must be one of NP, CAP, COVID, not {label!r}")
    return lesions


def _lesion_q(grid: Grid, lesion: Lesion) -> tuple[tuple[slice, slice, slice], np.ndarray, list[np.ndarray]] | None:
    """Minimum normalised ellipsoid distance over the blobs, in the lesion's bounding box."""
    lo = np.min([c - r * 1.4 for c, r in lesion.blobs], axis=0)
    hi = np.max([c + r * 1.4 for c, r in lesion.blobs], axis=0)
    region = grid.box_axes(lo, hi)
    if region is None:
        return None
    sl, (dep, yy, xx) = region
    q = None
    for c, r in lesion.blobs:
        qi = ((xx - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((dep - c[2]) / r[2]) ** 2
        q = qi if q is None else np.minimum(q, qi)
    return sl, q.astype(np.float32), [dep, yy, xx]


def _crazy_paving(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, dep: np.ndarray) -> np.ndarray:
    """A polygonal network of thin lines (interlobular septa, ~5-7 mm apart) from three rotated gratings."""
    net = np.zeros(np.broadcast(dep, yy, xx).shape, dtype=bool)
    for angle in rng.uniform(0, np.pi, size=3):
        period = rng.uniform(5.0, 7.0)
        phase = np.cos(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle) + 0.3 * dep) / period + rng.uniform(0, 6))
        net |= phase > 0.92
    return net


def paint(rng: np.random.Generator, hu: np.ndarray, lung: np.ndarray, lesion_mask: np.ndarray, grid: Grid,
          lesion: Lesion) -> None:
    """Blend ``lesion`` into ``hu`` inside the lungs; pneumonia lesions also go into ``lesion_mask``."""
    hit = _lesion_q(grid, lesion)
    if hit is None:
        return
    sl, q, (dep, yy, xx) = hit
    in_lung = lung[sl]
    old = hu[sl]
    if lesion.kind == "ggo":
        w = np.clip((1.35 - q) / 0.7, 0, 1) * in_lung
        new = np.maximum(old, old + w * (lesion.hu - old))  # vessels stay visible through ground glass
        if lesion.crazy_paving:
            new += 160.0 * w * _crazy_paving(rng, yy, xx, dep)
        if lesion.core_hu is not None:
            wc = np.clip((0.45 - q) / 0.25, 0, 1) * in_lung
            new += wc * (lesion.core_hu - new)
    elif lesion.kind == "consolidation":
        w = np.clip((1.2 - q) / 0.35, 0, 1) * in_lung
        new = old + w * (lesion.hu - old)
    elif lesion.kind == "nodule":
        new = old + np.clip((1.2 - q) / 0.4, 0, 1) * in_lung * (lesion.hu - old)
    else:  # emphysema: holes darker than the parenchyma, vessels untouched
        new = np.minimum(old, old + np.clip((1.2 - q) / 0.4, 0, 1) * in_lung * (lesion.hu - old))
    hu[sl] = new
    if lesion.is_pneumonia:
        lesion_mask[sl] |= (q <= 1.0) & in_lung
    if lesion.bronchograms:
        core = np.zeros(hu.shape, dtype=bool)
        core[sl] = (q <= 0.75) & in_lung
        c, r = lesion.blobs[0]
        start = c - np.array([SIDES[lesion.side] * r[0] * 0.8, 0.0, 0.0])
        direction = np.array([[SIDES[lesion.side], rng.normal() * 0.3, rng.normal() * 0.3]])
        segs = grow_forest(rng, start[None], direction, np.array([r[0] * 0.6]), np.array([2.0]),
                           inside=lambda p: np.ones(len(p), dtype=bool), min_radius=0.9)
        stamp(hu, grid, segs, -900.0, where=core)

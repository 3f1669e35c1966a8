"""Pneumonia lesions inserted into the lungs of any HU volume (a real scan or the phantom), with a voxel truth mask.

Why: a classifier trained only on the phantom learns the phantom. Putting simulated disease into *real* anatomy and
noise, every real background in every class, makes the lesion the only thing that tells the classes apart. The
patterns follow the radiology literature (Fleischner glossary; Bernheim 2020, Shi 2020 for COVID-19; Franquet 2001
for CAP):

* **COVID-19** (``covid``): multifocal, bilateral, peripheral/subpleural, posterior and basal predominant
  ground-glass opacities (GGO, -750..-300 HU) that *raise* the attenuation of the real parenchyma, so the vessels
  stay visible through them; some with crazy paving (a reticular network over the GGO), some with a consolidated
  core (later stage), some as a reverse halo (a consolidated rim round ground glass).
* **CAP** (``cap``): a lobar or segmental consolidation (-100..+50 HU) that hides the vessels, usually in one lung,
  with air bronchograms (the real bronchi inside it stay aerated); or bronchopneumonia: clusters of centrilobular
  nodules and tree-in-bud branching in one or two segments, with patchy consolidation.
* **NP confounders** (``np_confounders``): findings that are not pneumonia and never enter the lesion mask:
  dependent (gravity) density in the posterior subpleural lung, plate-like atelectasis bands, small solid nodules.

Shapes come from smoothed random fields thresholded inside a spatial prior (distance to the pleura, posterior, basal
for COVID-19; one segment for CAP), so margins are irregular and extent is random, from a few percent to most of
the lung. Everything is painted only inside the given lung mask, in the volume's own voxel grid (``spacing_mm``
gives the physical scale), and the returned ``lesion`` mask is the truth for segmentation, severity and saliency.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

__all__ = ["Insertion", "insert_lesions", "covid", "cap", "np_confounders", "GGO_HU", "CONSOLIDATION_HU"]

GGO_HU = (-750.0, -300.0)
CONSOLIDATION_HU = (-100.0, 50.0)
#: Voxels of the original scan below this stay air inside a consolidation: the real bronchi (air bronchograms).
AIRWAY_HU = -930.0


@dataclass
class Insertion:
    """The volume after insertion, the pneumonia truth mask and what was painted."""

    hu: np.ndarray  # float32 (z, y, x)
    lesion: np.ndarray  # bool, pneumonia voxels (GGO + consolidation), inside the lung mask
    consolidation: np.ndarray  # bool, the part of ``lesion`` at consolidation density
    findings: list[str] = field(default_factory=list)


def _sigma_vox(sigma_mm: float, spacing_mm: tuple[float, float, float]) -> tuple[float, float, float]:
    return tuple(max(0.3, sigma_mm / float(s)) for s in spacing_mm)  # type: ignore[return-value]


def _field(rng: np.random.Generator, shape: tuple[int, ...], sigma_mm: float,
           spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """A zero-mean, unit-variance smooth random field (Gaussian-filtered white noise)."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), _sigma_vox(sigma_mm, spacing_mm))
    return (f - f.mean()) / (f.std() + 1e-6)


def _soft(mask: np.ndarray, spacing_mm: tuple[float, float, float], edge_mm: float) -> np.ndarray:
    """A [0, 1] weight that ramps over ``edge_mm`` at the mask's border (soft lesion margins)."""
    return np.clip(ndimage.gaussian_filter(mask.astype(np.float32), _sigma_vox(edge_mm, spacing_mm)) * 2.0 - 0.5,
                   0.0, 1.0) * (mask | (ndimage.gaussian_filter(mask.astype(np.float32), 1.0) > 0.25))


def _pleural_distance(lung: np.ndarray, spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """Distance (mm) of every lung voxel to the lung border, in-plane (slices may be thick)."""
    out = np.zeros(lung.shape, dtype=np.float32)
    for z in range(lung.shape[0]):
        if lung[z].any():
            out[z] = ndimage.distance_transform_edt(lung[z], sampling=spacing_mm[1:])
    return out


def _coords(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Relative coordinates in [0, 1]: z (0 = first slice), y (0 = anterior row 0), x."""
    z, y, x = (np.linspace(0.0, 1.0, n, dtype=np.float32) for n in shape)
    return z[:, None, None], y[None, :, None], x[None, None, :]


def _basal(shape: tuple[int, int, int], cranial_last: bool) -> np.ndarray:
    """1 at the lung bases, 0 at the apices (DICOM order says which end is cranial)."""
    z, _, _ = _coords(shape)
    return (1.0 - z) if cranial_last else z


def _threshold_for(values: np.ndarray, where: np.ndarray, fraction: float) -> float:
    """The value above which ``fraction`` of the ``where`` voxels of ``values`` lie."""
    inside = values[where]
    if inside.size == 0:
        return float("inf")
    return float(np.quantile(inside, 1.0 - float(np.clip(fraction, 1e-4, 1.0))))


def _sides(lung: np.ndarray) -> np.ndarray:
    """0 for lung voxels in the image's left half (patient right), 1 for the other half."""
    cols = np.flatnonzero(lung.any(axis=(0, 1)))
    mid = (cols[0] + cols[-1]) / 2.0 if cols.size else lung.shape[2] / 2.0
    side = np.zeros(lung.shape[2], dtype=np.uint8)
    side[int(np.ceil(mid)):] = 1
    return np.broadcast_to(side[None, None, :], lung.shape)


def _paint_ggo(rng: np.random.Generator, hu: np.ndarray, region: np.ndarray, spacing_mm: tuple[float, float, float],
               level: float) -> None:
    """Raise attenuation towards ``level`` (never lower it: vessels stay visible), with texture and soft edges."""
    weight = _soft(region, spacing_mm, edge_mm=rng.uniform(1.5, 4.0))
    texture = level + rng.uniform(25, 70) * _field(rng, hu.shape, rng.uniform(1.0, 2.5), spacing_mm)
    np.copyto(hu, np.maximum(hu, hu + weight * (texture - hu)), where=weight > 0)


def _paint_consolidation(rng: np.random.Generator, hu: np.ndarray, original: np.ndarray, region: np.ndarray,
                         spacing_mm: tuple[float, float, float], bronchograms: bool) -> np.ndarray:
    """Replace the parenchyma by dense tissue (vessels hidden); real bronchi stay air when ``bronchograms``.
    Returns the voxels painted."""
    level = rng.uniform(*CONSOLIDATION_HU)
    weight = _soft(region, spacing_mm, edge_mm=rng.uniform(0.8, 2.0))
    texture = level + rng.uniform(10, 30) * _field(rng, hu.shape, 1.5, spacing_mm)
    if bronchograms:
        weight = weight * ~(original < AIRWAY_HU)
    np.copyto(hu, hu + weight * (texture - hu), where=weight > 0)
    return region & (weight > 0.5)


def _crazy_paving(rng: np.random.Generator, hu: np.ndarray, region: np.ndarray,
                  spacing_mm: tuple[float, float, float]) -> None:
    """Thickened interlobular septa over GGO: the zero-crossings of a smooth field form a polygonal network."""
    f = _field(rng, hu.shape, rng.uniform(2.0, 3.0), spacing_mm)
    lines = (np.abs(f) < 0.12) & region
    hu[lines] += rng.uniform(120, 220)


def covid(rng: np.random.Generator, hu: np.ndarray, lung: np.ndarray, spacing_mm: tuple[float, float, float],
          extent: float | None = None, cranial_last: bool = True) -> Insertion:
    """Multifocal bilateral peripheral GGO (see the module docstring); ``extent`` = lesion fraction of the lung."""
    out = hu.astype(np.float32, copy=True)
    lung = lung.astype(bool)
    extent = float(extent if extent is not None else np.exp(rng.uniform(np.log(0.02), np.log(0.5))))
    pleura = _pleural_distance(lung, spacing_mm)
    _, y, _ = _coords(lung.shape)
    peripheral = np.exp(-pleura / rng.uniform(8.0, 20.0))
    prior = 1.6 * peripheral + rng.uniform(0.2, 0.8) * y + rng.uniform(0.2, 0.7) * _basal(lung.shape, cranial_last)
    blobs = _field(rng, lung.shape, rng.uniform(6.0, 14.0), spacing_mm) + 1.8 * (prior - prior[lung].mean())
    region = lung & (blobs > _threshold_for(blobs, lung, extent))
    region = ndimage.binary_opening(region, iterations=1) & lung
    findings = ["ggo"]
    _paint_ggo(rng, out, region, spacing_mm, rng.uniform(*GGO_HU))
    consolidation = np.zeros_like(region)
    if rng.random() < 0.3:
        _crazy_paving(rng, out, region, spacing_mm)
        findings.append("crazy_paving")
    if rng.random() < 0.4:  # later stage: consolidated cores where the field is highest
        core = region & (blobs > _threshold_for(blobs, region, rng.uniform(0.1, 0.35)))
        consolidation |= _paint_consolidation(rng, out, hu, core, spacing_mm, bronchograms=True)
        findings.append("consolidation")
    if rng.random() < 0.15:  # reverse halo: a dense rim round central ground glass
        rim = region & ~ndimage.binary_erosion(region, iterations=2)
        consolidation |= _paint_consolidation(rng, out, hu, rim, spacing_mm, bronchograms=False)
        findings.append("reverse_halo")
    return Insertion(out, region, consolidation & region, findings)


def cap(rng: np.random.Generator, hu: np.ndarray, lung: np.ndarray, spacing_mm: tuple[float, float, float],
        extent: float | None = None, cranial_last: bool = True) -> Insertion:
    """Lobar/segmental consolidation with air bronchograms, or bronchopneumonia (see the module docstring)."""
    out = hu.astype(np.float32, copy=True)
    lung = lung.astype(bool)
    extent = float(extent if extent is not None else np.exp(rng.uniform(np.log(0.03), np.log(0.45))))
    sides = _sides(lung)
    side = int(rng.integers(0, 2))
    candidates = np.argwhere(lung & (sides == side))
    if candidates.size == 0:
        candidates = np.argwhere(lung)
    seed = candidates[int(rng.integers(len(candidates)))]
    zz, yy, xx = np.ogrid[:lung.shape[0], :lung.shape[1], :lung.shape[2]]
    dist = np.sqrt(((zz - seed[0]) * spacing_mm[0]) ** 2 + ((yy - seed[1]) * spacing_mm[1]) ** 2
                   + ((xx - seed[2]) * spacing_mm[2]) ** 2).astype(np.float32)
    one_side = lung & ((sides == side) | (rng.random() < 0.2))  # mostly unilateral
    score = -dist / rng.uniform(25.0, 45.0) + 0.6 * _field(rng, lung.shape, rng.uniform(5.0, 10.0), spacing_mm)
    region = one_side & (score > _threshold_for(score, lung, extent))
    region = ndimage.binary_closing(region, iterations=2) & one_side
    if rng.random() < 0.65:
        consolidation = _paint_consolidation(rng, out, hu, region, spacing_mm, bronchograms=rng.random() < 0.8)
        findings = ["consolidation"]
    else:  # bronchopneumonia: centrilobular nodules / tree-in-bud in the region, patchy consolidation
        nodules = region & (_field(rng, lung.shape, rng.uniform(1.5, 2.5), spacing_mm) > rng.uniform(1.0, 1.6))
        nodules = ndimage.binary_dilation(nodules, iterations=1) & region
        patchy = region & (_field(rng, lung.shape, 6.0, spacing_mm) > 0.8)
        consolidation = _paint_consolidation(rng, out, hu, nodules | patchy, spacing_mm, bronchograms=False)
        _paint_ggo(rng, out, region & ~consolidation, spacing_mm, rng.uniform(-700, -450))
        region = region & (consolidation | (out > hu + 60))
        findings = ["bronchopneumonia"]
    return Insertion(out, region, consolidation & region, findings)


def np_confounders(rng: np.random.Generator, hu: np.ndarray, lung: np.ndarray,
                   spacing_mm: tuple[float, float, float], cranial_last: bool = True) -> Insertion:
    """Findings that are not pneumonia (never in the lesion mask): dependent density, atelectasis bands, nodules."""
    out = hu.astype(np.float32, copy=True)
    lung = lung.astype(bool)
    findings: list[str] = []
    pleura = _pleural_distance(lung, spacing_mm)
    _, y, _ = _coords(lung.shape)
    if rng.random() < 0.5:  # gravity: a thin posterior subpleural band of mildly raised attenuation
        band = lung & (pleura < rng.uniform(4.0, 10.0)) & (y > rng.uniform(0.6, 0.75))
        weight = _soft(band, spacing_mm, 3.0) * rng.uniform(60, 160)
        out += weight
        findings.append("dependent_density")
    if rng.random() < 0.35:  # plate-like atelectasis: a thin dense band near the base
        f = _field(rng, lung.shape, 8.0, spacing_mm)
        band = lung & (np.abs(f) < 0.05) & (_basal(lung.shape, cranial_last) > 0.5)
        out[band] = np.maximum(out[band], rng.uniform(-150, 20))
        findings.append("atelectasis_band")
    if rng.random() < 0.4:  # a few small solid nodules
        for _ in range(int(rng.integers(1, 4))):
            c = np.argwhere(lung)[int(rng.integers(int(lung.sum())))]
            r = rng.uniform(2.0, 5.0)
            zz, yy, xx = np.ogrid[:lung.shape[0], :lung.shape[1], :lung.shape[2]]
            ball = (((zz - c[0]) * spacing_mm[0]) ** 2 + ((yy - c[1]) * spacing_mm[1]) ** 2
                    + ((xx - c[2]) * spacing_mm[2]) ** 2) <= r * r
            out[ball & lung] = rng.uniform(-20, 60)
        findings.append("nodule")
    return Insertion(out, np.zeros(lung.shape, dtype=bool), np.zeros(lung.shape, dtype=bool), findings)


def insert_lesions(rng: np.random.Generator, hu: np.ndarray, lung: np.ndarray, spacing_mm: tuple[float, float, float],
                   label: str, extent: float | None = None, cranial_last: bool = True,
                   confounder_p: float = 0.5) -> Insertion:
    """The findings of class ``label`` ("NP", "CAP" or "COVID") painted into ``hu`` inside ``lung``.

    NP studies get confounders with probability ``confounder_p`` and are otherwise the background untouched.
    """
    if label == "COVID":
        return covid(rng, hu, lung, spacing_mm, extent, cranial_last)
    if label == "CAP":
        return cap(rng, hu, lung, spacing_mm, extent, cranial_last)
    if label == "NP":
        if rng.random() < confounder_p:
            return np_confounders(rng, hu, lung, spacing_mm, cranial_last)
        return Insertion(hu.astype(np.float32, copy=True), np.zeros(lung.shape, dtype=bool),
                         np.zeros(lung.shape, dtype=bool), [])
    raise ValueError(f"label must be NP, CAP or COVID, not {label!r}")

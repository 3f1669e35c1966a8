"""``generate_study``: one synthetic chest CT with its ground truth (lungs, lesions, boxes, infection percentage).

The seed fixes the patient (anatomy, vessels, scanner profile unless given); the label adds that class's findings
on top, so ``generate_study(s, "NP")`` and ``generate_study(s, "COVID")`` are the same patient before and after.
Everything is vectorised: the static anatomy per slice from precomputed 2D fields, tubes and lesions in their own
bounding boxes, and noise plus the reconstruction blur as one separable filter per slice.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .anatomy import SIDES, SOFT, Anatomy, ThoraxRenderer, lung_at, sample_anatomy
from .geometry import Grid
from .lesions import paint, sample_lesions
from .profiles import DEFAULT_SIZE, PROFILES, ScannerProfile
from .tubes import Segment, grow_forest, stamp

LABELS: tuple[str, ...] = ("NP", "CAP", "COVID")
HU_MIN, HU_MAX = -1024, 3071  # what 12-bit CT stores with RescaleIntercept -1024
Box = tuple[int, int, int, int]


@dataclass
class PhantomStudy:
    hu: np.ndarray  # (z, y, x) int16 HU; slice 0 is the most caudal
    spacing_mm: tuple[float, float, float]  # (z, y, x)
    lung_mask: np.ndarray  # bool, lungs including their vessels, small airways and lesions; not trachea/main bronchi
    lesion_mask: np.ndarray  # bool, pneumonia lesions inside the lungs
    label: str
    boxes: dict[int, list[Box]]  # slice -> inclusive (x0, y0, x1, y1) of each 8-connected lesion component
    infection_percent: float
    patient_id: str
    profile: str
    seed: int
    slice_thickness_mm: float
    findings: list[str] = field(default_factory=list)  # lesion kinds painted, e.g. ["ggo", "ggo", "nodule"]


def _hila(an: Anatomy) -> list[np.ndarray]:
    return [np.array([SIDES[i] * (an.lung_cx - 0.55 * an.lung_ax[i]), an.lung_cy - 0.1 * an.lung_ay[i],
                      an.carina_t + 0.08]) for i in range(2)]


def _trees(rng: np.random.Generator, an: Anatomy, grid: Grid) -> tuple[list[Segment], list[Segment], list[Segment]]:
    """Main bronchi, intrapulmonary airways and pulmonary vessels, all rooted at the hila."""
    cov = grid.coverage_mm

    def inside(p: np.ndarray) -> np.ndarray:
        return lung_at(an, p[:, 0], p[:, 1], p[:, 2] / cov) > 0

    carina = np.array([0.0, an.trachea_y, an.carina_t * cov])
    min_vessel = max(0.5, 0.25 * grid.pixel_mm)  # thinner ones are invisible at this resolution
    main, airways, vessels = [], [], []
    for i, hilum_t in enumerate(_hila(an)):
        hilum = hilum_t * np.array([1.0, 1.0, cov])
        main.append(Segment(carina, hilum, 6.5))
        dirs = np.array([(SIDES[i], 0.2, -0.6), (SIDES[i], 0.3, 0.8), (SIDES[i] * 0.5, -0.8, 0.3)])
        dirs += rng.normal(scale=0.15, size=dirs.shape)
        airways += grow_forest(rng, np.tile(hilum, (3, 1)), dirs, np.full(3, 22.0), np.full(3, 4.0), inside,
                               min_radius=1.4)
        n = 24  # vessel trunks fan out from the hilum over the lateral hemisphere
        dirs = rng.normal(size=(n, 3))
        dirs[:, 0] = SIDES[i] * np.abs(dirs[:, 0]) * 0.7
        vessels += grow_forest(rng, np.tile(hilum, (n, 1)), dirs, rng.uniform(20, 30, n), rng.uniform(2.5, 4.0, n),
                               inside, min_radius=min_vessel, outward=0.5)
    return main, airways, vessels


def _blur_noise(rng: np.random.Generator, hu: np.ndarray, profile: ScannerProfile, scale: float) -> None:
    """Reconstruction blur plus correlated quantum noise of std ``noise_hu``, one filtered slice at a time."""
    sigma = profile.kernel_px * scale
    impulse = np.zeros(41, dtype=np.float64)
    impulse[20] = 1.0
    k1 = ndimage.gaussian_filter1d(impulse, sigma) if sigma > 0 else impulse
    gain = float(np.sum(k1 ** 2))  # variance gain of the separable 2D kernel is gain**2
    amp = np.float32(profile.noise_hu / gain)
    for k in range(hu.shape[0]):
        noisy = hu[k] + amp * rng.standard_normal(hu.shape[1:], dtype=np.float32)
        hu[k] = ndimage.gaussian_filter(noisy, sigma) if sigma > 0 else noisy


def lesion_boxes(lesion_mask: np.ndarray) -> dict[int, list[Box]]:
    """Inclusive (x0, y0, x1, y1) boxes of the 8-connected lesion components of every slice that has lesions."""
    boxes: dict[int, list[Box]] = {}
    eight = np.ones((3, 3), dtype=bool)
    for k in np.nonzero(lesion_mask.any(axis=(1, 2)))[0]:
        labels, _ = ndimage.label(lesion_mask[k], structure=eight)
        boxes[int(k)] = [(int(s[1].start), int(s[0].start), int(s[1].stop - 1), int(s[0].stop - 1))
                         for s in ndimage.find_objects(labels) if s is not None]
    return boxes


def generate_study(seed: int, label: str, profile: str | None = None, n_slices: int | None = None,
                   size: int | None = None) -> PhantomStudy:
    """One phantom chest CT of class ``label`` ("NP", "CAP" or "COVID"), fully determined by its arguments."""
    if label not in LABELS:
        raise ValueError(f"label must be one of {LABELS}, not {label!r}")
    rng_anatomy = np.random.default_rng([seed, 0])
    profile_name = profile or sorted(PROFILES)[int(rng_anatomy.integers(len(PROFILES)))]
    if profile_name not in PROFILES:
        raise ValueError(f"unknown scanner profile {profile_name!r}; choose from {sorted(PROFILES)}")
    prof = PROFILES[profile_name]
    size = size or DEFAULT_SIZE
    grid = Grid(n_slices=n_slices or prof.default_slices, size=size, pixel_mm=prof.fov_mm / size,
                coverage_mm=float(rng_anatomy.uniform(270, 330)))
    an = sample_anatomy(rng_anatomy, prof.fov_mm)

    renderer = ThoraxRenderer(an, grid)
    hu = np.empty(grid.shape, dtype=np.float32)
    lung = np.empty(grid.shape, dtype=bool)
    for k in range(grid.n_slices):
        hu[k], lung[k] = renderer.render(k)

    main, airways, vessels = _trees(rng_anatomy, an, grid)
    stamp(hu, grid, [Segment(s.a, s.b, s.radius + 1.5) for s in main + airways], SOFT - 40.0)
    lung &= ~stamp(hu, grid, main, -1000.0)
    stamp(hu, grid, airways, -1000.0, where=lung)
    stamp(hu, grid, vessels, SOFT, where=lung, brighten_only=True)

    rng_lesions = np.random.default_rng([seed, 1, LABELS.index(label)])
    lesion_mask = np.zeros(grid.shape, dtype=bool)
    lesions = sample_lesions(rng_lesions, an, grid, label)
    for lesion in lesions:
        paint(rng_lesions, hu, lung, lesion_mask, grid, lesion)

    _blur_noise(np.random.default_rng([seed, 2, LABELS.index(label)]), hu, prof, scale=size / DEFAULT_SIZE)
    hu_i16 = np.clip(np.rint(hu), HU_MIN, HU_MAX).astype(np.int16)
    n_lung = int(lung.sum())
    return PhantomStudy(
        hu=hu_i16, spacing_mm=(grid.dz_mm, grid.pixel_mm, grid.pixel_mm), lung_mask=lung, lesion_mask=lesion_mask,
        label=label, boxes=lesion_boxes(lesion_mask),
        infection_percent=100.0 * int(lesion_mask.sum()) / max(n_lung, 1), patient_id=f"PHANTOM-{seed:06d}",
        profile=profile_name, seed=seed, slice_thickness_mm=prof.slice_thickness_mm,
        findings=[lesion.kind for lesion in lesions],
    )


def generate_dataset(n_studies: int, seed: int, profile: str | None = None, n_slices: int | None = None,
                     size: int | None = None) -> Iterator[PhantomStudy]:
    """``n_studies`` studies with labels cycling NP, CAP, COVID (balanced) and distinct patients."""
    for i in range(n_studies):
        yield generate_study(seed * 1_000_003 + i, LABELS[i % len(LABELS)], profile, n_slices, size)

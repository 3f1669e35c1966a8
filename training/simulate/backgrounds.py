"""Real chest CT backgrounds from ``../shared/data/real-ct`` and studies made from them (and from the phantom).

A background is a real scan without pneumonia (LIDC-IDRI lung-cancer screening, Lung-PET-CT-Dx), loaded once,
reduced to a working matrix (``work_size``, block mean) and given its clean lung mask by the classical segmenter
(checked by eye on every background: the masks are in the model card). :func:`simulated_studies` cuts random
contiguous blocks of lung slices out of each background and paints each class's findings into them
(:mod:`training.simulate.lesions`), then passes them through a random scanner (:mod:`training.simulate.scanner`).
Every background appears in every class, so the label is the lesion, never the patient.

The phantom (``training.phantom``) is one more source: its NP anatomy gets the same lesion simulator and scanner.
Records carry ``group`` = the background patient (splits keep a patient on one side) and ``source`` (``lidc``,
``tcia``, ``phantom``) for leave-one-source-out checks.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..files import written_whole
from .lesions import insert_lesions
from .scanner import ScanSample, randomize

if TYPE_CHECKING:
    from training.datasets import StudyRecord

__all__ = ["Background", "REAL_BACKGROUNDS", "shared_data_dir", "load_background", "real_backgrounds",
           "phantom_background", "background", "series_folder", "simulate", "simulated_studies", "record_from_id"]

#: name -> (source, path under shared data's real-ct/). All are non-pneumonia scans (NP) with full lung coverage.
REAL_BACKGROUNDS: dict[str, tuple[str, str]] = {
    "LIDC-IDRI-0001": ("lidc", "lidc-idri/LIDC-IDRI-0001"),
    "LIDC-IDRI-0002": ("lidc", "lidc-idri/LIDC-IDRI-0002"),
    "LIDC-IDRI-0003": ("lidc", "lidc-idri/LIDC-IDRI-0003"),
    "Lung_Dx-A0001": ("tcia", "tcia-lung-pet-ct-dx/Lung-PET-CT-Dx/Lung_Dx-A0001"),
    "Lung_Dx-A0002": ("tcia", "tcia-lung-pet-ct-dx/Lung-PET-CT-Dx/Lung_Dx-A0002"),
}
REPO = Path(__file__).resolve().parents[2]
#: Share of simulated studies that are the whole background (apex to base, as the pipeline sees a chest CT); the
#: rest are 70 mm blocks (slabs and partial scans, as the RICORD slabs are). Study-level validation, calibration
#: and the held-out figures then see the aggregation over a whole scan's slices, not only over a block's.
WHOLE_SCAN_SHARE = 0.5


def shared_data_dir() -> Path:
    """``LUNGSCOPE_SHARED_DATA`` or ``../shared/data`` beside the repository."""
    return Path(os.environ.get("LUNGSCOPE_SHARED_DATA", REPO.parent / "shared" / "data"))


@dataclass
class Background:
    """A scan without pneumonia at the working matrix: HU, clean lung mask, spacing (z, y, x) mm."""

    name: str
    source: str
    hu: np.ndarray  # float32 (z, y, x), only the slices with lung (and a margin)
    lung: np.ndarray
    spacing_mm: tuple[float, float, float]
    cranial_last: bool = True


def series_folder(folder: Path) -> Path:
    """The folder holding the most files of a scan (its series, under a patient/study tree); reader XML and other
    annotations are not counted. Raises FileNotFoundError when there is no file at all."""
    candidates = [folder, *[d for d in folder.rglob("*") if d.is_dir()]]
    count = {d: sum(1 for f in d.iterdir() if f.is_file() and f.suffix.lower() != ".xml") for d in candidates}
    best = max(candidates, key=count.__getitem__)
    if count[best] == 0:
        raise FileNotFoundError(f"no DICOM series under {folder}")
    return best


def _reduce(array: np.ndarray, factor: int, mask: bool = False) -> np.ndarray:
    if factor <= 1:
        return array
    z, rows, cols = array.shape
    rows, cols = rows - rows % factor, cols - cols % factor
    blocks = array[:, :rows, :cols].reshape(z, rows // factor, factor, cols // factor, factor)
    return blocks.mean(axis=(2, 4)) >= 0.5 if mask else blocks.mean(axis=(2, 4), dtype=np.float32)


#: Bumped whenever the classical segmenter's masks change (they are the backgrounds' lung truth), so that a cached
#: background made by the older one is not read: 2 = organ domes no longer filled (``inference.lungs.classical``).
TRUTH_VERSION = 2


def _cache_path(name: str, work_size: int) -> Path:
    return REPO / "var" / "cache" / "backgrounds" / f"{name}-{work_size}-v{TRUTH_VERSION}.npz"


def load_background(name: str, work_size: int = 256, root: Path | None = None) -> Background:
    """One of ``REAL_BACKGROUNDS``, cached under ``var/cache`` (decoding and segmenting take seconds)."""
    source, rel = REAL_BACKGROUNDS[name]
    cache = _cache_path(name, work_size)
    if cache.is_file():
        data = np.load(cache)
        return Background(name, source, data["hu"], data["lung"], tuple(float(v) for v in data["spacing"]),
                          bool(data["cranial_last"]))
    from inference.io import load_study
    from inference.lungs import cranial_is_last, segment_lungs

    folder = (root or shared_data_dir()) / "real-ct" / rel
    volume = load_study(series_folder(folder))
    lung = segment_lungs(volume, "classical")
    factor = max(1, volume.array.shape[1] // work_size)
    hu, lung = _reduce(volume.array.astype(np.float32), factor), _reduce(lung, factor, mask=True)
    area = lung.reshape(lung.shape[0], -1).sum(axis=1)
    keep = np.flatnonzero(area >= 0.05 * area.max())
    hu, lung = hu[keep[0]:keep[-1] + 1], lung[keep[0]:keep[-1] + 1]
    dz, dy, dx = volume.spacing_mm or (2.5, 0.7, 0.7)
    spacing = (float(dz), float(dy) * factor, float(dx) * factor)
    cranial_last = cranial_is_last(volume)
    with written_whole(cache) as out:
        np.savez_compressed(out, hu=hu.astype(np.float32), lung=lung, spacing=np.asarray(spacing),
                            cranial_last=np.asarray(cranial_last))
    return Background(name, source, hu.astype(np.float32), lung, spacing, cranial_last)


def real_backgrounds(names: Sequence[str] | None = None, work_size: int = 256) -> list[Background]:
    """The named (default: all) real backgrounds that exist under the shared data folder."""
    root = shared_data_dir()
    out = []
    for name in names or list(REAL_BACKGROUNDS):
        if (root / "real-ct" / REAL_BACKGROUNDS[name][1]).is_dir():
            out.append(load_background(name, work_size, root))
    return out


def phantom_background(seed: int, size: int = 256, n_slices: int = 40) -> Background:
    """A phantom patient's NP anatomy (nodules and emphysema included) as a background."""
    from training.phantom import generate_study

    study = generate_study(seed, "NP", size=size, n_slices=n_slices)
    return Background(f"phantom-{study.patient_id}", "phantom", study.hu.astype(np.float32),
                      np.asarray(study.lung_mask, dtype=bool), tuple(float(v) for v in study.spacing_mm), True)


def simulate(rng: np.random.Generator, background: Background, label: str, block_mm: float | None = 70.0,
             extent: float | None = None, scanner: bool = True) -> tuple[ScanSample, list[str]]:
    """A random block of ``background``'s lung slices (the whole background when ``block_mm`` is None) with
    ``label``'s findings, through a random scanner.

    The block's start is drawn so that every lung slice is equally likely to be covered, apex and base included:
    a start drawn only among the positions where the whole block fits inside the lungs would cover the first and
    last slices once per (lung length - block length) draws, and a model trained on such blocks rarely sees the
    lung apex or the diaphragm dome, which the pipeline classifies on every whole scan.

    Returns the sample (HU, clean lung mask, lesion mask, spacing) and the findings painted.
    """
    block = _block(rng, background, block_mm)
    hu, lung = background.hu[block], background.lung[block]
    painted = insert_lesions(rng, hu, lung, background.spacing_mm, label, extent=extent,
                             cranial_last=background.cranial_last)
    sample = ScanSample(painted.hu, lung, painted.lesion, background.spacing_mm)
    if scanner:
        sample = randomize(rng, sample)
    return sample, painted.findings


def _block(rng: np.random.Generator, background: Background, block_mm: float | None) -> slice:
    """The slices of a block: its centre uniform from half a block before the first lung slice (area >= 1/4 of
    the largest) to half a block after the last, its start clipped to the scan, so every lung slice is covered by
    the same share of blocks, apex and base included."""
    depth = background.hu.shape[0]
    if block_mm is None:
        return slice(0, depth)
    area = background.lung.reshape(depth, -1).sum(axis=1)
    lung_slices = np.flatnonzero(area >= 0.25 * area.max())
    n = max(3, min(depth, int(round(block_mm / background.spacing_mm[0]))))
    centre = int(rng.integers(lung_slices[0] - n // 2, lung_slices[-1] + n // 2 + 1))
    start = int(np.clip(centre - n // 2, 0, depth - n))
    return slice(start, start + n)


@lru_cache(maxsize=8)
def background(spec: str, work_size: int = 256) -> Background:
    """A background by spec: a ``REAL_BACKGROUNDS`` name, or ``phantom:<seed>`` (cached per process)."""
    if spec.startswith("phantom:"):
        return phantom_background(int(spec.split(":", 1)[1]), size=work_size)
    return load_background(spec, work_size)


def _record(spec: str, seed: int, i: int, c_index: int, label: str) -> StudyRecord:
    from training.datasets import StudyRecord

    bg = background(spec)
    rng = np.random.default_rng([seed, i, c_index, sum(map(ord, spec))])
    sample, _ = simulate(rng, bg, label, block_mm=None if rng.random() < WHOLE_SCAN_SHARE else 70.0)
    return StudyRecord(study_id=f"sim-{bg.name}-{seed}-{i:03d}-{label}", label=label, group=bg.name,
                       array=sample.hu, lung_mask=sample.lung, spacing_mm=sample.spacing_mm, source=bg.source,
                       lesion_mask=sample.lesion)


#: :func:`_record`'s study ids: ``sim-<background name>-<data seed>-<index>-<class>``.
_STUDY_ID = re.compile(r"^sim-(?P<name>.+)-(?P<seed>\d+)-(?P<i>\d{3,})-(?P<label>[^-]+)$")
_PHANTOM_NAME = "phantom-PHANTOM-"


def record_from_id(study_id: str, classes: Sequence[str] = ("NP", "CAP", "COVID")) -> StudyRecord:
    """The simulated study named ``study_id`` made again (the same background, block, findings and scanner): how a
    figure measured later on a study pairs with what a cross-validation recorded for it (its held-out ids)."""
    match = _STUDY_ID.match(study_id)
    if match is None or match["label"] not in classes:
        raise ValueError(f"{study_id!r} is not a simulated study id of classes {list(classes)}")
    name = match["name"]
    spec = f"phantom:{int(name[len(_PHANTOM_NAME):])}" if name.startswith(_PHANTOM_NAME) else name
    record = _record(spec, int(match["seed"]), int(match["i"]), list(classes).index(match["label"]), match["label"])
    if record.study_id != study_id:
        raise ValueError(f"{study_id!r} made again is {record.study_id!r}")
    return record


def simulated_studies(specs: Sequence[str], per_class: int, seed: int, classes: Sequence[str] = ("NP", "CAP", "COVID"),
                      jobs: int = 1) -> Iterator[StudyRecord]:
    """``per_class`` studies of every class from every background spec (see :func:`background`); ``group`` is the
    background patient, ``source`` its source. ``jobs`` > 1 simulates in that many processes (same studies, same
    order); each process loads a background once."""
    tasks = [(spec, seed, i, c, label) for spec in specs for i in range(per_class) for c, label in enumerate(classes)]
    if jobs <= 1:
        for task in tasks:
            yield _record(*task)
        return
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(jobs) as pool:
        yield from pool.map(_record, *zip(*tasks), chunksize=3)

"""Training data sources behind one interface, turned into the exact inputs inference feeds the model.

Every source yields :class:`StudyRecord` s (a volume, its class, the patient or source group it belongs to);
:func:`build_slice_set` turns them into a :class:`SliceSet` of lung slices prepared exactly as inference prepares
them (``inference.normalize.normalize_volume`` with the bundle's normalisation, lung mask, ``crop_geometry`` +
``prepare_slice`` to ``size`` x ``size``), each labelled with its study's class (weak, image-level labels).

Sources:

* :func:`phantom_studies`: the synthetic generator ``training.phantom`` (ground-truth lung masks).
* :func:`toy_studies`: tiny geometric stand-ins (two elliptic "lungs", CAP = one dense blob, COVID = faint
  peripheral patches) that need no generator: for smoke runs and tests that must take seconds.
* :func:`dicom_studies`: a folder of DICOM series and a labels CSV with columns ``study,label`` and optional
  ``patient_id`` / ``source_group``; ``study`` is a sub-folder name or a StudyInstanceUID.
* :func:`image_studies`: a folder of 2D images (8-bit display values, not HU) and a labels CSV with columns
  ``file,label`` and optional ``patient_id`` / ``source_group``; each image is a one-slice study.
* :func:`export_studies`: the web app's curated **training-ready export**, this format::

      <export>/labels.csv          columns study_id,patient_id,label,source_group (patient_id may be empty)
      <export>/<study_id>/slices.npy       int16 HU, shape (z, y, x), slices in spatial order
                       or slice_0000.png, slice_0001.png ... 16-bit grey PNGs holding HU + 32768 (lossless int16)
      <export>/<study_id>/spacing.json     {"spacing_mm": [z, y, x]}
      <export>/<study_id>/lung_mask.npy    optional bool (z, y, x); slices are cropped with it only under
                                           PrepConfig.source_lungs, else with the lungs inference segments
      <export>/<study_id>/boxes.csv        columns slice_index,x0,y0,x1,y1,label (inclusive pixels, x = column);
                                           may hold only the header

  :func:`write_export_study` writes one study in it (the reference writer, used by tests).

Splits (:func:`group_kfold`, :func:`group_split`) are made at study level and keep every patient (or source group,
where there is no patient id) on one side: slices of one patient are near-duplicates and would leak otherwise.
"""
from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from sklearn.model_selection import StratifiedGroupKFold

from inference.bundle import DEFAULT_META, min_lung_fraction_of
from inference.io import Volume
from inference.lungs import DEFAULT_METHOD, segment_lungs
from inference.normalize import normalize_volume
from inference.preprocess import check_outside_lungs_mm, crop_geometry, prepare_slice, reach_px

__all__ = ["TASKS", "StudyRecord", "PrepConfig", "SliceSet", "study_slices", "prepared_slices", "slice_labels",
           "build_slice_set", "phantom_studies",
           "toy_studies",
           "dicom_studies", "image_studies", "export_studies", "write_export_study", "group_kfold", "group_split",
           "held_out_splits"]

#: Task name -> class list in bundle order (study aggregation ranks slices by 1 - P(NP), or by the last class).
TASKS: dict[str, tuple[str, ...]] = {
    "3way": ("NP", "CAP", "COVID"),
    "np-covid": ("NP", "COVID"),
    "np-cap": ("NP", "CAP"),
    "cap-covid": ("CAP", "COVID"),
}
PNG_HU_OFFSET = 32768


@dataclass
class StudyRecord:
    """One labelled study as a source delivers it. ``array`` is HU when ``is_hu``, else 0..255 display values."""

    study_id: str
    label: str
    group: str
    array: np.ndarray
    is_hu: bool = True
    lung_mask: np.ndarray | None = None
    spacing_mm: tuple[float, float, float] | None = None
    boxes: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""  # where the study comes from (e.g. lidc, tcia, phantom): leave-one-source-out checks
    lesion_mask: np.ndarray | None = None  # voxel truth of simulated pneumonia, when known

    def volume(self) -> Volume:
        """The study as the pipeline receives it (float32 (z, y, x), HU or grey levels, with its spacing), so the
        lungs training crops with are segmented exactly as inference segments them."""
        array = np.asarray(self.array, dtype=np.float32)
        return Volume(array=array if array.ndim == 3 else array.reshape(-1, *array.shape[-2:]),
                      kind="nifti" if self.is_hu else "image", is_hu=self.is_hu, spacing_mm=self.spacing_mm)


@dataclass(frozen=True)
class PrepConfig:
    """How slices become model inputs; the defaults are the shipped bundle's (``inference.bundle.DEFAULT_META``).

    ``min_lung_fraction``: a slice is a "lung slice" when its lung area is at least this fraction of the study's
    largest (the same rule decides a study in ``inference.pipeline``); apex and base slices with a sliver of lung
    carry little and are dropped. ``max_slices`` caps the slices per study (evenly spaced among the lung slices) so
    a long series does not outweigh the others.
    ``lungs``: the ``inference.lungs`` method that finds the lungs slices are cropped and normalised with.
    ``source_lungs``: crop and normalise with a record's own lung mask where it has one. Off by default: a simulated
    or phantom study carries its truth lungs, which the pipeline never has, and a model trained on truth crops
    labelled studies through the pipeline differently from its own evaluation (bundle 2.0.0: 2 of 6 against 20 of
    27). The record's mask still measures a slice's lesion fraction (:func:`slice_labels`).
    ``outside_lungs_mm``: blank what lies farther than this from the lungs in each slice
    (:func:`inference.preprocess.near_lungs_only`; the bundle's ``crop.outside_lungs_mm``); None keeps the crop whole.
    ``min_lesion_fraction``: where a record knows its lesion voxels (simulated disease), a slice of a diseased study
    is labelled with the disease when its lesion covers at least this fraction of the slice's lung, NP when it has
    none, and unlabelled (-1) in between (see :func:`slice_labels`); 0 labels every slice with its study's class.
    """

    size: int = 224
    margin: float = float(DEFAULT_META["crop"]["margin"])
    normalization: tuple[tuple[str, Any], ...] = tuple(DEFAULT_META["normalization"].items())
    min_lung_fraction: float = float(DEFAULT_META["aggregation"]["min_lung_fraction"])
    max_slices: int | None = None
    lungs: str = DEFAULT_METHOD
    min_lesion_fraction: float = 0.01
    source_lungs: bool = False
    outside_lungs_mm: float | None = None

    def __post_init__(self) -> None:
        # checked here, before hours of training, as the bundle loader will check it (ValueError otherwise)
        object.__setattr__(self, "outside_lungs_mm", check_outside_lungs_mm(self.outside_lungs_mm))

    @property
    def normalization_params(self) -> dict[str, Any]:
        return dict(self.normalization)

    @classmethod
    def for_bundle(cls, meta: dict[str, Any], **overrides: Any) -> PrepConfig:
        """The preparation a bundle was trained with (input size, crop margin, normalisation, lung-slice rule), read
        from its ``meta.json``, so retraining and checks feed it what the pipeline feeds it."""
        fields = {"size": int(meta["input_size"][0]), "margin": float(meta["crop"]["margin"]),
                  "outside_lungs_mm": meta["crop"].get("outside_lungs_mm"),
                  "normalization": tuple(meta["normalization"].items()),
                  "min_lung_fraction": min_lung_fraction_of(meta)}
        return cls(**{**fields, **overrides})


@dataclass
class SliceSet:
    """Prepared slices of many studies: ``images`` (N, S, S) float16 in [0, 1], ``labels`` (N,), ``study`` (N,)
    index into ``study_ids`` / ``study_labels`` / ``groups`` (one entry per study).

    A slice labelled -1 (a sliver of lesion, :func:`slice_labels`) is trained on and scored as a slice nowhere
    (:meth:`labelled`), but it stays in its study: the pipeline decides a study on all its lung slices, and a study
    decided here without them was decided with the help of the lesion truth (the simulated studies' slices left out
    were mostly the healthy-looking ones of diseased studies)."""

    images: torch.Tensor
    labels: torch.Tensor
    study: np.ndarray
    study_ids: list[str]
    study_labels: np.ndarray
    groups: np.ndarray
    classes: tuple[str, ...]
    sources: np.ndarray | None = None  # per study, StudyRecord.source (leave-one-source-out splits)

    def __len__(self) -> int:
        return int(self.labels.numel())

    @property
    def n_studies(self) -> int:
        return len(self.study_ids)

    def subset(self, studies: Sequence[int] | np.ndarray) -> SliceSet:
        """The slices of the given study indices, re-indexed from 0 in the order given."""
        studies = np.asarray(studies, dtype=np.int64)
        remap = np.full(self.n_studies, -1, dtype=np.int64)
        remap[studies] = np.arange(studies.size)
        keep = np.flatnonzero(remap[self.study] >= 0)
        idx = torch.as_tensor(keep)
        return SliceSet(self.images[idx], self.labels[idx], remap[self.study[keep]],
                        [self.study_ids[i] for i in studies], self.study_labels[studies], self.groups[studies],
                        self.classes, None if self.sources is None else self.sources[studies])

    def labelled(self) -> SliceSet:
        """The slices with a label (>= 0), each in its study: what training and slice-level scores use."""
        keep = np.flatnonzero(self.labels.numpy() >= 0)
        if keep.size == len(self):
            return self
        idx = torch.as_tensor(keep)
        return SliceSet(self.images[idx], self.labels[idx], self.study[keep], list(self.study_ids), self.study_labels,
                        self.groups, self.classes, self.sources)

    def capped(self, max_per_study: int | None) -> SliceSet:
        """At most ``max_per_study`` slices of each study, evenly spaced in its order (apex to base), so a long
        series does not outweigh the others in training; validation and test sets stay whole, as the pipeline
        decides a study on all its lung slices."""
        if max_per_study is None:
            return self
        idx = np.concatenate([evenly_spaced(np.flatnonzero(self.study == s), max_per_study)
                              for s in range(self.n_studies)])
        t = torch.as_tensor(idx)
        return SliceSet(self.images[t], self.labels[t], self.study[idx], list(self.study_ids), self.study_labels,
                        self.groups, self.classes, self.sources)

    def fingerprint(self) -> str:
        """sha256 over classes, study ids, labels and pixels: names the exact training data in a bundle."""
        digest = hashlib.sha256(json.dumps([list(self.classes), self.study_ids]).encode())
        digest.update(self.labels.numpy().tobytes())
        digest.update(self.images.numpy().tobytes())
        return digest.hexdigest()

    def class_counts(self) -> dict[str, int]:
        counts = torch.bincount(self.labels[self.labels >= 0], minlength=len(self.classes)).tolist()
        return dict(zip(self.classes, counts))


def evenly_spaced(indices: np.ndarray, limit: int) -> np.ndarray:
    """At most ``limit`` of ``indices``, evenly spaced from the first to the last (all of them when fewer): the one
    rule for capping a study's slices, at preparation (``PrepConfig.max_slices``) and in training
    (:meth:`SliceSet.capped`)."""
    if indices.size <= limit:
        return indices
    return indices[np.linspace(0, indices.size - 1, limit).round().astype(int)]


def _lung_mask(record: StudyRecord, method: str, source_lungs: bool = False) -> np.ndarray:
    """The segmentation inference runs (``segment_lungs`` on :meth:`StudyRecord.volume`), or the source's own mask
    where ``source_lungs`` and it has one. A slice whose mask covers less than the pipeline's ``MIN_LUNG_FRACTION``
    of the image counts as lung-less (whole-image crop)."""
    from inference.pipeline import MIN_LUNG_FRACTION

    if source_lungs and record.lung_mask is not None:
        mask = np.asarray(record.lung_mask, dtype=bool)
    else:
        mask = segment_lungs(record.volume(), method=method)
    mask = mask.reshape(-1, *mask.shape[-2:]).copy()
    mask[mask.reshape(mask.shape[0], -1).mean(axis=1) < MIN_LUNG_FRACTION] = False
    return mask


def study_slices(record: StudyRecord, prep: PrepConfig) -> np.ndarray:
    """The study's lung slices as model inputs, float32 (n, size, size); every slice when no lung was found."""
    return prepared_slices(record, prep)[0]


def prepared_slices(record: StudyRecord, prep: PrepConfig) -> tuple[np.ndarray, np.ndarray]:
    """:func:`study_slices` and the index of each prepared slice in the record's array."""
    array = np.asarray(record.array)
    if array.ndim == 2:
        array = array[None]
    mask = _lung_mask(record, prep.lungs, prep.source_lungs)
    unit, _ = normalize_volume(array.astype(np.float32), prep.normalization_params, is_hu=record.is_hu, mask=mask)
    if not mask.any():
        keep = np.arange(array.shape[0])
    else:
        area = mask.reshape(mask.shape[0], -1).sum(axis=1)
        keep = np.flatnonzero(area >= prep.min_lung_fraction * area.max())
    if prep.max_slices is not None:
        keep = evenly_spaced(keep, prep.max_slices)
    out = np.empty((keep.size, prep.size, prep.size), dtype=np.float32)
    reach = reach_px(prep.outside_lungs_mm, record.spacing_mm)
    for j, z in enumerate(keep):
        geometry = crop_geometry(mask[z], prep.margin, unit.shape[1:], prep.size)
        out[j] = prepare_slice(unit[z], geometry, prep.size, mask[z], reach)
    return out, keep


def slice_labels(record: StudyRecord, keep: np.ndarray, classes: tuple[str, ...],
                 min_lesion_fraction: float) -> np.ndarray:
    """Image-level label of each kept slice: the study's class, or, where the record knows its lesions (simulated
    disease), NP for a slice without lesion; -1 marks a slice without a label (a sliver of lesion: neither clearly
    diseased nor clearly clean, or a lesion-free slice in a task without NP), which no loss or slice score uses
    and which its study keeps (:class:`SliceSet`)."""
    c = classes.index(record.label)
    labels = np.full(keep.size, c, dtype=np.int64)
    if record.lesion_mask is None or record.label == "NP" or min_lesion_fraction <= 0:
        return labels
    lesion = np.asarray(record.lesion_mask, dtype=bool).reshape(-1, *record.lesion_mask.shape[-2:])[keep]
    lung = np.asarray(record.lung_mask, dtype=bool).reshape(-1, *record.lung_mask.shape[-2:])[keep] \
        if record.lung_mask is not None else np.ones_like(lesion)
    fraction = lesion.reshape(keep.size, -1).sum(axis=1) / np.maximum(1, lung.reshape(keep.size, -1).sum(axis=1))
    clean = classes.index("NP") if "NP" in classes else -1
    labels[fraction == 0] = clean
    labels[(fraction > 0) & (fraction < min_lesion_fraction)] = -1
    return labels


def build_slice_set(records: Iterable[StudyRecord], classes: Sequence[str], prep: PrepConfig = PrepConfig(),
                    progress: Callable[[int, StudyRecord], None] | None = None) -> SliceSet:
    """Prepare every record whose label is one of ``classes`` (others are skipped: e.g. CAP studies in np-covid)."""
    classes = tuple(classes)
    chunks: list[torch.Tensor] = []
    labels: list[int] = []
    study: list[int] = []
    ids: list[str] = []
    study_labels: list[int] = []
    groups: list[str] = []
    sources: list[str] = []
    for n, record in enumerate(records):
        if record.label not in classes:
            continue
        slices, keep = prepared_slices(record, prep)
        c = classes.index(record.label)
        per_slice = slice_labels(record, keep, classes, prep.min_lesion_fraction)
        if slices.shape[0] == 0:
            continue
        chunks.append(torch.from_numpy(slices).half())
        labels += per_slice.tolist()
        study += [len(ids)] * slices.shape[0]
        ids.append(record.study_id)
        study_labels.append(c)
        groups.append(record.group)
        sources.append(record.source)
        if progress is not None:
            progress(n, record)
    if not ids:
        raise ValueError(f"no studies with a label in {list(classes)}")
    return SliceSet(torch.cat(chunks), torch.tensor(labels, dtype=torch.long), np.asarray(study, dtype=np.int64),
                    ids, np.asarray(study_labels, dtype=np.int64), np.asarray(groups), classes, np.asarray(sources))


# ---- sources ---------------------------------------------------------------------------------------------------

def _phantom_record(seed: int, i: int, label: str, size: int | None, n_slices: int | None) -> StudyRecord:
    from training.phantom import generate_study

    study = generate_study(seed * 100_000 + i, label, size=size, n_slices=n_slices)
    return StudyRecord(study_id=f"phantom-{seed}-{i:04d}", label=label, group=str(study.patient_id),
                       array=np.asarray(study.hu), lung_mask=np.asarray(study.lung_mask, dtype=bool),
                       spacing_mm=tuple(study.spacing_mm))


def phantom_studies(n_studies: int, seed: int, classes: Sequence[str] = TASKS["3way"], size: int | None = 256,
                    n_slices: int | None = 40, jobs: int = 1) -> Iterator[StudyRecord]:
    """``n_studies`` phantom studies, classes in turn (balanced), study ``i`` from seed ``seed * 100_000 + i``.

    ``jobs`` > 1 generates in that many processes (the same studies, in the same order): a few hundred studies
    take a minute on one core, which is most of a GPU training run's wall time otherwise.
    """
    labels = [classes[i % len(classes)] for i in range(n_studies)]
    if jobs <= 1:
        for i, label in enumerate(labels):
            yield _phantom_record(seed, i, label, size, n_slices)
        return
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(jobs) as pool:
        yield from pool.map(_phantom_record, [seed] * n_studies, range(n_studies), labels, [size] * n_studies,
                            [n_slices] * n_studies, chunksize=4)


def toy_studies(n_studies: int, seed: int, classes: Sequence[str] = TASKS["3way"], size: int = 64,
                n_slices: int = 4) -> Iterator[StudyRecord]:
    """Geometric toy studies in HU, balanced classes, one patient each; learnable by a tiny model in seconds."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    for i in range(n_studies):
        rng = np.random.default_rng(seed * 100_000 + i)
        label = classes[i % len(classes)]
        hu = np.full((n_slices, size, size), 40.0, dtype=np.float32)  # soft tissue
        lungs = np.zeros((n_slices, size, size), dtype=bool)
        for z in range(n_slices):
            for cx in (0.3, 0.7):
                lungs[z] |= ((xx - cx) / 0.17) ** 2 + ((yy - 0.5) / 0.32) ** 2 <= 1.0
            hu[z][lungs[z]] = -850.0
            if label == "CAP":
                cx, cy = rng.choice([0.3, 0.7]), rng.uniform(0.35, 0.65)
                hu[z][(((xx - cx) ** 2 + (yy - cy) ** 2) <= 0.09 ** 2) & lungs[z]] = 20.0
            elif label == "COVID":
                for _ in range(3):
                    cx, cy = rng.choice([0.17, 0.83]), rng.uniform(0.3, 0.7)
                    hu[z][(((xx - cx) ** 2 + (yy - cy) ** 2) <= 0.07 ** 2) & lungs[z]] = -450.0
        hu += rng.normal(0.0, 25.0, hu.shape).astype(np.float32)
        yield StudyRecord(study_id=f"toy-{seed}-{i:04d}", label=label, group=f"toy-patient-{seed}-{i}",
                          array=hu.astype(np.int16), lung_mask=lungs, spacing_mm=(5.0, 0.7, 0.7))


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return [{k.strip(): (v or "").strip() for k, v in row.items()} for row in csv.DictReader(fh)]


def _group(row: dict[str, str], fallback: str) -> str:
    return row.get("patient_id") or row.get("source_group") or fallback


def dicom_studies(folder: str | Path, labels_csv: str | Path) -> Iterator[StudyRecord]:
    """DICOM series under ``folder``, one per labels row (``study`` = sub-folder or StudyInstanceUID)."""
    from inference.io import load_study

    folder = Path(folder)
    rows = _read_csv(Path(labels_csv))
    by_uid: dict[str, Path] = {}
    if any(not (folder / r["study"]).is_dir() for r in rows):
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            by_uid[str(load_study(sub).study_instance_uid)] = sub
    for row in rows:
        path = folder / row["study"] if (folder / row["study"]).is_dir() else by_uid.get(row["study"])
        if path is None:
            raise FileNotFoundError(f"study {row['study']!r} of {labels_csv} is neither a folder nor a UID in {folder}")
        volume = load_study(path)
        yield StudyRecord(study_id=row["study"], label=row["label"], group=_group(row, row["study"]),
                          array=np.asarray(volume.array), is_hu=bool(volume.is_hu),
                          spacing_mm=tuple(volume.spacing_mm) if volume.spacing_mm is not None else None)


def image_studies(folder: str | Path, labels_csv: str | Path | None = None) -> Iterator[StudyRecord]:
    """2D display images (PNG/JPEG, 8-bit grey after conversion), each a one-slice non-HU study."""
    folder = Path(folder)
    for row in _read_csv(Path(labels_csv) if labels_csv else folder / "labels.csv"):
        with Image.open(folder / row["file"]) as img:
            array = np.asarray(img.convert("L"), dtype=np.float32)
        yield StudyRecord(study_id=row["file"], label=row["label"], group=_group(row, row["file"]), array=array,
                          is_hu=False)


def export_studies(export_dir: str | Path) -> Iterator[StudyRecord]:
    """Read the training-ready export described in this module's docstring."""
    root = Path(export_dir)
    for row in _read_csv(root / "labels.csv"):
        sdir = root / row["study_id"]
        if (sdir / "slices.npy").is_file():
            hu = np.load(sdir / "slices.npy").astype(np.int16)
        else:
            pngs = sorted(sdir.glob("slice_*.png"))
            if not pngs:
                raise FileNotFoundError(f"{sdir} has neither slices.npy nor slice_XXXX.png files")
            hu = np.stack([np.asarray(Image.open(p), dtype=np.int32) - PNG_HU_OFFSET for p in pngs]).astype(np.int16)
        spacing = None
        if (sdir / "spacing.json").is_file():
            spacing = tuple(float(v) for v in json.loads((sdir / "spacing.json").read_text())["spacing_mm"])
        mask = np.load(sdir / "lung_mask.npy").astype(bool) if (sdir / "lung_mask.npy").is_file() else None
        boxes = _read_csv(sdir / "boxes.csv") if (sdir / "boxes.csv").is_file() else []
        yield StudyRecord(study_id=row["study_id"], label=row["label"], group=_group(row, row["study_id"]),
                          array=hu, lung_mask=mask, spacing_mm=spacing, boxes=boxes)


def write_export_study(export_dir: str | Path, study_id: str, hu: np.ndarray, label: str, patient_id: str = "",
                       source_group: str = "", spacing_mm: Sequence[float] = (1.0, 1.0, 1.0),
                       lung_mask: np.ndarray | None = None, boxes: Sequence[dict[str, Any]] = ()) -> Path:
    """Append one study to a training-ready export (creating ``labels.csv`` with its header when new)."""
    root = Path(export_dir)
    sdir = root / study_id
    sdir.mkdir(parents=True, exist_ok=True)
    np.save(sdir / "slices.npy", np.asarray(hu, dtype=np.int16))
    (sdir / "spacing.json").write_text(json.dumps({"spacing_mm": [float(v) for v in spacing_mm]}))
    if lung_mask is not None:
        np.save(sdir / "lung_mask.npy", np.asarray(lung_mask, dtype=bool))
    with open(sdir / "boxes.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["slice_index", "x0", "y0", "x1", "y1", "label"])
        writer.writeheader()
        writer.writerows(boxes)
    labels = root / "labels.csv"
    new = not labels.exists()
    with open(labels, "a", newline="") as fh:
        writer = csv.writer(fh)
        if new:
            writer.writerow(["study_id", "patient_id", "label", "source_group"])
        writer.writerow([study_id, patient_id, label, source_group])
    return sdir


# ---- splits ----------------------------------------------------------------------------------------------------

def group_kfold(study_labels: np.ndarray, groups: np.ndarray, n_splits: int,
                seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified group k-fold over studies: (train, test) study indices; a group never lands on both sides."""
    n_groups = len(np.unique(groups))
    if n_groups < n_splits:
        raise ValueError(f"{n_groups} patients/groups cannot fill {n_splits} folds")
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    dummy = np.zeros((len(study_labels), 1))
    return [(np.sort(tr), np.sort(te)) for tr, te in splitter.split(dummy, study_labels, groups)]


def held_out_splits(data: SliceSet, by: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) study indices holding out one source (``by="source"``: e.g. train on the real backgrounds,
    test on the phantom, and the reverse) or one real background patient (``by="background"``: the phantom
    patients always train) at a time."""
    if by == "source":
        if data.sources is None:
            raise ValueError("this slice set has no per-study sources")
        keys = data.sources
        held = sorted(set(keys.tolist()))
    elif by == "background":
        keys = data.groups
        phantom = data.sources == "phantom" if data.sources is not None else np.zeros(len(keys), dtype=bool)
        held = sorted(set(keys[~phantom].tolist()))
    else:
        raise ValueError(f"split by {by!r}: expected source or background")
    if len(held) < 2 and by == "source":
        raise ValueError(f"leave-one-source-out needs at least two sources, found {held}")
    idx = np.arange(len(keys))
    return [(idx[keys != k], idx[keys == k]) for k in held]


def group_split(study_labels: np.ndarray, groups: np.ndarray, fraction: float,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held-out) study indices with about ``fraction`` of the studies held out, groups kept apart."""
    if not 0 < fraction < 1:
        raise ValueError("fraction must be in (0, 1)")
    # As many folds as 1/fraction asks for, but no more than the groups or the largest class can fill (small sets).
    largest = int(np.bincount(np.asarray(study_labels)).max())
    n_splits = max(2, min(int(round(1.0 / fraction)), len(np.unique(groups)), largest))
    return group_kfold(study_labels, groups, n_splits, seed)[0]

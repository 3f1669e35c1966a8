"""The whole analysis of one study: lungs, normalisation, slice classification, study decision, saliency, boxes.

``analyze`` is what the CLI and the web app's analysis task run; ``slice_maps`` recomputes one slice's maps on
demand (the viewer asks for maps of slices the run did not explain). Both prepare a slice exactly the same way, and
exactly as training does (``normalize_volume``'s window with the bundle's parameters, ``crop_geometry`` +
``prepare_slice``), a slice at a time.

Study decision (the bundle's ``aggregation``): every slice with lung is classified (the viewer's slice strip shows
them all), but only the slices whose lung area is at least ``min_lung_fraction`` of the study's largest decide the
study, the slices the model was trained on. Those are ranked by their evidence of disease (1 - P(NP), or the
positive class's probability for tasks without NP) and the study probability vector is
- ``topk_mean``: the mean probability vector of the k highest-ranked slices (the paper's weakly supervised setting:
  a few infected slices make an infected study, the healthy majority must not dilute them);
- ``mean``: the mean over all analysed slices;
- ``topfraction_mean``: the mean of the highest-ranked ``fraction`` of the deciding slices (at least one): the
  same share of a whole scan's 150 slices as of a 16-slice subsample or a slab, so a model validated on short
  studies decides a whole scan the same way (a fixed k = 5 of 150 slices takes the 3 % most suspicious slices of
  a healthy scan, of 16 slices the 30 %);
- ``max``: the vector of the single highest-ranked slice (``topk_mean`` with k = 1).

Bundles choose their rule on validation studies (``training.calibration.choose_aggregation``). A bundle may then
shift the study vector's prior (``prior_shift``: a log-odds offset per class, the vector multiplied by
``exp(offset)`` and renormalised; the slices' own probabilities are left alone): fitted where the model meets
anatomy it never trained on (``training.calibration.fit_prior_shift``), because validation studies drawn from the
training patients make a healthy new chest look more diseased to the model than any of them did.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable, Sequence

import numpy as np
import torch

from .boxes import (BOX_LABELS, Box, LesionMap, extract_lesions, infection_percent, lung_volume_ml, opacity_boxes,
                    smoothed_magnitude)
from .bundle import AGGREGATION_RULES, Bundle, min_lung_fraction_of
from .domain import assess, trained_on_hu
from .io import Volume
from .lungs import DEFAULT_METHOD, segment_lungs
from .normalize import apply_window, study_window
from .opacity import aerated_baseline, opacity_labels, percentages, through_plane_interior
from .opacity_fusion import fuse
from .orientation import canonical, mirror, mirror_box, mirror_geometry, study_axes
from .preprocess import CropGeometry, crop_geometry, pixel_size_mm, prepare_slice, reach_px, resize_map
from .saliency import SaliencyEngine, joint_saliency
from .slice_stack import unrelated_slices

__all__ = ["SCHEMA", "SALIENCY_MODES", "SliceMaps", "SliceResult", "AnalysisResult", "analyze", "slice_maps",
           "model_input", "saliency_engine", "aggregate", "aggregate_as", "shift_prior", "positive_classes",
           "lung_slices", "pixel_mm", "measure_opacity", "study_opacity"]

SCHEMA = "lungscope.analysis/2"
SALIENCY_MODES = ("positive", "all", "none")
#: A slice is analysed when its lung area is at least this fraction of the image (apex/base slivers carry no signal).
MIN_LUNG_FRACTION = 0.005
BATCH = 16
#: Opacity components smaller than this (mm^2 in the slice) give no box, and a slice gets at most
#: ``MAX_BOXES_PER_SLICE`` (the best ranked): vessel cross-sections, partial-volume rims and dependent density make
#: many small components. bench/localisation.py --per-class 2 --phantom-patients 2, boxes on every lung slice
#: (recall at IoU 0.3 / false boxes per lung slice): 300 mm^2 x 2: 0.151 / 0.68; 500 x 2: 0.135 / 0.54;
#: 500 x 3: 0.154 / 0.56; 700 x 3: 0.131 / 0.47 (tuned on those studies; small lesions get no box).
MIN_BOX_AREA_MM2 = 700.0
MAX_BOXES_PER_SLICE = 3
#: On a slice the classifier calls diseased its verdict vouches for smaller opacities (half the true lesion
#: components are under 400 mm^2), ranked by the share the saliency points at: down to this area, at most
#: ``MAX_BOXES_DISEASED_SLICE``. bench/localisation.py's studies (default seed / --seed 777 --phantom-patients 3),
#: recall / false boxes per lung slice, the opacity boxes alone: 700 mm^2 x 3 everywhere 0.102 / 0.158 and
#: 0.191 / 0.138; 300 x 5 on diseased slices 0.191 / 0.307 and 0.257 / 0.369; 200 x 5: 0.226 / 0.463 and
#: 0.282 / 0.500 (the false-box ceiling of 0.5 reached); 100 x 5: 0.272 / 0.882.
MIN_DISEASED_BOX_AREA_MM2 = 300.0
MAX_BOXES_DISEASED_SLICE = 5

Progress = Callable[..., None]  # progress(fraction in [0, 1], message)


@dataclass
class SliceMaps:
    """One slice's explanation for its predicted class ``target``: joint saliency, IG per scale, CAM per scale.

    Read through ``joint``, ``ig`` and ``cams`` at the slice's original rows x columns (float32, zero outside its
    lungs); held in the model's input grid (``grid``: joint, IG conv3..5, CAM conv3..5 at size x size, the CAMs
    resized to it) with the crop ``geometry`` and the slice's ``lung`` mask, and mapped back when read. Why: seven
    maps of a 512 x 512 slice are 7 MB in float32, of the default model's 112 x 112 grid 0.35 MB, and a long study
    explains hundreds of slices (LIDC-IDRI-0002 resampled to 600 slices: 119 explained slices took the analysis's
    peak memory from 1.33 to 2.24 GB when they were held at full size). The joint and IG maps are magnitudes
    smoothed as the paper reads them for localisation (``inference.boxes.smoothed_magnitude``, in the model's input
    grid); the CAMs are signed class evidence."""

    grid: np.ndarray
    geometry: CropGeometry
    lung: np.ndarray
    target: str

    @property
    def joint(self) -> np.ndarray:
        return self._original(0)

    @property
    def ig(self) -> list[np.ndarray]:
        return [self._original(i) for i in (1, 2, 3)]

    @property
    def cams(self) -> list[np.ndarray]:
        return [self._original(i) for i in (4, 5, 6)]

    def _original(self, i: int) -> np.ndarray:
        full = self.geometry.map_to_original(self.grid[i])
        full *= self.lung  # zero outside the lungs, in the map's own float32 image: no float copy of the mask
        return full


@dataclass
class SliceResult:
    index: int
    sop_instance_uid: str | None
    instance_number: int | None
    z_mm: float | None
    lung_area_px: int
    probabilities: dict[str, float]
    infected_area_px: int = 0
    opacity_px: int = 0
    boxes: list[Box] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "sop_instance_uid": self.sop_instance_uid,
                "instance_number": self.instance_number, "z_mm": self.z_mm, "lung_area_px": self.lung_area_px,
                "infected_area_px": self.infected_area_px, "opacity_px": self.opacity_px,
                "probabilities": self.probabilities,
                "boxes": [b.to_json() for b in self.boxes]}


@dataclass
class AnalysisResult:
    input: dict[str, Any]
    model: dict[str, Any]
    label: str
    probabilities: dict[str, float]
    infection_percent: float
    lung_volume_ml: float | None
    slices: list[SliceResult]  # analysed slices, in spatial order
    timings_s: dict[str, float]
    maps: dict[int, SliceMaps]
    lung_mask: np.ndarray
    opacity_mask: np.ndarray  # uint8 like the volume: 0 none, 1 ground glass, 2 consolidation (inference.opacity)
    opacity: dict[str, Any] | None  # percentages of the lung volume; None for images without HU
    domain: dict[str, Any] | None  # inference.domain.assess; None for bundles without a domain model
    #: the classifier's own study probabilities where the bundle decided the study with the opacity too
    #: (``inference.opacity_fusion``); None where ``probabilities`` are the classifier's
    classifier_probabilities: dict[str, float] | None = None

    def to_json(self) -> dict[str, Any]:
        """The ``lungscope.analysis/2`` object (inference/schemas/analysis.schema.json)."""
        prediction: dict[str, Any] = {"label": self.label, "probabilities": self.probabilities}
        if self.classifier_probabilities is not None:
            prediction["classifier_probabilities"] = self.classifier_probabilities
        return {"schema": SCHEMA, "input": self.input, "model": self.model, "prediction": prediction,
                "domain": self.domain, "opacity": self.opacity,
                "infection_percent": round(self.infection_percent, 4),
                "lung_volume_ml": None if self.lung_volume_ml is None else round(self.lung_volume_ml, 2),
                "slices": [s.to_json() for s in self.slices],
                "timings_s": {k: round(v, 4) for k, v in self.timings_s.items()}}


def positive_classes(classes: list[str]) -> set[str]:
    """The disease classes: all but NP, or the last class of a task without NP."""
    return set(classes) - {"NP"} if "NP" in classes else {classes[-1]}


def aggregate(probs: np.ndarray, classes: list[str], rule: str = "topk_mean", k: int = 5,
              fraction: float = 0.25) -> np.ndarray:
    """The study probability vector from (n_slices, K) slice probabilities (see the module docstring)."""
    if probs.shape[0] == 0:
        raise ValueError("no slice to aggregate")
    if rule == "mean":
        return probs.mean(axis=0)
    if rule not in AGGREGATION_RULES:
        raise ValueError(f"unknown aggregation rule {rule!r}")
    count = {"max": 1, "topk_mean": int(k), "topfraction_mean": int(np.ceil(fraction * probs.shape[0]))}[rule]
    evidence = 1.0 - probs[:, classes.index("NP")] if "NP" in classes else probs[:, -1]
    top = np.argsort(-evidence, kind="stable")[: max(1, count)]
    return probs[top].mean(axis=0)


def aggregate_as(probs: np.ndarray, classes: list[str], aggregation: dict[str, Any]) -> np.ndarray:
    """:func:`aggregate` with a bundle's ``aggregation`` block (rule, k, fraction; defaults for what it lacks), then
    its ``prior_shift`` if any (see the module docstring)."""
    study = aggregate(probs, classes, str(aggregation.get("rule", "topk_mean")), int(aggregation.get("k", 5)),
                      float(aggregation.get("fraction", 0.25)))
    return shift_prior(study, classes, aggregation.get("prior_shift", {}))


def shift_prior(vector: np.ndarray, classes: list[str], shift: dict[str, float]) -> np.ndarray:
    """A probability vector (or rows of them) with each class's log-odds moved by ``shift[class]`` (0 for classes
    it does not name), renormalised: Bayes' rule for a change of the class prior."""
    if not shift:
        return vector
    weights = np.exp(np.array([float(shift.get(c, 0.0)) for c in classes]))
    shifted = np.asarray(vector, dtype=np.float64) * weights
    return (shifted / shifted.sum(axis=-1, keepdims=True)).astype(np.asarray(vector).dtype)


def _deciding(areas: np.ndarray, bundle: Bundle) -> np.ndarray:
    """Which of the classified slices (their lung areas) decide the study: a boolean mask, never empty."""
    fraction = min_lung_fraction_of(bundle.meta)
    return areas >= fraction * areas.max() if areas.max() > 0 else np.ones(areas.shape, dtype=bool)


def _input_size(bundle: Bundle) -> int:
    rows, cols = bundle.meta["input_size"]
    if rows != cols:
        raise ValueError(f"the pipeline crops square slices; bundle input size {rows}x{cols} is not square")
    return int(rows)


def _window(volume: Volume, bundle: Bundle, lung_mask: np.ndarray) -> tuple[float, float] | None:
    """The study's window with the bundle's normalisation (histogram of the lung voxels); None for 8-bit input."""
    return study_window(volume.array, bundle.meta["normalization"], volume.is_hu, lung_mask)


def _input(volume: Volume, window: tuple[float, float] | None, index: int, geometry: CropGeometry, size: int,
           lungs: np.ndarray, reach_px: float | None) -> np.ndarray:
    """Slice ``index`` as the model sees it: normalised as ``normalize_volume`` does the whole study in training
    (the same elementwise window), cropped and resized, blanked beyond ``reach_px`` of the lungs when the bundle
    asks (``crop.outside_lungs_mm``); a slice at a time, so no float copy of the study is made."""
    return prepare_slice(apply_window(volume.array[index], window), geometry, size, lungs[index], reach_px)


def _reach(volume: Volume, bundle: Bundle) -> float | None:
    """The bundle's blanking distance (``crop.outside_lungs_mm``) in the study's pixels, None without one."""
    return reach_px(bundle.meta["crop"].get("outside_lungs_mm"), volume.spacing_mm)


def _geometry(lung_mask: np.ndarray, index: int, bundle: Bundle) -> CropGeometry:
    return crop_geometry(lung_mask[index], float(bundle.meta["crop"]["margin"]), lung_mask.shape[1:],
                         _input_size(bundle))


def _temperature(bundle: Bundle) -> float:
    """The bundle's calibration temperature (1.0 for bundles fitted before calibration existed)."""
    return float(bundle.meta.get("calibration", {}).get("temperature", 1.0))


def _classify(model: torch.nn.Module, inputs: Callable[[np.ndarray], np.ndarray], slices: np.ndarray,
              device: torch.device, temperature: float = 1.0
              ) -> tuple[np.ndarray, list[list[np.ndarray]], np.ndarray]:
    """Calibrated softmax probabilities (n, K), per slice its predicted class's three CAMs, and the pooled Conv5
    features (n, C) the domain check uses, in batches of ``BATCH`` slices prepared as they are needed
    (``inputs(slices[a:b])``: (b - a, size, size)), so memory does not grow with the study's length. Puts ``model``
    in eval mode with channels-last weights first (the saliency engine built from it afterwards expects both)."""
    model.eval().to(memory_format=torch.channels_last)
    probs, cams, features = [], [], []
    with torch.inference_mode():
        for start in range(0, len(slices), BATCH):
            x = torch.from_numpy(inputs(slices[start:start + BATCH])[:, None]).to(device)
            out = model.forward_all(x.contiguous(memory_format=torch.channels_last))
            p = torch.softmax(out.logits.float() / temperature, dim=1)
            target = p.argmax(dim=1)
            rows = torch.arange(len(target), device=device)
            scale_cams = [c[rows, target].float().cpu().numpy() for c in out.cams]
            probs.append(p.cpu().numpy())
            features.append(out.pooled.float().cpu().numpy())
            cams.extend([[sc[b] for sc in scale_cams] for b in range(len(target))])
    if not probs:
        return np.zeros((0, 0)), cams, np.zeros((0, 0))
    return np.concatenate(probs), cams, np.concatenate(features)


def _slice_inputs(volume: Volume, bundle: Bundle, lungs: np.ndarray, slices: np.ndarray
                  ) -> tuple[dict[int, CropGeometry], Callable[[Sequence[int]], np.ndarray]]:
    """The lung crop of each of ``slices`` and a function giving any batch of them as the model's input (the study's
    window from ``lungs``, the crop, the input size; :func:`_input`), for classification and explanation alike."""
    window, size = _window(volume, bundle, lungs), _input_size(bundle)
    geometries = {int(k): _geometry(lungs, int(k), bundle) for k in slices}
    reach = _reach(volume, bundle)

    def inputs(ks: Sequence[int]) -> np.ndarray:
        return np.stack([_input(volume, window, int(k), geometries[int(k)], size, lungs, reach) for k in ks])
    return geometries, inputs


def _explain(engine: SaliencyEngine, x224: np.ndarray, targets: list[int], cams: list[list[np.ndarray]],
             geometries: list[CropGeometry], class_names: list[str], lungs: list[np.ndarray]
             ) -> list[tuple[SliceMaps, np.ndarray]]:
    """IG maps of prepared slices ``x224`` (S, size, size), each for its target class, in one engine call; each
    slice's maps are kept inside its lung mask (``lungs``), the joint and IG maps smoothed in magnitude (the paper's
    |.| and 5x5 Gaussian, ``smoothed_magnitude``) and mapped back to original pixels; with each, the raw joint map
    in the 224 grid, zero outside the lungs, which the boxes' Isodata step smooths the same way.

    Why the lung restriction (not in the paper): with a zero baseline, Integrated Gradients weighs a pixel's
    gradient by its brightness, so bone and soft tissue round the lungs (the spine above all) carried the largest
    attributions, and the map's maximum landed there on most real slices. Disease is in the lungs (the mask keeps
    the lesions), so the maps the viewer shows, the pointing game and the Isodata threshold of the boxes see only
    the lungs. ``bench/localisation.py --per-class 4 --phantom-patients 3 --seed 777`` (297 slices with lesions,
    default 2.2.0): pointing game of the joint map 0.21 -> 0.63 (a random lung pixel: 0.21), Conv3/4/5 IG
    0.14/0.10/0.14 -> 0.62/0.57/0.61. Restricting each scale's global max pooling to the lung cells as well (so IG
    explains the lungs' own evidence) gave 0.64 and was left out.

    The joint map is the product of the scales' smoothed magnitudes (each |IG| through the 5x5 Gaussian first),
    then smoothed once more as every shown map is; the paper multiplies the raw maps and smooths the product. Why
    (a departure): a raw product peaks where the three speckled maps happen to peak on the same pixel, the product of
    the smoothed maps where each scale's attribution is dense, its soft AND. ``bench/localisation.py``, raw ->
    smoothed product, default draw (110 slices with lesions) / ``--per-class 3 --phantom-patients 3 --seed 777``
    (227): pointing game of the joint map 0.545 -> 0.591 / 0.661 -> 0.696, box recall at IoU 0.3 0.164 -> 0.171 /
    0.267 -> 0.272, false boxes per lung slice 0.40 -> 0.45 / 0.41 -> 0.47 (the joint map ranks a slice's opacity
    components, of which the capped number are kept, and gives its own boxes to a diseased slice without any); the
    per-scale maps do not change."""
    out = []
    for sal, cam, geometry, class_name, lung in zip(engine.attribute_many(torch.from_numpy(x224)[:, None], targets),
                                                    cams, geometries, class_names, lungs):
        lung224 = geometry.mask_to_output(lung)
        smoothed = [smoothed_magnitude(np.asarray(m, dtype=np.float32) * lung224) for m in sal.ig]
        joint224 = joint_saliency(smoothed)  # each scale at its peak in the lungs
        scaled_cams = [resize_map(c, (geometry.size, geometry.size)) for c in cam]
        shown = [m.astype(np.float32) for m in [smoothed_magnitude(joint224), *smoothed]]
        out.append((SliceMaps(np.stack([*shown, *scaled_cams]), geometry, lung, class_name), joint224))
    return out


def analyze(volume: Volume, bundle: Bundle, saliency: str = "positive", lungs: np.ndarray | None = None,
            lung_method: str = DEFAULT_METHOD, progress: Progress | None = None) -> AnalysisResult:
    """Analyse a loaded study with a bundle; ``saliency`` says which slices get IG maps, boxes and severity:
    ``positive`` (slices predicted as a disease class), ``all``, or ``none``. ``lungs``: a lung mask to use
    instead of segmenting. The study is analysed in the models' orientation (``inference.orientation``: a prone
    DICOM series is mirrored for the analysis, in place, and restored); masks, boxes and maps come back on the
    stored pixels."""
    if saliency not in SALIENCY_MODES:
        raise ValueError(f"saliency must be one of {SALIENCY_MODES}, not {saliency!r}")
    with canonical(volume, study_axes(volume)) as axes:
        given = mirror(np.array(lungs, dtype=bool), axes) if lungs is not None and axes else lungs
        result = _analyze(volume, bundle, saliency, given, lung_method, progress)
    if axes:
        shape = result.lung_mask.shape[1:]
        mirror(result.lung_mask, axes)
        mirror(result.opacity_mask, axes)
        for s in result.slices:
            s.boxes = [mirror_box(b, shape, axes) for b in s.boxes]
        result.maps = {k: _stored_maps(m, axes, result.lung_mask[k]) for k, m in result.maps.items()}
    return result


def _stored_maps(maps: SliceMaps, axes: tuple[int, ...], lung: np.ndarray) -> SliceMaps:
    """A slice's maps made in the models' orientation, put on the stored slice (mirrored along ``axes``)."""
    grid = np.ascontiguousarray(np.flip(maps.grid, axes)) if axes else maps.grid
    return SliceMaps(grid, mirror_geometry(maps.geometry, axes), lung, maps.target)


def lung_slices(areas: np.ndarray, image_px: int) -> np.ndarray:
    """The indices of the slices ``analyze`` classifies and measures, from each slice's lung area (pixels) and the
    image's size: lung area at least ``MIN_LUNG_FRACTION`` of the image."""
    return np.flatnonzero(np.asarray(areas) >= MIN_LUNG_FRACTION * image_px)


def pixel_mm(volume: Volume) -> float:
    """The in-plane pixel size (mm) the HU measures use (:func:`inference.preprocess.pixel_size_mm`)."""
    return pixel_size_mm(volume.spacing_mm)


def measure_opacity(volume: Volume, lung_mask: np.ndarray, slices: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """The HU opacity of a study's ``slices`` (``inference.opacity``): its labels (uint8 like the volume, zero on the
    other slices) and their ``percentages`` of the lung volume, with the study's own aerated-lung level and slice
    spacing; a stack of unrelated slices (``inference.slice_stack``) is measured slice by slice."""
    labels, pixel = np.zeros(lung_mask.shape, dtype=np.uint8), pixel_mm(volume)
    unrelated = unrelated_slices(volume.array)
    if unrelated:
        warnings.warn(f"{volume.path or 'the volume'}: its {volume.n_slices} slices are unrelated images (one "
                      "each of several patients): segmented and measured slice by slice; the study label "
                      "summarises them all", stacklevel=2)
    baseline = None if unrelated else aerated_baseline(volume.array, lung_mask)
    slice_mm = float(volume.spacing_mm[0]) if volume.spacing_mm is not None and not unrelated else None
    for k in slices:
        labels[k] = opacity_labels(volume.array[k], lung_mask[k], pixel, baseline=baseline,
                                   counted=through_plane_interior(lung_mask, int(k), slice_mm))
    return labels, percentages(labels, lung_mask)


def study_opacity(volume: Volume, lung_method: str = DEFAULT_METHOD) -> dict[str, Any] | None:
    """A study's opacity percentages exactly as ``analyze`` reports them (its lungs, slices and measure; no
    classifier), in the orientation it is given; None for images without HU. Training pairs these with a
    cross-validation's held-out study probabilities (``training.opacity_fusion``)."""
    if not volume.is_hu:
        return None
    lung_mask = segment_lungs(volume, lung_method)
    slices = lung_slices(lung_mask.sum(axis=(1, 2)), lung_mask.shape[1] * lung_mask.shape[2])
    return measure_opacity(volume, lung_mask, slices)[1]


def _analyze(volume: Volume, bundle: Bundle, saliency: str, lungs: np.ndarray | None, lung_method: str,
             progress: Progress | None) -> AnalysisResult:
    report = progress or (lambda fraction, message="": None)
    start = time.perf_counter()
    lung_mask = segment_lungs(volume, lung_method) if lungs is None else np.asarray(lungs, dtype=bool)
    if lung_mask.shape != volume.array.shape:
        raise ValueError(f"lung mask shape {lung_mask.shape} differs from the volume's {volume.array.shape}")
    t_lungs = time.perf_counter()
    report(0.1, "lungs segmented")

    classes, model, device = bundle.classes, bundle.model, bundle.device
    areas = lung_mask.sum(axis=(1, 2))
    selected = lung_slices(areas, lung_mask.shape[1] * lung_mask.shape[2])
    lungs_found = selected.size > 0
    if not lungs_found:  # not a chest CT, or the lungs were not found: classify every whole slice
        selected = np.arange(volume.n_slices)
    geometries, inputs = _slice_inputs(volume, bundle, lung_mask, selected)
    size = _input_size(bundle)
    probs, cams, features = _classify(model, inputs, selected, device, _temperature(bundle))
    deciding = _deciding(areas[selected], bundle)
    study = aggregate_as(probs[deciding], classes, bundle.meta.get("aggregation", {}))
    domain = assess(features[deciding], bundle.meta.get("domain"), lungs_found,
                    familiar_input=volume.is_hu == trained_on_hu(bundle.meta))
    t_classify = time.perf_counter()
    report(0.3, f"classified {len(selected)} slices")

    positive = positive_classes(classes)
    predicted = [classes[int(i)] for i in probs.argmax(axis=1)]
    slices = [SliceResult(index=int(k), sop_instance_uid=volume.sop_instance_uids[k],
                          instance_number=volume.instance_numbers[k], z_mm=volume.z_mm[k],
                          lung_area_px=int(areas[k]), probabilities=_rounded(classes, probs[i]))
              for i, k in enumerate(selected)]
    opacity_mask, opacity = np.zeros(lung_mask.shape, dtype=np.uint8), None
    if volume.is_hu:  # the amount in HU, in every lung slice (inference.opacity says why)
        opacity_mask, opacity = measure_opacity(volume, lung_mask, selected)
        for i, k in enumerate(selected):
            slices[i].opacity_px = int(np.count_nonzero(opacity_mask[k]))
    classifier_study = None
    fusion = bundle.meta.get("opacity_fusion")
    if fusion and opacity is not None and lungs_found:  # the study decision with the HU measure (opacity_fusion)
        classifier_study, study = study, fuse(study, classes, opacity, fusion)
    pixel = pixel_mm(volume)
    min_box_px = {diseased: max(4, int(round(area / (pixel * pixel)))) if volume.is_hu else 0
                  for diseased, area in ((False, MIN_BOX_AREA_MM2), (True, MIN_DISEASED_BOX_AREA_MM2))}
    explain = [i for i in range(len(selected))
               if saliency == "all" or (saliency == "positive" and predicted[i] in positive)]
    maps: dict[int, SliceMaps] = {}
    salient: dict[int, LesionMap] = {}  # the diseased slices' saliency, by position in ``selected``
    if explain:
        engine = saliency_engine(bundle)
        min_area = int(bundle.meta.get("saliency", {}).get("min_box_area_px", 30))
        per_call = engine.slices_per_call(size, size)
        for first in range(0, len(explain), per_call):
            chunk = explain[first:first + per_call]
            ks = [int(selected[i]) for i in chunk]
            explained = _explain(engine, inputs(ks),
                                 [classes.index(predicted[i]) for i in chunk], [cams[i] for i in chunk],
                                 [geometries[k] for k in ks], [predicted[i] for i in chunk], [lung_mask[k] for k in ks])
            for i, k, (slice_maps_k, joint224) in zip(chunk, ks, explained):
                maps[k] = slice_maps_k
                if predicted[i] in positive:
                    salient[i] = extract_lesions(joint224, geometries[k], lung_mask[k],
                                                 BOX_LABELS.get(predicted[i], "other"), min_area)
            done = first + len(chunk)
            report(0.3 + 0.7 * done / len(explain), f"saliency {done}/{len(explain)}")
    for i, k in enumerate(selected):
        disease = max(positive, key=lambda c: probs[i][classes.index(c)])
        diseased = predicted[i] in positive
        slices[i].boxes = _boxes(salient.get(i), opacity_mask[k], BOX_LABELS.get(disease, "other"),
                                 min_box_px[diseased], 1.0 - _np_probability(classes, probs[i]), volume.is_hu,
                                 MAX_BOXES_DISEASED_SLICE if diseased else MAX_BOXES_PER_SLICE)
        slices[i].infected_area_px = _infected_px(diseased, slices[i].opacity_px, salient.get(i), volume.is_hu)
    t_saliency = time.perf_counter()

    label = classes[int(np.argmax(study))]
    lung_px = int(sum(s.lung_area_px for s in slices))
    return AnalysisResult(
        input=_input_json(volume), model=_model_json(bundle), label=label,
        probabilities=_rounded(classes, study),
        infection_percent=infection_percent(sum(s.infected_area_px for s in slices), lung_px),
        lung_volume_ml=lung_volume_ml(lung_mask, volume.spacing_mm), slices=slices,
        timings_s={"load": 0.0, "lungs": t_lungs - start, "classify": t_classify - t_lungs,
                   "saliency": t_saliency - t_classify, "total": t_saliency - start},
        maps=maps, lung_mask=lung_mask, opacity_mask=opacity_mask, opacity=opacity, domain=domain,
        classifier_probabilities=None if classifier_study is None else _rounded(classes, classifier_study))


def saliency_engine(bundle: Bundle) -> SaliencyEngine:
    """The Integrated Gradients engine ``analyze`` explains with: the bundle's model and its ``saliency.steps``."""
    return SaliencyEngine(bundle.model, steps=int(bundle.meta.get("saliency", {}).get("steps", 25)))


def model_input(volume: Volume, bundle: Bundle, index: int, lung_mask: np.ndarray) -> tuple[np.ndarray, CropGeometry]:
    """Slice ``index`` as ``analyze`` gives it to the model (the study's window, the lung crop, the input size) and
    the crop that maps it back to the slice's pixels, for a volume (and mask) in the models' orientation
    (``inference.orientation``; ``analyze`` and ``slice_maps`` put a study in it)."""
    geometry = _geometry(lung_mask, index, bundle)
    return _input(volume, _window(volume, bundle, lung_mask), index, geometry, _input_size(bundle), lung_mask,
                  _reach(volume, bundle)), geometry


def slice_maps(volume: Volume, bundle: Bundle, index: int, lung_mask: np.ndarray) -> SliceMaps:
    """One slice's maps on demand, prepared and explained exactly as ``analyze`` does (predicted class, the models'
    orientation), on the stored slice; ``lung_mask`` is the study's, as stored."""
    with canonical(volume, study_axes(volume)) as axes:
        lungs = np.flip(lung_mask, axes) if axes else lung_mask
        x224, geometry = model_input(volume, bundle, index, lungs)
    probs, cams, _ = _classify(bundle.model, lambda _: x224[None], np.array([index]), bundle.device,
                               _temperature(bundle))
    target = int(probs[0].argmax())
    engine = saliency_engine(bundle)
    [(maps, _)] = _explain(engine, x224[None], [target], cams, [geometry], [bundle.classes[target]],
                           [np.ascontiguousarray(lungs[index])])
    return _stored_maps(maps, axes, lung_mask[index]) if axes else maps


def _rounded(classes: list[str], vector: np.ndarray) -> dict[str, float]:
    return {c: round(float(v), 6) for c, v in zip(classes, vector)}


def _input_json(volume: Volume) -> dict[str, Any]:
    return {"path": volume.path, "kind": volume.kind, "study_instance_uid": volume.study_instance_uid,
            "series_instance_uid": volume.series_instance_uid, "n_slices": volume.n_slices,
            "spacing_mm": None if volume.spacing_mm is None else [round(float(v), 6) for v in volume.spacing_mm]}


def _boxes(lesions: LesionMap | None, opacity: np.ndarray, label: str, min_px: int, score: float,
           is_hu: bool, cap: int) -> list[Box]:
    """A slice's boxes. HU images: its opacity components of at least ``min_px`` pixels, ranked by the share the
    saliency of a diseased slice points at (``lesions``; by size on the other slices, which the classifier may have
    missed), at most ``cap``; a diseased slice without any gets the paper's saliency boxes at half their score, so
    the annotator still sees where the model looked. Images without HU: the saliency boxes of diseased slices."""
    if not is_hu:
        return list(lesions.boxes) if lesions else []
    boxes = opacity_boxes(opacity, None if lesions is None else lesions.positive, label, min_px, score)
    if boxes or lesions is None:
        return boxes[:cap]
    return [Box(b.x0, b.y0, b.x1, b.y1, b.score * 0.5, b.label) for b in lesions.boxes]


def _infected_px(diseased: bool, opacity_px: int, lesions: LesionMap | None, is_hu: bool) -> int:
    """A slice's infected lung pixels: on a HU slice the classifier calls diseased, its opacity pixels (the
    classifier says whether the slice is diseased, the HU measure how much of it); on the other HU slices none.
    Images without HU have no opacity measure and keep the paper's weak estimate, the saliency-positive lung pixels
    of a diseased slice.

    Why not the saliency area on HU slices too (the paper's severity, used up to 2.2.0): an Isodata threshold of a
    sparse attribution map covers a few percent of the lung whatever the lesion's extent (RICORD COVID-19 patient 1:
    2.9 % against 37.7 % opacity). ``bench/localisation.py``'s studies (default seed; --seed 777
    --phantom-patients 3), mean absolute error of the infection % against the simulator's lesion %: saliency area
    10.65 / 10.73 points (diseased studies under-read by 16); opacity on diseased slices 5.02 / 4.32; the opacity
    of every slice (``opacity.percent``) 5.63 / 4.88, which counts a healthy lung's dependent density as well."""
    if is_hu:
        return opacity_px if diseased else 0
    return lesions.infected_area_px if lesions is not None else 0


def _np_probability(classes: list[str], vector: np.ndarray) -> float:
    """P(NP) of a probability vector (0 for tasks without NP: every slice is evidence of its disease)."""
    return float(vector[classes.index("NP")]) if "NP" in classes else 0.0


def _model_json(bundle: Bundle) -> dict[str, Any]:
    return {"name": bundle.name, "version": bundle.version, "sha256": bundle.sha256, "classes": bundle.classes,
            "calibration": {"temperature": _temperature(bundle)}}

"""Model bundles: a folder with ``model.json`` (the contract) and ``weights.pt`` (a state dict, fp16 allowed).

``model.json`` says everything needed to run the weights the way they were trained: architecture and width,
classes, input size, normalisation, crop margin, the study-level aggregation rule, saliency defaults, version,
training-data fingerprint and metrics. Loading validates it against the weights and against what the caller
expects, and refuses a mismatch with a message that says what differs.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .classifier import MultiScaleVGG
from .opacity_fusion import check_params
from .preprocess import check_outside_lungs_mm

SCHEMA = "lungscope.bundle/1"
WEIGHTS_FILE = "weights.pt"
META_FILE = "model.json"
#: Bundles shipped in the repository, loadable by name.
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"

DEFAULT_META: dict[str, Any] = {
    "schema": SCHEMA,
    "architecture": {"name": "MultiScaleVGG", "width": 1.0, "in_channels": 1},
    "input_size": [224, 224],
    # Sliding window W(Q, S) over the HU histogram of lung-relevant voxels (inference/normalize.py).
    "normalization": {"method": "sliding_window", "Q": 1500.0, "S": 10.0, "hu_range": [-1200.0, 600.0]},
    "crop": {"margin": 0.05},
    # Study probability = mean slice probability vector of the top-k slices ranked by 1 - P(NP) (the positive class's
    # probability for tasks without NP; inference.pipeline.aggregate), among the slices whose lung area is at least
    # min_lung_fraction of the study's largest: the slices training used (training.datasets.PrepConfig), so apex and
    # base slices, which the model never saw, cannot decide a study.
    "aggregation": {"rule": "topk_mean", "k": 5, "min_lung_fraction": 0.25},
    "saliency": {"steps": 25, "min_box_area_px": 30},
}


class BundleError(ValueError):
    """A bundle that cannot be used: missing files, bad JSON, or a mismatch with what the caller needs."""


@dataclass
class Bundle:
    path: Path
    meta: dict[str, Any]
    model: MultiScaleVGG
    sha256: str
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def name(self) -> str:
        return str(self.meta.get("name", self.path.name))

    @property
    def version(self) -> str:
        return str(self.meta.get("version", "0"))

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])


#: The study decision rules ``inference.pipeline.aggregate`` knows.
AGGREGATION_RULES = ("topk_mean", "topfraction_mean", "mean", "max")


def min_lung_fraction_of(meta: dict[str, Any]) -> float:
    """The fraction of a study's largest lung area a slice needs to decide the study (and to be trained on), from a
    bundle's ``aggregation``; bundles older than the rule get the default's."""
    return float(meta.get("aggregation", {}).get("min_lung_fraction",
                                                 DEFAULT_META["aggregation"]["min_lung_fraction"]))


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise BundleError("--device cuda was asked for but no CUDA device is available")
    return torch.device(device)


def resolve_path(name_or_path: str | Path) -> Path:
    """A bundle folder: an existing path, or the name of a bundle shipped under ``models/``."""
    candidate = Path(name_or_path)
    if candidate.is_dir():
        return candidate
    shipped = MODELS_DIR / str(name_or_path)
    if shipped.is_dir():
        return shipped
    raise BundleError(f"model bundle {name_or_path!r} not found (neither a folder nor a bundle under {MODELS_DIR})")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_model(meta: dict[str, Any]) -> MultiScaleVGG:
    arch = meta.get("architecture", {})
    if arch.get("name") != "MultiScaleVGG":
        raise BundleError(f"unsupported architecture {arch.get('name')!r}; this engine runs MultiScaleVGG")
    return MultiScaleVGG(
        num_classes=len(meta["classes"]), in_channels=int(arch.get("in_channels", 1)), width=float(arch.get("width", 1.0))
    )


def validate_meta(meta: dict[str, Any], expected_classes: list[str] | None = None,
                  expected_input_size: list[int] | None = None) -> None:
    """Check the contract fields; raise BundleError naming the first problem."""
    if meta.get("schema") != SCHEMA:
        raise BundleError(f"model.json schema is {meta.get('schema')!r}, expected {SCHEMA!r}")
    classes = meta.get("classes")
    if not isinstance(classes, list) or len(classes) < 2 or len(set(classes)) != len(classes):
        raise BundleError("model.json 'classes' must list at least two distinct class names")
    if expected_classes is not None and list(classes) != list(expected_classes):
        raise BundleError(f"bundle classes {classes} do not match the expected {list(expected_classes)}")
    size = meta.get("input_size")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v >= 32 for v in size)):
        raise BundleError("model.json 'input_size' must be [height, width] integers >= 32")
    if expected_input_size is not None and list(size) != list(expected_input_size):
        raise BundleError(f"bundle input size {size} does not match the expected {list(expected_input_size)}")
    if meta.get("aggregation", {}).get("rule") not in AGGREGATION_RULES:
        raise BundleError(f"model.json 'aggregation.rule' must be one of {', '.join(AGGREGATION_RULES)}")
    shift = meta["aggregation"].get("prior_shift", {})
    if not (isinstance(shift, dict) and set(shift) <= set(classes)
            and all(isinstance(v, int | float) and abs(v) <= 10 for v in shift.values())):
        raise BundleError("model.json 'aggregation.prior_shift' must map class names to log-odds offsets within +-10")
    try:
        check_outside_lungs_mm(meta.get("crop", {}).get("outside_lungs_mm"))
    except ValueError as exc:
        raise BundleError(f"model.json 'crop.outside_lungs_mm': {exc}") from None
    if "opacity_fusion" in meta:
        try:
            check_params(meta["opacity_fusion"], classes)
        except ValueError as exc:
            raise BundleError(f"model.json {exc}") from exc


def load_bundle(name_or_path: str | Path, device: str | torch.device = "auto",
                expected_classes: list[str] | None = None, expected_input_size: list[int] | None = None) -> Bundle:
    path = resolve_path(name_or_path)
    meta_path, weights_path = path / META_FILE, path / WEIGHTS_FILE
    if not meta_path.is_file() or not weights_path.is_file():
        raise BundleError(f"{path} is not a model bundle: it needs {META_FILE} and {WEIGHTS_FILE}")
    try:
        meta = {**DEFAULT_META, **json.loads(meta_path.read_text())}
    except json.JSONDecodeError as exc:
        raise BundleError(f"{meta_path} is not valid JSON: {exc}") from exc
    validate_meta(meta, expected_classes, expected_input_size)
    model = build_model(meta)
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as exc:
        raise BundleError(f"weights in {weights_path} do not fit the architecture in model.json: {exc}") from exc
    dev = resolve_device(device)
    model.to(dev).eval()
    return Bundle(path=path, meta=meta, model=model, sha256=file_sha256(weights_path), device=dev)


def save_bundle(model: MultiScaleVGG, out_dir: str | Path, meta: dict[str, Any], half: bool = True) -> Path:
    """Write a bundle folder. ``meta`` must hold at least ``name``, ``version`` and ``classes``; defaults fill the rest."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    full = {**DEFAULT_META, **meta}
    full["architecture"] = {"name": "MultiScaleVGG", "width": model.width, "in_channels": model.in_channels}
    if len(full["classes"]) != model.num_classes:
        raise BundleError(f"meta lists {len(full['classes'])} classes but the model has {model.num_classes} outputs")
    validate_meta(full)
    state = {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).cpu()
             for k, v in model.state_dict().items()}
    torch.save(state, out / WEIGHTS_FILE)
    full["weights_sha256"] = file_sha256(out / WEIGHTS_FILE)
    (out / META_FILE).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
    return out

"""Saliency/CAM maps of one slice: compact npz files in the storage backend, and their PNG rendering.

A slice's maps are eight original-resolution arrays (``MAP_KINDS``). They are stored float16 (uint8 for the lung
mask) in one compressed npz per slice under ``maps/<run_id>/<index>.npz``: a 512x512 slice costs well under a
megabyte, and the viewer fetches one map at a time as an 8-bit PNG.
"""
from __future__ import annotations

import io
from typing import Protocol, Sequence

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

#: What the PNG endpoint serves: the joint saliency, the three scales' Integrated Gradients, the three CAMs, the lungs.
MAP_KINDS: tuple[str, ...] = ("joint", "conv3", "conv4", "conv5", "cam3", "cam4", "cam5", "lung")


class SliceMapsLike(Protocol):
    """``inference.pipeline.SliceMaps``: float32 maps at the slice's original rows x columns."""

    joint: np.ndarray
    ig: Sequence[np.ndarray]
    cams: Sequence[np.ndarray]


def maps_name(run_id: int, index: int) -> str:
    return f"maps/{run_id}/{index}.npz"


def lung_mask_name(run_id: int) -> str:
    """The run's whole lung mask, kept so maps can be computed later on exactly the lungs the run used."""
    return f"maps/{run_id}/lung_mask.npz"


def _save(name: str, content: bytes) -> str:
    """Write ``name`` replacing any earlier file (a retried task rewrites the same names instead of adding copies)."""
    if default_storage.exists(name):
        default_storage.delete(name)
    return default_storage.save(name, ContentFile(content))


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def pack(slice_maps: SliceMapsLike, lung_mask_2d: np.ndarray) -> dict[str, np.ndarray]:
    """The eight arrays of one slice, keyed by MAP_KINDS, in their storage dtypes."""
    arrays = {"joint": slice_maps.joint}
    arrays.update({f"conv{i + 3}": m for i, m in enumerate(slice_maps.ig)})
    arrays.update({f"cam{i + 3}": m for i, m in enumerate(slice_maps.cams)})
    packed = {k: np.asarray(v, dtype=np.float32).astype(np.float16) for k, v in arrays.items()}
    packed["lung"] = np.asarray(lung_mask_2d, dtype=bool).astype(np.uint8)
    missing = set(MAP_KINDS) - set(packed)
    if missing:
        raise ValueError(f"slice maps lack {sorted(missing)}")
    return packed


def save_slice_maps(run_id: int, index: int, slice_maps: SliceMapsLike, lung_mask_2d: np.ndarray) -> str:
    """Store one slice's maps; returns the storage name for ``SliceResult.maps``."""
    return _save(maps_name(run_id, index), _npz_bytes(**pack(slice_maps, lung_mask_2d)))


def save_lung_mask(run_id: int, lung_mask: np.ndarray) -> str:
    return _save(lung_mask_name(run_id), _npz_bytes(mask=np.asarray(lung_mask, dtype=bool)))


def load_lung_mask(run_id: int) -> np.ndarray | None:
    """The run's lung mask, or None for a run stored without one."""
    name = lung_mask_name(run_id)
    if not default_storage.exists(name):
        return None
    with default_storage.open(name, "rb") as fh, np.load(io.BytesIO(fh.read())) as npz:
        return npz["mask"]


def load_map(name: str, kind: str) -> np.ndarray:
    """One map of a stored slice as float32. KeyError for a kind the file lacks."""
    with default_storage.open(name, "rb") as fh, np.load(io.BytesIO(fh.read())) as npz:
        return npz[kind].astype(np.float32)


def delete_run_maps(run_id: int, names: Sequence[str]) -> None:
    """Remove a run's stored maps (before a retried task writes them again)."""
    for name in [*names, lung_mask_name(run_id)]:
        if name and default_storage.exists(name):
            default_storage.delete(name)


def render_png(array: np.ndarray) -> tuple[bytes, float]:
    """8-bit grayscale PNG of a map scaled by its own maximum, and that raw maximum.

    Negative values (evidence against the class) are shown as 0: the overlay shows where the model looked for
    disease. The raw maximum goes to the client so maps of different slices can still be compared.
    """
    values = np.nan_to_num(np.asarray(array, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(values.max()) if values.size else 0.0
    scaled = np.zeros(values.shape, np.uint8)
    if peak > 0:
        scaled = np.clip(values / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(scaled).save(buffer, format="PNG")
    return buffer.getvalue(), peak

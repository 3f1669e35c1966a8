"""Patient geometry of stored instances: spatial slice order and pixel -> patient (mm) mapping.

Works on the tags ingest keeps on ``Instance`` (ImagePositionPatient, ImageOrientationPatient, PixelSpacing) so
the API needs no pixel data. Instances with missing or malformed geometry fall back to instance-number order and
get no patient coordinates, rather than failing the request.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

Vector = tuple[float, float, float]


class HasGeometry(Protocol):
    pk: int
    instance_number: int | None
    image_position_patient: Sequence[float] | None
    image_orientation_patient: Sequence[float] | None
    pixel_spacing: Sequence[float] | None
    slice_location: float | None


def _floats(values: Sequence[float] | None, length: int) -> tuple[float, ...] | None:
    """``values`` as ``length`` floats, or None when absent or malformed (tags from the wild vary)."""
    if not isinstance(values, (list, tuple)) or len(values) != length:
        return None
    try:
        return tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return None


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b))


def _axes(instance: HasGeometry) -> tuple[Vector, Vector] | None:
    """The row direction (increasing column index) and column direction (increasing row index) cosines."""
    iop = _floats(instance.image_orientation_patient, 6)
    return None if iop is None else (iop[:3], iop[3:])


def slice_normal(instance: HasGeometry) -> Vector | None:
    axes = _axes(instance)
    if axes is None:
        return None
    (ax, ay, az), (bx, by, bz) = axes
    return (ay * bz - az * by, az * bx - ax * bz, ax * by - ay * bx)


def z_mm(instance: HasGeometry) -> float | None:
    """Position along the slice normal (mm): the quantity slices are stacked by; SliceLocation as a fallback."""
    normal = slice_normal(instance)
    position = _floats(instance.image_position_patient, 3)
    if normal is not None and position is not None:
        return _dot(position, normal)
    return instance.slice_location


def spatial_order(instances: Iterable[HasGeometry]) -> list[HasGeometry]:
    """Instances sorted along the slice normal when every one has geometry, else by instance number.

    Mixed geometry is sorted by instance number as a whole: interleaving two keys would scramble the stack.
    """
    items = list(instances)
    positions = {item.pk: z_mm(item) if slice_normal(item) else None for item in items}
    if items and all(positions[item.pk] is not None for item in items):
        return sorted(items, key=lambda i: (positions[i.pk], i.instance_number or 0, i.pk))
    return sorted(items, key=lambda i: (i.instance_number is None, i.instance_number or 0, i.pk))


def pixel_to_patient(instance: HasGeometry, column: float, row: float) -> list[float] | None:
    """Patient coordinates (mm) of the centre of pixel (column, row), per DICOM PS3.3 C.7.6.2.1.1."""
    axes = _axes(instance)
    position = _floats(instance.image_position_patient, 3)
    spacing = _floats(instance.pixel_spacing, 2)  # (between rows, between columns)
    if axes is None or position is None or spacing is None:
        return None
    row_dir, col_dir = axes
    return [round(p + column * spacing[1] * r + row * spacing[0] * c, 3)
            for p, r, c in zip(position, row_dir, col_dir)]


def box_patient_corners(instance: HasGeometry, x0: int, y0: int, x1: int, y1: int) -> list[list[float]]:
    """The four corner pixel centres (x0,y0), (x1,y0), (x1,y1), (x0,y1) in mm; [] when geometry is missing."""
    corners = [pixel_to_patient(instance, x, y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]
    return [] if any(c is None for c in corners) else corners

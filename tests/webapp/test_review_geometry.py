"""The review geometry the viewer and the exports rely on: spatial slice order and pixel-to-patient mapping."""
from __future__ import annotations

import pytest
from review_factories import AXIAL

from webapp.review import geometry


class _Slice:
    def __init__(self, pk, number, ipp, iop=AXIAL, spacing=(0.5, 0.75), slice_location=None):
        self.pk, self.instance_number, self.image_position_patient = pk, number, ipp
        self.image_orientation_patient, self.pixel_spacing, self.slice_location = iop, spacing, slice_location


def test_spatial_order_follows_the_slice_normal_not_instance_numbers():
    # Coronal slices: rows along -z, columns along x, so the normal is y; positions step along y.
    coronal = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]
    slices = [_Slice(pk, pk, [0, y, 0], coronal) for pk, y in ((1, 5.0), (2, -5.0), (3, 0.0))]
    assert [s.pk for s in geometry.spatial_order(slices)] == [2, 3, 1]
    assert geometry.z_mm(slices[0]) == pytest.approx(5.0)  # normal = row x column = (0, 1, 0)


def test_spatial_order_falls_back_to_instance_number_when_any_geometry_is_missing():
    slices = [_Slice(1, 3, [0, 0, 1.0]), _Slice(2, 1, None), _Slice(3, None, [0, 0, 0.0]), _Slice(4, 2, [0, 0, 9.0])]
    assert [s.pk for s in geometry.spatial_order(slices)] == [2, 4, 1, 3]


def test_pixel_to_patient_uses_column_spacing_along_rows_and_row_spacing_down_columns():
    s = _Slice(1, 1, [-100.0, -50.0, 7.5], spacing=[0.5, 0.75])
    assert geometry.pixel_to_patient(s, 4, 10) == [-97.0, -45.0, 7.5]
    assert geometry.box_patient_corners(s, 0, 0, 4, 10) == [[-100.0, -50.0, 7.5], [-97.0, -50.0, 7.5],
                                                             [-97.0, -45.0, 7.5], [-100.0, -45.0, 7.5]]
    assert geometry.box_patient_corners(_Slice(2, 1, None), 0, 0, 1, 1) == []
    assert geometry.pixel_to_patient(_Slice(3, 1, [0, 0, 0], iop=["a"] * 6), 0, 0) is None

"""Shared fixtures for the review, worklist and accounts tests, plus tests of the review geometry they rely on.

Studies are built directly with the ORM (ingest is tested elsewhere). The fixtures live in a test module rather
than a conftest because tests/webapp/conftest.py is shared with other apps; the other modules import them.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from webapp.accounts.roles import ADMIN, ANNOTATOR, CLINICIAN, assign_role
from webapp.analysis.models import AnalysisRun
from webapp.review import geometry
from webapp.review.models import Box
from webapp.analysis.columns import refresh_ai_columns
from webapp.studies.models import Instance, Patient, Series, Study

_serial = itertools.count(1)
AXIAL = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]


@dataclass
class Users:
    clinician: object
    clinician2: object
    annotator: object
    annotator2: object
    admin: object


@pytest.fixture
def users(db) -> Users:
    def make(name: str, role: str):
        user = get_user_model().objects.create_user(name)  # no password: hashing is slow, clients are forced
        assign_role(user, role)
        return user

    return Users(make("clin", CLINICIAN), make("clin2", CLINICIAN), make("anno", ANNOTATOR),
                 make("anno2", ANNOTATOR), make("boss", ADMIN))


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def make_study(*, patient_id: str | None = None, name: str = "DOE^JANE", accession: str = "", date: str = "20240101",
               status: str = Study.Status.AI_DONE, slices: int = 3, rows: int = 64, columns: int = 48) -> Study:
    """A study with one CT series whose instance numbers run opposite to the z order (to test spatial sorting)."""
    n = next(_serial)
    patient, _ = Patient.objects.get_or_create(patient_id=patient_id or f"P{n:05d}", defaults={"name": name})
    study = Study.objects.create(study_instance_uid=f"1.2.826.0.1.{n}", patient=patient, study_date=date,
                                 accession_number=accession or f"ACC{n}", status=status)
    series = Series.objects.create(series_instance_uid=f"{study.study_instance_uid}.1", study=study, modality="CT")
    Instance.objects.bulk_create(
        Instance(sop_instance_uid=f"{series.series_instance_uid}.{i}", sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                 series=series, instance_number=slices - i, image_position_patient=[-100.0, -50.0, 2.5 * i],
                 image_orientation_patient=AXIAL, pixel_spacing=[0.5, 0.75], rows=rows, columns=columns,
                 transfer_syntax_uid="1.2.840.10008.1.2.1", file=f"dicom/{n}/{i}.dcm", size=1, sha256="0" * 64)
        for i in range(slices)
    )
    return study


def make_run(study: Study, label: str = "COVID", probability: float = 0.9, *, infection: float | None = 12.5,
             opacity: float | None = None, outside: bool | None = None,
             status: str = AnalysisRun.Status.SUCCEEDED) -> AnalysisRun:
    run = AnalysisRun.objects.create(study=study, model_name="tiny", status=status, label=label,
                                     probability=probability, uncertainty=round(1 - probability, 6),
                                     infection_percent=infection, opacity_percent=opacity, domain_outside=outside)
    refresh_ai_columns([study.pk])  # what analysis.services does when it writes a result
    return run


def instance_of(study: Study, index: int = 0) -> Instance:
    """The instance at ``index`` along z (the factory stores them in z order)."""
    return Instance.objects.filter(series__study=study).order_by("pk")[index]


def make_ai_box(study: Study, run: AnalysisRun | None = None, **fields) -> Box:
    values = {"sop_instance_uid": instance_of(study).sop_instance_uid, "x0": 2, "y0": 3, "x1": 10, "y1": 12,
              "label": Box.Label.COVID_LESION, "score": 0.8, "provenance": Box.Provenance.AI, **fields}
    return Box.objects.create(study=study, analysis_run=run, **values)


# --------------------------------------------------------------------------- geometry


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

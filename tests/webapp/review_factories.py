"""Factories for the review, worklist and accounts tests: studies, runs and boxes built directly with the ORM
(ingest is tested elsewhere). Their ``users`` fixture is in conftest.py."""
from __future__ import annotations

import itertools

from webapp.analysis.columns import refresh_ai_columns
from webapp.analysis.models import AnalysisRun
from webapp.review.models import Box
from webapp.studies.models import Instance, Patient, Series, Study

_serial = itertools.count(1)
AXIAL = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]


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

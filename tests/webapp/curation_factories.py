"""Factories for the curation, registry and loop tests: people, phantom studies ingested for real, reviews
(their ``people`` fixture is in conftest.py).

Phantom studies go through the real ingest (``webapp.studies.ingest.ingest_file``) so exports read real DICOM
files from storage. Every study gets identifying values (name, id, accession, dates, free text) that the
de-identification tests then look for in the exports.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth import get_user_model

from training.phantom import generate_study, write_dicom_series
from webapp.accounts.roles import ADMIN, ANNOTATOR, CLINICIAN, assign_role
from webapp.analysis.columns import refresh_ai_columns
from webapp.analysis.models import AnalysisRun
from webapp.review.models import AuditEvent, Box, Decision
from webapp.studies.ingest import ingest_file
from webapp.studies.models import Instance, Study

_seed = itertools.count(101)
SLICES, SIZE = 6, 48


@dataclass
class People:
    admin: object
    clinician: object
    annotator: object


def make_people() -> People:
    def make(name: str, role: str):
        user = get_user_model().objects.create_user(name)  # no password: tests authenticate directly
        assign_role(user, role)
        return user

    return People(make("cur_admin", ADMIN), make("cur_clin", CLINICIAN), make("cur_anno", ANNOTATOR))


@dataclass
class Identity:
    """The identifying values written into one phantom's DICOM headers."""

    patient_id: str
    patient_name: str
    accession: str
    dates: tuple[str, ...]


def phantom_files(tmp_path: Path, label: str, seed: int | None = None) -> tuple[list[Path], Identity]:
    """A small phantom series written as DICOM with distinctive identifying values."""
    seed = next(_seed) if seed is None else seed
    study = generate_study(seed, label, n_slices=SLICES, size=SIZE)
    identity = Identity(patient_id=f"MRN{seed:07d}", patient_name=f"Testperson^Alma{seed}",
                        accession=f"ACCX{seed:06d}", dates=(f"1971{seed % 12 + 1:02d}15", f"2021{seed % 12 + 1:02d}03"))
    files = write_dicom_series(
        study, tmp_path / f"phantom{seed}", PatientID=identity.patient_id, PatientName=identity.patient_name,
        AccessionNumber=identity.accession, PatientBirthDate=identity.dates[0], StudyDate=identity.dates[1],
        SeriesDate=identity.dates[1], ContentDate=identity.dates[1], InstitutionName="St Elsewhere Hospital",
        ReferringPhysicianName="Referrer^Rita", StudyDescription=f"chest CT of {identity.patient_name}",
        OperatorsName="Operator^Otto",
    )
    return files, identity


def ingest_phantom(tmp_path: Path, label: str, seed: int | None = None) -> tuple[Study, Identity]:
    files, identity = phantom_files(tmp_path, label, seed)
    results = [ingest_file(path.read_bytes(), path.name) for path in files]
    assert all(r.landed for r in results), [r.reason for r in results if not r.landed]
    return Study.objects.get(study_instance_uid=results[0].study_instance_uid), identity


def slices_of(study: Study) -> list[Instance]:
    """The study's instances in z order (the phantom's positions grow with the instance number)."""
    return list(Instance.objects.filter(series__study=study).order_by("instance_number"))


def fake_run(study: Study, label: str = "COVID", opacity: float | None = None,
             outside: bool | None = None) -> AnalysisRun:
    """A finished AI run on the study's series, for tests that do not run the model."""
    series = study.series.get()
    run = AnalysisRun.objects.create(study=study, series=series, model_name="tiny", status=AnalysisRun.Status.SUCCEEDED,
                                     label=label, probability=0.9, uncertainty=0.1, opacity_percent=opacity,
                                     domain_outside=outside)
    refresh_ai_columns([study.pk])  # what analysis.services does when it writes a result
    return run


def add_box(study: Study, index: int, provenance: str, status: str, user=None, label: str = Box.Label.COVID_LESION,
            x0: int = 5, y0: int = 6, x1: int = 14, y1: int = 17, run: AnalysisRun | None = None) -> Box:
    box = Box.objects.create(study=study, analysis_run=run, sop_instance_uid=slices_of(study)[index].sop_instance_uid,
                             x0=x0, y0=y0, x1=x1, y1=y1, label=label, provenance=provenance, status=status,
                             score=0.7 if provenance != Box.Provenance.HUMAN else None, created_by=user,
                             updated_by=user)
    AuditEvent.objects.create(study=study, actor=user, action="box.create", object_type="box", object_id=str(box.pk),
                              after={"provenance": provenance, "status": status})
    return box


def decide(study: Study, label: str, user, reviewed: bool = True) -> Decision:
    decision, _ = Decision.objects.update_or_create(study=study, defaults={"label": label, "decided_by": user,
                                                                          "reviewed": reviewed})
    AuditEvent.objects.create(study=study, actor=user, action="decision.update", object_type="decision",
                              object_id=str(decision.pk), after={"label": label, "reviewed": reviewed})
    if reviewed:
        Study.objects.filter(pk=study.pk).update(status=Study.Status.REVIEWED)
    return decision


def reviewed_study(tmp_path: Path, people: People, label: str, final: str, ai_label: str,
                   opacity: float | None = None, outside: bool | None = None) -> tuple[Study, Identity]:
    """A phantom with an AI run, boxes of every provenance/status, and the clinician's decision ``final``."""
    study, identity = ingest_phantom(tmp_path, label)
    run = fake_run(study, ai_label, opacity, outside)
    P, S = Box.Provenance, Box.Status
    add_box(study, 1, P.AI, S.PROPOSED, run=run)  # nobody looked: excluded as unreviewed
    d = study.pk % 7  # boxes differ between studies, so a mix-up between studies shows
    add_box(study, 1, P.AI_ACCEPTED, S.ACCEPTED, people.annotator, run=run, x0=20 + d, y0=21, x1=30 + d, y1=33)
    add_box(study, 2, P.AI_EDITED, S.ACCEPTED, people.annotator, run=run, x0=3, y0=4 + d, x1=9, y1=8 + d)
    add_box(study, 3, P.HUMAN, S.ACCEPTED, people.annotator, label=Box.Label.OTHER, x0=10, y0=10, x1=10 + d, y1=12)
    add_box(study, 2, P.AI, S.REJECTED, people.annotator, run=run)
    add_box(study, 4, P.HUMAN, S.DELETED, people.annotator)
    decide(study, final, people.clinician)
    return study, identity

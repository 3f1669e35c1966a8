"""Fixtures of the trust tests: one user per role and a world of objects, one of everything a URL of the app can
point at, around a study that each test module brings (``study_in_review``: ingested, analysed and reviewed its
own way)."""
from __future__ import annotations

from typing import Any

import pytest
from factories import make_user

from webapp.accounts.roles import ADMIN, ANNOTATOR, CLINICIAN
from webapp.curation.models import DatasetVersion, Export
from webapp.dicomnode.models import Delivery, DicomPeer, WebDestination
from webapp.registry.models import ModelVersion, TrainingRun
from webapp.studies.models import Instance


@pytest.fixture
def role_users(db) -> dict[str, Any]:
    """role -> a user holding it."""
    return {role: make_user(f"t-{role}", role) for role in (CLINICIAN, ANNOTATOR, ADMIN)}


@pytest.fixture
def world(role_users, study_in_review) -> tuple[dict[str, Any], dict[str, int], dict[str, str]]:
    """(users, ids, uids): the module's study with its run, box and analysis job, one of every curation and
    registry object, and a DICOM peer, a DICOMweb destination and a delivery of the results."""
    study, run, box, job = study_in_review
    admin = role_users[ADMIN]
    instance = Instance.objects.filter(series__study=study).select_related("series").first()
    dataset = DatasetVersion.objects.create(name="dv", fingerprint="0" * 64, created_by=admin)
    export = Export.objects.create(dataset_version=dataset, format=Export.Format.CSV, created_by=admin)
    model = ModelVersion.objects.create(name="tiny", version="1", bundle_path="/nonexistent", sha256="0" * 64,
                                        classes=["NP", "CAP", "COVID"])
    training = TrainingRun.objects.create(dataset_version=dataset, config={})
    peer = DicomPeer.objects.create(ae_title="PACS", host="pacs.local", port=104, is_destination=True)
    web = WebDestination.objects.create(name="pacs-web", url="http://pacs.local/dicom-web")
    Delivery.objects.create(study=study, run=run, peer=peer, target="PACS@pacs.local:104",
                            status=Delivery.Status.SENT)
    ids = {"study": study.pk, "box": box, "run": run.pk, "job": job.pk, "dataset": dataset.pk,
           "export": export.pk, "model": model.pk, "training": training.pk, "user": role_users[ANNOTATOR].pk,
           "peer": peer.pk, "web": web.pk}
    uids = {"study": study.study_instance_uid, "series": instance.series.series_instance_uid,
            "instance": instance.sop_instance_uid, "frames": "1"}
    return role_users, ids, uids

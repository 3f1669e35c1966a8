"""Dataset versions (selection, freezing, fingerprint), de-identification and the four export writers.

Exports are built in-process here (``build_export``) to test each format closely; ``test_loop.py`` runs them
through the API and a real Celery worker.
"""
from __future__ import annotations

import csv
import io
import json
import zipfile

import highdicom as hd
import jsonschema
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from factories import client_for
from curation_factories import decide, ingest_phantom, reviewed_study, slices_of
from training.datasets import export_studies
from webapp.curation.deid import Deidentifier
from webapp.curation.exporters.sr import STUDY_LABEL_CODES
from webapp.curation.exports import build_export
from webapp.curation.models import DatasetVersion, Export, FrozenRowError
from webapp.curation.services import Criteria, create_dataset_version
from webapp.jobs.models import Job
from webapp.review.models import AuditEvent, Box

# The COCO detection format, as much of it as lungscope writes (and every COCO reader needs).
COCO_SCHEMA = {
 "$schema": "https://json-schema.org/draft/2020-12/schema",
 "title": "COCO object detection annotations (the subset lungscope writes)",
 "type": "object",
 "required": [
  "info",
  "images",
  "annotations",
  "categories"
 ],
 "properties": {
  "info": {
   "type": "object"
  },
  "licenses": {
   "type": "array"
  },
  "images": {
   "type": "array",
   "items": {
    "type": "object",
    "required": [
     "id",
     "file_name",
     "width",
     "height"
    ],
    "properties": {
     "id": {
      "type": "integer",
      "minimum": 1
     },
     "file_name": {
      "type": "string",
      "minLength": 1
     },
     "width": {
      "type": "integer",
      "minimum": 1
     },
     "height": {
      "type": "integer",
      "minimum": 1
     }
    }
   }
  },
  "annotations": {
   "type": "array",
   "items": {
    "type": "object",
    "required": [
     "id",
     "image_id",
     "category_id",
     "bbox",
     "area",
     "iscrowd"
    ],
    "properties": {
     "id": {
      "type": "integer",
      "minimum": 1
     },
     "image_id": {
      "type": "integer",
      "minimum": 1
     },
     "category_id": {
      "type": "integer",
      "minimum": 1
     },
     "bbox": {
      "type": "array",
      "items": {
       "type": "number",
       "minimum": 0
      },
      "minItems": 4,
      "maxItems": 4
     },
     "area": {
      "type": "number",
      "exclusiveMinimum": 0
     },
     "iscrowd": {
      "enum": [
       0,
       1
      ]
     }
    }
   }
  },
  "categories": {
   "type": "array",
   "minItems": 1,
   "items": {
    "type": "object",
    "required": [
     "id",
     "name"
    ],
    "properties": {
     "id": {
      "type": "integer",
      "minimum": 1
     },
     "name": {
      "type": "string"
     }
    }
   }
  }
 }
}


@pytest.fixture
def corpus(people, tmp_path, storage_dir):
    """Three reviewed phantoms (one where the clinician overrules the AI) and one still unreviewed."""
    covid, covid_id = reviewed_study(tmp_path, people, "COVID", final="covid", ai_label="COVID", opacity=22.5,
                                     outside=False)
    cap, cap_id = reviewed_study(tmp_path, people, "CAP", final="cap", ai_label="COVID", opacity=7.25,
                                 outside=True)  # AI was wrong, and said it could not judge
    normal, normal_id = reviewed_study(tmp_path, people, "NP", final="np", ai_label="NP")  # a /1 run: no figures
    pending, _ = ingest_phantom(tmp_path, "COVID")
    decide(pending, "covid", people.clinician, reviewed=False)
    return {"studies": [covid, cap, normal], "pending": pending, "identities": [covid_id, cap_id, normal_id]}


def test_dataset_version_freezes_clinician_labels_and_reviewed_boxes(people, corpus):
    response = client_for(people.admin).post("/api/dataset-versions/", {"name": "v1"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    items = {i["study"]: i for i in body["items"]}
    assert set(items) == {s.pk for s in corpus["studies"]}  # the unreviewed study is out by default
    cap = corpus["studies"][1]
    assert items[cap.pk]["final_label"] == "cap" and items[cap.pk]["ai_label"] == "COVID"
    assert (items[cap.pk]["ai_opacity_percent"], items[cap.pk]["ai_outside"]) == (7.25, True)
    assert (items[corpus["studies"][2].pk]["ai_opacity_percent"], items[corpus["studies"][2].pk]["ai_outside"]) == \
        (None, None)
    assert body["summary"]["per_class"] == {"cap": 1, "covid": 1, "np": 1}
    event = AuditEvent.objects.get(action="dataset_version.create", object_id=str(body["id"]))
    assert event.actor == people.admin and event.before is None
    assert event.after["fingerprint"] == body["fingerprint"] and event.after["studies"] == 3
    assert body["summary"]["boxes_per_provenance"] == {"ai_accepted": 3, "ai_edited": 3, "human": 3}
    assert body["summary"]["boxes_excluded"] == {"deleted": 3, "outside_series": 0, "rejected": 3, "unreviewed": 3}
    assert body["summary"]["reviewers"] == ["cur_clin"] and body["summary"]["ai_agreement"] == 2
    assert body["created_by"] == "cur_admin" and len(body["fingerprint"]) == 64
    assert {b["provenance"] for b in items[cap.pk]["boxes"]} == {"ai_accepted", "ai_edited", "human"}

    version = DatasetVersion.objects.get(pk=body["id"])
    before = client_for(people.admin).get(f"/api/dataset-versions/{version.pk}/").json()
    # Later edits to a study change nothing in the frozen version.
    Box.objects.filter(study=cap).update(status=Box.Status.DELETED)
    decide(cap, "covid", people.clinician)
    after = client_for(people.admin).get(f"/api/dataset-versions/{version.pk}/").json()
    assert after == before
    with pytest.raises(FrozenRowError):
        version.save()
    # The same selection now has other content, hence another fingerprint; unchanged content keeps it.
    again = create_dataset_version(Criteria(), name="v2")
    assert again.fingerprint != version.fingerprint
    assert create_dataset_version(Criteria(), name="v3").fingerprint == again.fingerprint


def test_selection_criteria_and_bad_input(people, corpus):
    admin = client_for(people.admin)
    with_pending = admin.post("/api/dataset-versions/", {"name": "all", "reviewed_only": False}, format="json")
    assert with_pending.json()["summary"]["studies"] == 4
    only_cap = admin.post("/api/dataset-versions/", {"name": "cap", "labels": ["cap"]}, format="json").json()
    assert only_cap["summary"]["per_class"] == {"cap": 1} and only_cap["criteria"]["labels"] == ["cap"]
    by_reviewer = admin.post("/api/dataset-versions/", {"name": "r", "reviewers": ["cur_clin"]}, format="json")
    assert by_reviewer.json()["summary"]["studies"] == 3
    nothing = admin.post("/api/dataset-versions/", {"name": "none", "study_date_from": "20990101"}, format="json")
    assert nothing.status_code == 400 and "no study matches" in nothing.json()["criteria"]
    bad = admin.post("/api/dataset-versions/", {"name": "bad", "study_date_from": "2021-01-01",
                                                "labels": ["flu"]}, format="json")
    assert bad.status_code == 400 and set(bad.json()) == {"study_date_from", "labels"}
    reversed_range = admin.post("/api/dataset-versions/", {"name": "x", "study_date_from": "20210102",
                                                           "study_date_to": "20210101"}, format="json")
    assert reversed_range.status_code == 400 and "study_date_to" in reversed_range.json()


def test_only_admins_curate_and_export(people, corpus):
    version = create_dataset_version(Criteria(), name="v")
    export = Export.objects.create(dataset_version=version, format="csv",
                                   job=Job.objects.create(kind=Job.Kind.EXPORT))
    for user in (people.clinician, people.annotator):
        client = client_for(user)
        assert client.get("/api/dataset-versions/").status_code == 403
        assert client.post("/api/dataset-versions/", {"name": "x"}, format="json").status_code == 403
        assert client.post("/api/exports/", {"dataset_version": version.pk, "format": "csv"},
                           format="json").status_code == 403
        assert client.get(f"/api/exports/{export.pk}/download/").status_code == 403
        client.force_login(user)
        assert client.get("/curation/").status_code == 403
    assert client_for(people.admin).get(f"/api/exports/{export.pk}/download/").status_code == 409  # not built yet
    bad = client_for(people.admin).post("/api/exports/", {"dataset_version": version.pk, "format": "xls"},
                                        format="json")
    assert bad.status_code == 400 and "format" in bad.json()


def test_deidentifier_applies_the_basic_profile_and_remaps_uids_consistently():
    ds = Dataset()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "Doe^Jane", "MRN123", "19700101"
    ds.StudyDate, ds.AcquisitionDateTime, ds.StudyTime = "20200202", "20200202101010", "101010"
    ds.AccessionNumber, ds.InstitutionName, ds.StudyDescription = "ACC1", "General", "Jane's chest"
    ds.OperatorsName, ds.OtherPatientIDs = "Op^Otto", "OLD-MRN"
    ds.SOPClassUID, ds.SOPInstanceUID, ds.StudyInstanceUID = "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5", "1.2.3.4"
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.5"
    ref.PersonName = "Someone^Else"
    ds.ReferencedImageSequence = Sequence([ref])
    ds.add_new(0x00091010, "LO", "private secret")
    deid = Deidentifier()
    deid.dataset(ds)
    # Values apart from the UIDs, which are checked whole: a remapped UID is 2.25 and a random 39-digit number, in
    # which "1970" or "2020" turn up by chance in about one run in a hundred.
    values: list[str] = []
    uids: list[str] = []

    def collect(_: Dataset, element) -> None:
        if element.VR != "SQ":
            (uids if element.VR == "UI" else values).append(str(element.value))
    ds.walk(collect)
    text = "\n".join(values)
    for secret in ("Doe", "Jane", "MRN123", "1970", "2020", "ACC1", "General", "Otto", "OLD-MRN", "Someone",
                   "private secret", "1.2.3.4"):
        assert secret not in text, secret
    assert all("1.2.3.4" not in uid for uid in uids), uids
    assert ds.PatientID == ds.PatientName == deid.patient("MRN123") and ds.PatientIdentityRemoved == "YES"
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"  # class UIDs stay
    assert ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID == ds.SOPInstanceUID == deid.uid("1.2.3.4.5")
    assert Deidentifier().uid("1.2.3.4.5") != deid.uid("1.2.3.4.5")  # another export, other UIDs
    assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100"


def _export(version: DatasetVersion, fmt: str, deidentify: bool = True) -> zipfile.ZipFile:
    export = Export.objects.create(dataset_version=version, format=fmt, deidentify=deidentify)
    build_export(export, progress=lambda fraction, message: None)
    export.refresh_from_db()
    assert export.size > 0 and export.file.name.endswith(".zip")
    return zipfile.ZipFile(export.file.path)


def assert_no_identity(archive: zipfile.ZipFile, identities) -> int:
    """Scan every element of every DICOM member and every text member; returns the number of DICOM files."""
    secrets = {v for i in identities for v in (i.patient_id, i.patient_name, i.accession, *i.dates)}
    secrets |= {"Testperson", "St Elsewhere", "Referrer", "Operator"}
    dicoms = 0
    for name in archive.namelist():
        data = archive.read(name)
        if name.endswith(".dcm"):
            dicoms += 1
            ds = pydicom.dcmread(io.BytesIO(data))
            values = []
            ds.walk(lambda _ds, elem, values=values: values.append(str(elem.value)) if elem.VR not in ("OB", "OW", "SQ") else None)
            values += [str(e.value) for e in ds.file_meta]
            found = [s for s in secrets for v in values if s in v]
            assert not found, (name, found)
        elif name.endswith((".csv", ".json", ".txt")):
            text = data.decode()
            assert not [s for s in secrets if s in text], name
    return dicoms


def test_training_ready_export_is_what_training_reads(corpus, tmp_path):
    version = create_dataset_version(Criteria(), name="v")
    archive = _export(version, "training_ready")
    assert_no_identity(archive, corpus["identities"])
    out = tmp_path / "unzipped"
    archive.extractall(out)
    records = {r.study_id: r for r in export_studies(out)}
    assert sorted(r.label for r in records.values()) == ["CAP", "COVID", "NP"]
    for item in version.items.all():
        record = next(r for r in records.values() if r.label == item.final_label.upper())
        assert record.array.dtype == np.int16 and record.array.shape == (6, 48, 48)
        assert record.array.min() < -500  # HU, not display values
        expected = sorted((item.sop_instance_uids.index(b["sop_instance_uid"]), b["x0"], b["y0"], b["x1"], b["y1"],
                           b["label"]) for b in item.boxes)
        got = sorted((int(b["slice_index"]), int(b["x0"]), int(b["y0"]), int(b["x1"]), int(b["y1"]), b["label"])
                     for b in record.boxes)
        assert got == expected
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["dataset_version"]["fingerprint"] == version.fingerprint and manifest["deidentified"]


def test_coco_export_matches_schema_and_database(corpus):
    version = create_dataset_version(Criteria(), name="v")
    archive = _export(version, "coco")
    assert_no_identity(archive, corpus["identities"])
    doc = json.loads(archive.read("annotations.json"))
    jsonschema.validate(doc, COCO_SCHEMA)
    images = {i["id"]: i for i in doc["images"]}
    got = sorted((images[a["image_id"]]["slice_index"], *a["bbox"], a["provenance"]) for a in doc["annotations"])
    boxes = Box.objects.filter(study__in=corpus["studies"], status=Box.Status.ACCEPTED)
    order = {s.sop_instance_uid: n for study in corpus["studies"] for n, s in enumerate(slices_of(study))}
    expected = sorted((order[b.sop_instance_uid], b.x0, b.y0, b.x1 - b.x0 + 1, b.y1 - b.y0 + 1, b.provenance)
                      for b in boxes)
    assert got == expected and len(got) == 9
    for image in doc["images"]:
        assert image["file_name"] in archive.namelist()


def test_sr_export_references_the_exported_images_with_the_box_coordinates(corpus):
    version = create_dataset_version(Criteria(), name="v")
    archive = _export(version, "sr")
    assert assert_no_identity(archive, corpus["identities"]) == 3 * 7  # 6 images + 1 report per study
    images = {}
    for name in archive.namelist():
        if "/images/" in name:
            ds = pydicom.dcmread(io.BytesIO(archive.read(name)), stop_before_pixels=True)
            images[ds.SOPInstanceUID] = ds
    reports = [n for n in archive.namelist() if n.endswith("sr.dcm")]
    labels = set()
    for name in reports:
        sr = hd.sr.Comprehensive3DSR.from_dataset(pydicom.dcmread(io.BytesIO(archive.read(name))))
        study_images = {uid: ds for uid, ds in images.items() if ds.StudyInstanceUID == sr.StudyInstanceUID}
        assert len(study_images) == 6 and sr.PatientID == next(iter(study_images.values())).PatientID
        (study_group,) = sr.content.get_image_measurement_groups()
        (evaluation,) = study_group.get_qualitative_evaluations()
        final = next(k for k, code in STUDY_LABEL_CODES.items() if code.value == evaluation.value.value)
        item = version.items.get(final_label=final)
        labels.add(final)
        groups = sr.content.get_planar_roi_measurement_groups()
        assert len(groups) == 3
        order = {ds.SOPInstanceUID: int(ds.InstanceNumber) - 1 for ds in study_images.values()}
        got = []
        for group in groups:
            region = group.roi
            uid = region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID  # SELECTED FROM
            assert uid in study_images  # references an image that exists in the export
            points = region.value
            x0, y0 = points[:, 0].min(), points[:, 1].min()
            x1, y1 = points[:, 0].max() - 1, points[:, 1].max() - 1
            got.append((order[uid], int(x0), int(y0), int(x1), int(y1)))
        expected = sorted((item.sop_instance_uids.index(b["sop_instance_uid"]), b["x0"], b["y0"], b["x1"], b["y1"])
                          for b in item.boxes)
        assert sorted(got) == expected
    assert labels == {"covid", "cap", "np"}


def test_csv_export_identified_and_deidentified(corpus):
    version = create_dataset_version(Criteria(), name="v")
    plain = list(csv.DictReader(io.StringIO(_export(version, "csv", deidentify=False).read("labels.csv").decode())))
    assert {r["patient_id"] for r in plain} == {i.patient_id for i in corpus["identities"]}
    assert {(r["label"], r["ai_label"], r["agrees_with_ai"], r["ai_opacity_percent"], r["ai_outside"])
            for r in plain} == {("covid", "COVID", "true", "22.5", "false"), ("cap", "COVID", "false", "7.25", "true"),
                                ("np", "NP", "true", "", "")}
    archive = _export(version, "csv")
    assert_no_identity(archive, corpus["identities"])
    rows = list(csv.DictReader(io.StringIO(archive.read("labels.csv").decode())))
    assert all(r["patient_id"].startswith("ANON-") and r["study_date"] == "" for r in rows)

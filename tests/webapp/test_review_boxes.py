"""Boxes: create/edit/accept/reject/delete with provenance transitions, validation, roles, versions and audit."""
from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from factories import client_for
from review_factories import instance_of, make_ai_box, make_run, make_study
from webapp.review.models import AuditEvent, Box

pytestmark = pytest.mark.django_db


def new_box(study, index: int = 1, **fields) -> dict:
    return {"sop_instance_uid": instance_of(study, index).sop_instance_uid, "x0": 4, "y0": 10, "x1": 20, "y1": 30,
            "label": "covid_lesion", **fields}


def test_annotator_draws_a_human_box_stored_with_patient_coordinates_and_audited(users):
    study = make_study(rows=64, columns=48)
    response = client_for(users.annotator).post(f"/api/studies/{study.pk}/boxes/", new_box(study), format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert response["ETag"] == '"1"'
    assert {k: body[k] for k in ("provenance", "status", "version", "created_by", "study")} == {
        "provenance": "human", "status": "accepted", "version": 1, "created_by": "anno", "study": study.pk}
    box = Box.objects.get(pk=body["id"])
    assert (box.x0, box.y0, box.x1, box.y1, box.label) == (4, 10, 20, 30, "covid_lesion")
    # Slice 1 sits at z = 2.5 mm; columns step 0.75 mm along x, rows 0.5 mm along y from (-100, -50).
    assert box.patient_coords == [[-97.0, -45.0, 2.5], [-85.0, -45.0, 2.5], [-85.0, -35.0, 2.5], [-97.0, -35.0, 2.5]]
    event = AuditEvent.objects.get(action="box.create")
    assert (event.actor, event.study_id, event.object_id, event.before) == (
        users.annotator, study.pk, str(box.pk), None)
    assert event.after["x1"] == 20 and event.after["provenance"] == "human"


@pytest.mark.parametrize("change, field", [
    ({"x1": 48}, "x1"),  # columns = 48: the last valid index is 47
    ({"y1": 64}, "y1"),
    ({"x0": 21}, "x0"),  # x0 > x1
    ({"y0": -1}, "y0"),
    ({"label": "tumour"}, "label"),
    ({"sop_instance_uid": "9.9.9"}, "sop_instance_uid"),
    ({"x1": "wide"}, "x1"),
])
def test_invalid_boxes_are_400_with_the_reason(users, change, field):
    study = make_study(rows=64, columns=48)
    response = client_for(users.annotator).post(f"/api/studies/{study.pk}/boxes/", new_box(study, **change),
                                                format="json")
    assert response.status_code == 400 and field in response.json(), response.content
    assert not Box.objects.exists()


def test_the_database_refuses_inverted_boxes():
    with pytest.raises(IntegrityError, match="box_corners_ordered"), transaction.atomic():
        make_ai_box(make_study(), x0=11, x1=10)


def test_a_box_must_reference_an_instance_of_its_own_study(users):
    study, other = make_study(), make_study()
    response = client_for(users.annotator).post(f"/api/studies/{study.pk}/boxes/", new_box(other), format="json")
    assert response.status_code == 400 and "not part of study" in response.json()["sop_instance_uid"][0]
    assert client_for(users.annotator).post("/api/studies/999999/boxes/", new_box(study)).status_code == 404


def test_editing_an_ai_box_makes_it_ai_edited_and_records_before_and_after(users):
    study = make_study()
    box = make_ai_box(study, make_run(study))
    response = client_for(users.annotator).patch(f"/api/boxes/{box.pk}/", {"x1": 30, "label": "other", "version": 1},
                                                 format="json")
    assert response.status_code == 200, response.content
    assert response["ETag"] == '"2"'
    box.refresh_from_db()
    assert (box.x1, box.label, box.provenance, box.status, box.version, box.updated_by) == (
        30, "other", "ai_edited", "accepted", 2, users.annotator)
    assert box.patient_coords[1] == [-77.5, -48.5, 0.0]
    event = AuditEvent.objects.get(action="box.update")
    assert (event.before["x1"], event.before["provenance"], event.before["version"]) == (10, "ai", 1)
    assert (event.after["x1"], event.after["provenance"], event.after["version"]) == (30, "ai_edited", 2)


def test_patch_that_changes_nothing_writes_nothing(users):
    box = make_ai_box(make_study())
    response = client_for(users.annotator).patch(f"/api/boxes/{box.pk}/", {"x1": 10, "version": 1}, format="json")
    assert response.status_code == 200 and response.json()["provenance"] == "ai"
    assert not AuditEvent.objects.exists()


def test_accept_reject_and_soft_delete(users):
    study = make_study()
    ai, other, human = make_ai_box(study), make_ai_box(study), make_ai_box(study, provenance="human")
    client = client_for(users.annotator)

    accepted = client.post(f"/api/boxes/{ai.pk}/accept/", {"version": 1}, format="json").json()
    assert (accepted["provenance"], accepted["status"], accepted["version"]) == ("ai_accepted", "accepted", 2)
    rejected = client.post(f"/api/boxes/{other.pk}/reject/", {"version": 1}, format="json").json()
    assert (rejected["provenance"], rejected["status"]) == ("ai", "rejected")
    assert client.post(f"/api/boxes/{human.pk}/accept/", {"version": 1}, format="json").json()["provenance"] == "human"

    response = client.delete(f"/api/boxes/{other.pk}/?version=2")
    assert response.status_code == 204 and response["ETag"] == '"3"'
    assert Box.objects.get(pk=other.pk).status == "deleted"  # soft: the row stays
    listed = client.get(f"/api/studies/{study.pk}/boxes/").json()
    assert {b["id"] for b in listed["results"]} == {ai.pk, human.pk}
    assert [b["id"] for b in client.get(f"/api/studies/{study.pk}/boxes/?status=deleted").json()["results"]] == [
        other.pk]
    assert client.post(f"/api/boxes/{other.pk}/accept/", {"version": 3}, format="json").status_code == 400
    assert client.patch(f"/api/boxes/{other.pk}/", {"x0": 3, "version": 3}, format="json").status_code == 400
    actions = sorted(AuditEvent.objects.values_list("action", flat=True))
    assert actions == ["box.accept", "box.accept", "box.delete", "box.reject"]


def test_clinicians_read_boxes_but_cannot_edit_them(users):
    study = make_study()
    box = make_ai_box(study)
    clinician = client_for(users.clinician)
    assert clinician.get(f"/api/studies/{study.pk}/boxes/").json()["count"] == 1
    assert clinician.get(f"/api/boxes/{box.pk}/").status_code == 200
    for response in (clinician.post(f"/api/studies/{study.pk}/boxes/", new_box(study), format="json"),
                     clinician.patch(f"/api/boxes/{box.pk}/", {"x1": 20, "version": 1}, format="json"),
                     clinician.post(f"/api/boxes/{box.pk}/accept/", {"version": 1}, format="json"),
                     clinician.delete(f"/api/boxes/{box.pk}/?version=1")):
        assert response.status_code == 403 and "annotators" in response.json()["detail"]
    assert client_for(users.admin).post(f"/api/boxes/{box.pk}/accept/", {"version": 1}).status_code == 200


def test_stale_box_save_is_409_with_the_current_box(users):
    box = make_ai_box(make_study())
    first, second = client_for(users.annotator), client_for(users.annotator2)
    assert first.patch(f"/api/boxes/{box.pk}/", {"x1": 15, "version": 1}, format="json").status_code == 200
    response = second.patch(f"/api/boxes/{box.pk}/", {"x1": 25, "version": 1}, format="json")
    assert response.status_code == 409
    body = response.json()
    assert body["current"]["x1"] == 15 and body["current"]["version"] == 2 and body["current"]["updated_by"] == "anno"
    assert "version 1" in body["detail"] and response["ETag"] == '"2"'
    assert second.post(f"/api/boxes/{box.pk}/reject/", {"version": 1}, format="json").status_code == 409
    assert second.delete(f"/api/boxes/{box.pk}/?version=1").status_code == 409
    assert Box.objects.get(pk=box.pk).x1 == 15
    assert AuditEvent.objects.count() == 1


def test_version_from_if_match_header_and_its_absence(users):
    box = make_ai_box(make_study())
    client = client_for(users.annotator)
    response = client.patch(f"/api/boxes/{box.pk}/", {"y1": 20}, format="json", headers={"If-Match": '"1"'})
    assert response.status_code == 200 and response["ETag"] == '"2"'
    assert client.patch(f"/api/boxes/{box.pk}/", {"y1": 21}, format="json", headers={"If-Match": '"1"'}).status_code \
        == 409
    missing = client.patch(f"/api/boxes/{box.pk}/", {"y1": 22}, format="json")
    assert missing.status_code == 428 and "version" in missing.json()["detail"]
    assert client.delete(f"/api/boxes/{box.pk}/").status_code == 428
    disagree = client.patch(f"/api/boxes/{box.pk}/", {"y1": 22, "version": 2}, format="json",
                            headers={"If-Match": '"1"'})
    assert disagree.status_code == 400 and "disagree" in disagree.json()["version"][0]
    assert client.patch(f"/api/boxes/{box.pk}/", {"y1": 22, "version": "two"}, format="json").status_code == 400


@pytest.mark.django_db
def test_untouched_ai_proposals_of_an_earlier_run_are_hidden_after_a_reanalysis(users):
    study = make_study()
    old, new = make_run(study), make_run(study)
    kept_old = make_ai_box(study, old, status=Box.Status.ACCEPTED, provenance=Box.Provenance.AI_ACCEPTED)
    make_ai_box(study, old)  # an untouched proposal of the superseded run
    fresh = make_ai_box(study, new)
    client = client_for(users.clinician)
    ids = {b["id"] for b in client.get(f"/api/studies/{study.pk}/boxes/").json()["results"]}
    assert ids == {kept_old.pk, fresh.pk}
    assert len(client.get(f"/api/studies/{study.pk}/boxes/?all_runs=true").json()["results"]) == 3

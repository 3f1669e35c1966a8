"""Decisions (confirm/correct, roles, versions), the audit log and its append-only guards, and real-thread races."""
from __future__ import annotations

import threading

import pytest
from django.contrib.admin.sites import site
from django.db import DatabaseError, connection, transaction

from factories import client_for
from review_factories import make_ai_box, make_run, make_study
from webapp.review.models import AuditEvent, Box, Decision
from webapp.studies.models import Study


def url(study) -> str:
    return f"/api/studies/{study.pk}/decision/"


@pytest.mark.django_db
def test_clinician_confirms_then_corrects_the_ai_label(users):
    study = make_study(status=Study.Status.AI_DONE)
    make_run(study, "COVID")
    client = client_for(users.clinician)
    assert client.get(url(study)).json() == {"study": study.pk, "label": None, "comment": "", "reviewed": False,
                                             "version": 0, "decided_by": None, "updated_at": None}

    confirmed = client.put(url(study), {"label": "covid", "comment": "typical GGO", "version": 0}, format="json")
    assert confirmed.status_code == 201, confirmed.content
    assert confirmed.json()["version"] == 1 and confirmed["ETag"] == '"1"'
    study.refresh_from_db()
    assert study.status == Study.Status.IN_REVIEW

    corrected = client_for(users.clinician2).put(url(study), {"label": "cap", "version": 1}, format="json")
    assert corrected.status_code == 200, corrected.content
    decision = Decision.objects.get(study=study)
    assert (decision.label, decision.comment, decision.version, decision.decided_by) == ("cap", "", 2, users.clinician2)
    [update, create] = AuditEvent.objects.filter(study=study)  # newest first
    assert (create.action, create.before, create.after["label"]) == ("decision.create", None, "covid")
    assert (update.action, update.actor, update.before["label"], update.after["label"]) == (
        "decision.update", users.clinician2, "covid", "cap")
    assert (update.before["version"], update.after["version"]) == (1, 2)
    assert client.get(f"/api/studies/{study.pk}/").json()["decision"]["label"] == "cap"


@pytest.mark.django_db
def test_changing_a_reviewed_decision_reopens_the_review(users):
    study = make_study(status=Study.Status.REVIEWED)
    Decision.objects.create(study=study, label="np", reviewed=True, version=3)
    client = client_for(users.clinician)
    unchanged = client.put(url(study), {"label": "np", "version": 3}, format="json")
    assert unchanged.status_code == 200 and unchanged.json()["reviewed"] is True and not AuditEvent.objects.exists()
    changed = client.put(url(study), {"label": "indeterminate", "version": 3}, format="json").json()
    assert (changed["reviewed"], changed["version"]) == (False, 4)
    study.refresh_from_db()
    assert study.status == Study.Status.IN_REVIEW


@pytest.mark.django_db
def test_annotators_cannot_change_the_diagnosis(users):
    study = make_study()
    response = client_for(users.annotator).put(url(study), {"label": "covid", "version": 0}, format="json")
    assert response.status_code == 403 and "clinicians" in response.json()["detail"]
    assert client_for(users.annotator).get(url(study)).status_code == 200
    assert not Decision.objects.exists()


@pytest.mark.django_db
def test_bad_decisions_are_400(users):
    study = make_study()
    client = client_for(users.clinician)
    assert "label" in client.put(url(study), {"label": "flu"}, format="json").json()
    assert client.put(url(study), {"comment": "no label"}, format="json").status_code == 400
    assert client.put("/api/studies/999999/decision/", {"label": "np"}, format="json").status_code == 404


@pytest.mark.django_db
def test_stale_decision_is_409_for_updates_and_for_a_second_creation(users):
    study = make_study()
    first, second = client_for(users.clinician), client_for(users.clinician2)
    assert first.put(url(study), {"label": "covid", "version": 0}, format="json").status_code == 201
    late_create = second.put(url(study), {"label": "np", "version": 0}, format="json")
    assert late_create.status_code == 409 and late_create.json()["current"]["label"] == "covid"
    assert first.put(url(study), {"label": "cap", "version": 1}, format="json").status_code == 200
    stale = second.put(url(study), {"label": "np"}, format="json", headers={"If-Match": '"1"'})
    assert stale.status_code == 409 and stale.json()["current"] == {**stale.json()["current"], "label": "cap",
                                                                     "version": 2, "decided_by": "clin"}
    assert second.put(url(study), {"label": "np"}, format="json").status_code == 428
    assert Decision.objects.get(study=study).label == "cap"


@pytest.mark.django_db
def test_study_audit_trail_and_the_admin_audit_log(users):
    study, other = make_study(), make_study()
    client_for(users.clinician).put(url(study), {"label": "covid"}, format="json")
    client_for(users.clinician).put(url(other), {"label": "np"}, format="json")
    client_for(users.annotator).post(f"/api/boxes/{make_ai_box(study).pk}/reject/", {"version": 1}, format="json")

    trail = client_for(users.annotator).get(f"/api/studies/{study.pk}/audit/").json()["results"]
    assert [e["action"] for e in trail] == ["box.reject", "decision.create"]
    assert trail[1]["actor"] == "clin" and trail[1]["after"]["label"] == "covid"

    admin = client_for(users.admin)
    assert admin.get("/api/audit/").json()["count"] == 3
    assert [e["study"] for e in admin.get("/api/audit/?action=decision.create&actor=clin").json()["results"]] == [
        other.pk, study.pk]
    assert admin.get(f"/api/audit/?study={other.pk}").json()["count"] == 1
    assert admin.get("/api/audit/?created_after=2999-01-01T00:00:00Z").json()["count"] == 0
    assert admin.get("/api/audit/?created_after=yesterday").status_code == 400
    assert client_for(users.clinician).get("/api/audit/").status_code == 403


@pytest.mark.django_db
def test_audit_events_are_append_only_in_the_database_and_read_only_in_the_admin(users, rf, admin_client):
    study = make_study()
    client_for(users.clinician).put(url(study), {"label": "covid"}, format="json")
    event = AuditEvent.objects.get()
    for tamper in (lambda: AuditEvent.objects.filter(pk=event.pk).update(action="decision.forged"),
                   lambda: AuditEvent.objects.filter(pk=event.pk).delete()):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            tamper()
    Study.objects.filter(pk=study.pk).delete()  # ON DELETE SET NULL is the one update the trigger lets through
    event.refresh_from_db()
    assert event.study_id is None and event.action == "decision.create"

    request = rf.get("/admin/")
    request.user = users.admin
    model_admin = site._registry[AuditEvent]
    assert not (model_admin.has_add_permission(request) or model_admin.has_change_permission(request, event)
                or model_admin.has_delete_permission(request, event))
    assert admin_client.get("/admin/review/auditevent/").status_code == 200  # the changelist renders
    assert admin_client.get(f"/admin/review/auditevent/{event.pk}/change/").status_code == 200  # view only


def race(*calls):
    """Run the calls at the same instant in threads (each thread has its own DB connection); their responses."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i, call):
        try:
            barrier.wait()
            results[i] = call()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("rounds", [5])
def test_concurrent_saves_from_real_threads_let_exactly_one_win(users, rounds):
    study = make_study()
    box = make_ai_box(study)
    Decision.objects.create(study=study, label="covid")
    annotators = client_for(users.annotator), client_for(users.annotator2)
    clinicians = client_for(users.clinician), client_for(users.clinician2)
    for version in range(1, rounds + 1):
        box_codes = sorted(r.status_code for r in race(
            *(lambda c=c, x=x, version=version: c.patch(f"/api/boxes/{box.pk}/", {"x1": x + version,
                                                                                  "version": version},
                                       format="json") for c, x in zip(annotators, (20, 40)))))
        decision_codes = sorted(r.status_code for r in race(
            *(lambda c=c, label=label, version=version: c.put(url(study), {"label": label, "comment": str(version),
                                                                           "version": version}, format="json")
              for c, label in zip(clinicians, ("cap", "np")))))
        assert box_codes == decision_codes == [200, 409], (version, box_codes, decision_codes)
    assert Box.objects.get(pk=box.pk).version == Decision.objects.get(study=study).version == rounds + 1
    assert AuditEvent.objects.filter(action="box.update").count() == rounds
    assert AuditEvent.objects.filter(action="decision.update").count() == rounds

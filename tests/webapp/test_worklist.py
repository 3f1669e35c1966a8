"""The worklist API: rows, masking, filters, search, ordering, study detail, mark-reviewed and the query count."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from factories import client_for
from review_factories import make_run, make_study
from webapp.analysis.models import AnalysisRun
from webapp.review.models import Decision
from webapp.review.serializers import MASK
from webapp.analysis.columns import refresh_ai_columns
from webapp.studies.models import Patient, Study

pytestmark = pytest.mark.django_db


def rows(client, query: str = "") -> list[dict]:
    response = client.get(f"/api/studies/{query}")
    assert response.status_code == 200, response.content
    return response.json()["results"]


def test_row_shows_latest_succeeded_run_decision_and_reviewer(users):
    study = make_study(patient_id="PAT-1", name="DOE^JANE", accession="A-77", date="20240315")
    make_run(study, "CAP", 0.6)
    make_run(study, "COVID", 0.93, infection=21.0)
    make_run(study, "NP", 0.99, status=AnalysisRun.Status.FAILED)  # newest, but failed: not shown
    Decision.objects.create(study=study, label="covid", decided_by=users.clinician)

    [row] = rows(client_for(users.clinician))
    assert row == {**row, "id": study.pk, "patient_id": "PAT-1", "patient_name": "DOE^JANE", "study_date": "20240315",
                   "accession_number": "A-77", "status": "ai_done", "ai_label": "COVID", "ai_probability": 0.93,
                   "ai_uncertainty": pytest.approx(0.07), "infection_percent": 21.0, "reviewer": "clin",
                   "decision_label": "covid"}
    assert set(row) == {"id", "study_instance_uid", "patient_id", "patient_name", "study_date", "accession_number",
                        "study_description", "status", "ai_label", "ai_probability", "ai_uncertainty",
                        "infection_percent", "opacity_percent", "ai_outside", "reviewer", "decision_label",
                        "updated_at"}


def test_study_without_run_or_decision_has_null_ai_and_review_columns(users):
    make_study()
    [row] = rows(client_for(users.clinician))
    assert (row["ai_label"], row["ai_uncertainty"], row["reviewer"], row["decision_label"]) == (None,) * 4


def test_annotators_see_masked_identity_and_cannot_search_by_it(users):
    make_study(patient_id="SECRET-ID", name="SMITH^JOHN", accession="ACC-9")
    annotator = client_for(users.annotator)
    [row] = rows(annotator)
    assert (row["patient_id"], row["patient_name"]) == (MASK, MASK)
    assert rows(annotator, "?search=SMITH") == [] and rows(annotator, "?search=SECRET") == []
    assert len(rows(annotator, "?search=ACC-9")) == 1
    detail = annotator.get(f"/api/studies/{row['id']}/").json()
    assert (detail["patient_id"], detail["patient_name"]) == (MASK, MASK)
    [admin_row] = rows(client_for(users.admin), "?search=smith")
    assert admin_row["patient_name"] == "SMITH^JOHN"


def test_filters_by_status_ai_label_and_reviewer(users):
    covid = make_study(status=Study.Status.IN_REVIEW)
    make_run(covid, "COVID")
    cap = make_study(status=Study.Status.AI_DONE)
    make_run(cap, "CAP")
    Decision.objects.create(study=cap, label="cap", decided_by=users.clinician2)
    client = client_for(users.clinician)
    ids = lambda q: {r["id"] for r in rows(client, q)}  # noqa: E731
    assert ids("?status=in_review") == {covid.pk}
    assert ids("?status=in_review&status=ai_done") == {covid.pk, cap.pk}
    assert ids("?ai_label=covid") == {covid.pk}
    assert ids("?reviewer=clin2") == {cap.pk}
    response = client.get("/api/studies/?status=bogus")
    assert response.status_code == 400 and "status" in response.json()


def test_search_matches_patient_id_name_and_accession(users):
    a = make_study(patient_id="ID-ALPHA", name="ALPHA^ANN", accession="X1")
    b = make_study(patient_id="ID-BETA", name="BETA^BOB", accession="Y2")
    client = client_for(users.clinician)
    assert [r["id"] for r in rows(client, "?search=id-alpha")] == [a.pk]
    assert [r["id"] for r in rows(client, "?search=bob")] == [b.pk]
    assert [r["id"] for r in rows(client, "?search=Y2")] == [b.pk]


def test_ordering_by_uncertainty_puts_studies_without_ai_last_both_ways(users):
    sure, unsure, middle, none = make_study(), make_study(), make_study(), make_study()
    make_run(sure, probability=0.95)
    make_run(unsure, probability=0.4)
    make_run(middle, probability=0.7)
    client = client_for(users.clinician)
    assert [r["id"] for r in rows(client, "?ordering=-ai_uncertainty")] == [unsure.pk, middle.pk, sure.pk, none.pk]
    assert [r["id"] for r in rows(client, "?ordering=ai_uncertainty")] == [sure.pk, middle.pk, unsure.pk, none.pk]
    assert [r["id"] for r in rows(client, "?ordering=-infection_percent,ai_probability")][:3] == [
        unsure.pk, middle.pk, sure.pk]


def _bulk_studies(start: int, stop: int, users) -> None:
    """Studies ``start..stop-1``, each with two succeeded runs and (every other one) a decision: bulk, so cheap."""
    patients = Patient.objects.bulk_create(Patient(patient_id=f"BULK{i}", name=f"P^{i}") for i in range(start, stop))
    studies = Study.objects.bulk_create(
        Study(study_instance_uid=f"2.25.{p.patient_id}", patient=p, study_date="20240101", status="ai_done")
        for p in patients)
    AnalysisRun.objects.bulk_create(
        AnalysisRun(study=s, model_name="tiny", status="succeeded", label=label, probability=0.8, uncertainty=0.2)
        for s in studies for label in ("CAP", "COVID"))
    refresh_ai_columns(s.pk for s in studies)  # bulk_create bypasses analysis.services
    Decision.objects.bulk_create(Decision(study=s, label="np", decided_by=users.clinician) for s in studies[::2])


def test_query_count_does_not_grow_with_the_number_of_studies(users):
    client = client_for(users.clinician)
    client.get("/api/studies/")  # the user's roles are read once and cached on the user
    counts = []
    for total in (10, 200):
        _bulk_studies(Study.objects.count(), total, users)
        with CaptureQueriesContext(connection) as queries:
            page = client.get("/api/studies/?limit=200&ordering=-ai_uncertainty").json()
        assert page["count"] == total and len(page["results"]) == total
        assert all(r["ai_label"] == "COVID" for r in page["results"])
        counts.append(len(queries))
    assert counts[0] == counts[1] <= 3, counts


def test_detail_lists_instances_in_spatial_order_with_analysis_and_decision(users):
    study = make_study(slices=4)
    run = make_run(study, "COVID", 0.8)
    detail = client_for(users.annotator).get(f"/api/studies/{study.pk}/").json()
    [series] = detail["series"]
    assert [i["z_mm"] for i in series["instances"]] == [0.0, 2.5, 5.0, 7.5]
    assert [i["instance_number"] for i in series["instances"]] == [4, 3, 2, 1]
    assert series["instances"][0].keys() == {"sop_instance_uid", "instance_number", "z_mm", "rows", "columns"}
    assert detail["latest_analysis"]["id"] == run.pk and detail["latest_analysis"]["label"] == "COVID"
    assert detail["decision"] is None
    assert detail["status"] == "ai_done"  # an annotator opening it does not start the clinical review


def test_opening_a_study_changes_nothing_and_start_review_is_an_explicit_post(users):
    study = make_study(status=Study.Status.AI_DONE)
    before = Study.objects.get(pk=study.pk).updated_at
    clinician = client_for(users.clinician)
    assert clinician.get(f"/api/studies/{study.pk}/").json()["status"] == "ai_done"
    study.refresh_from_db()
    assert (study.status, study.updated_at) == (Study.Status.AI_DONE, before), "a GET wrote to the study"

    assert client_for(users.annotator).post(f"/api/studies/{study.pk}/start-review/").status_code == 403
    response = clinician.post(f"/api/studies/{study.pk}/start-review/")
    assert (response.status_code, response.json()) == (200, {"status": "in_review"})
    study.refresh_from_db()
    assert study.status == Study.Status.IN_REVIEW and study.updated_at > before

    done = make_study(status=Study.Status.REVIEWED)  # a signed-off study is not re-opened by a second look
    assert clinician.post(f"/api/studies/{done.pk}/start-review/").json() == {"status": "reviewed"}
    done.refresh_from_db()
    assert done.status == Study.Status.REVIEWED
    assert clinician.post("/api/studies/999999/start-review/").status_code == 404


def test_mark_reviewed_returns_the_next_unreviewed_study_in_worklist_order(users):
    low, high, done, mid = make_study(), make_study(), make_study(status=Study.Status.REVIEWED), make_study()
    for study, p in ((low, 0.95), (high, 0.5), (done, 0.6), (mid, 0.7)):
        make_run(study, probability=p)
        Decision.objects.create(study=study, label="covid", reviewed=study is done)
    client = client_for(users.clinician)
    order = "?ordering=-ai_uncertainty"  # high, done, mid, low

    response = client.post(f"/api/studies/{high.pk}/mark-reviewed/{order}", {}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["next_study_id"] == mid.pk  # skips the reviewed one
    assert response.json()["decision"]["reviewed"] is True
    high.refresh_from_db()
    assert high.status == Study.Status.REVIEWED and high.decision.decided_by == users.clinician

    assert client.post(f"/api/studies/{low.pk}/mark-reviewed/{order}").json()["next_study_id"] == mid.pk  # wraps
    assert client.post(f"/api/studies/{mid.pk}/mark-reviewed/{order}").json()["next_study_id"] is None


def test_mark_reviewed_needs_a_decision_and_a_clinician(users):
    study = make_study()
    response = client_for(users.clinician).post(f"/api/studies/{study.pk}/mark-reviewed/")
    assert response.status_code == 400 and "diagnosis" in response.json()["detail"]
    Decision.objects.create(study=study, label="np")
    assert client_for(users.annotator).post(f"/api/studies/{study.pk}/mark-reviewed/").status_code == 403


def test_odd_query_strings_are_ignored_or_400_never_500(users):
    make_study()
    client = client_for(users.clinician)
    assert rows(client, "?ordering=patient__name,-nope") and rows(client, "?limit=abc&offset=-5")
    for query in ("?search=%00", "?reviewer=%00", "?ai_label=%00"):
        assert client.get(f"/api/studies/{query}").status_code == 400
    assert client_for(users.admin).get("/api/users/?search=%00").status_code == 400

"""The worklist's lungscope.analysis/2 columns: opacity % (the severity shown) and "outside the model's experience",
copied onto the study from its latest succeeded run, sorted, filtered, and put first under "least certain first"."""
from __future__ import annotations

import pytest
from django.db import connection

from factories import client_for
from review_factories import make_run, make_study
from webapp.analysis.models import AnalysisRun
from webapp.studies.models import Study

pytestmark = pytest.mark.django_db


def rows(client, query: str) -> list[dict]:
    response = client.get(f"/api/studies/?{query}")
    assert response.status_code == 200, response.content
    return response.json()["results"]


@pytest.fixture
def worklist(users):
    """Two studies flagged outside (one very certain), two inside, one without a domain verdict, one unanalysed."""
    studies = {
        "outside_certain": make_run(make_study(), "COVID", 0.95, opacity=30.0, outside=True).study,
        "outside_unsure": make_run(make_study(), "CAP", 0.5, opacity=2.0, outside=True).study,
        "inside_unsure": make_run(make_study(), "NP", 0.4, opacity=0.5, outside=False).study,
        "inside_certain": make_run(make_study(), "COVID", 0.9, opacity=12.0, outside=False).study,
        "no_domain": make_run(make_study(), "NP", 0.45, opacity=None, outside=None).study,
        "unanalysed": make_study(),
    }
    names = {study.pk: name for name, study in studies.items()}
    return names, client_for(users.clinician)


def test_rows_carry_opacity_and_the_outside_flag_and_keep_infection(worklist):
    names, client = worklist
    by_name = {names[r["id"]]: r for r in rows(client, "limit=50")}
    assert by_name["outside_certain"]["opacity_percent"] == 30.0
    assert by_name["outside_certain"]["ai_outside"] is True
    assert by_name["inside_certain"]["ai_outside"] is False
    assert by_name["no_domain"]["ai_outside"] is False and by_name["no_domain"]["opacity_percent"] is None
    assert by_name["unanalysed"]["ai_outside"] is False and by_name["unanalysed"]["opacity_percent"] is None
    assert by_name["inside_certain"]["infection_percent"] == 12.5


def test_least_certain_first_opens_with_the_outside_studies(worklist):
    names, client = worklist
    order = [names[r["id"]] for r in rows(client, "ordering=-ai_uncertainty")]
    assert order == ["outside_unsure", "outside_certain", "inside_unsure", "no_domain", "inside_certain",
                     "unanalysed"]
    order = [names[r["id"]] for r in rows(client, "ordering=ai_uncertainty")]
    assert order == ["inside_certain", "no_domain", "inside_unsure", "unanalysed", "outside_certain",
                     "outside_unsure"]


def test_ordering_by_opacity_puts_unknown_last(worklist):
    names, client = worklist
    order = [names[r["id"]] for r in rows(client, "ordering=-opacity_percent")]
    assert order[:4] == ["outside_certain", "inside_certain", "outside_unsure", "inside_unsure"]
    assert set(order[4:]) == {"no_domain", "unanalysed"}
    order = [names[r["id"]] for r in rows(client, "ordering=opacity_percent")]
    assert order[:4] == ["inside_unsure", "outside_unsure", "inside_certain", "outside_certain"]


def test_outside_filter(worklist):
    names, client = worklist
    assert {names[r["id"]] for r in rows(client, "outside=true")} == {"outside_certain", "outside_unsure"}
    assert {names[r["id"]] for r in rows(client, "outside=false")} == {"inside_unsure", "inside_certain",
                                                                       "no_domain", "unanalysed"}
    response = client.get("/api/studies/?outside=perhaps")
    assert response.status_code == 400 and "outside" in response.json()


def test_a_newer_run_inside_the_domain_clears_the_flag(worklist):
    names, client = worklist
    study = Study.objects.get(pk=next(pk for pk, name in names.items() if name == "outside_certain"))
    newer = make_run(study, "COVID", 0.8, opacity=25.0, outside=False)
    study.refresh_from_db()
    assert (study.ai_outside, study.opacity_percent) == (False, 25.0)
    newer.delete()  # back to the run before it
    study.refresh_from_db()
    assert (study.ai_outside, study.opacity_percent) == (True, 30.0)
    make_run(study, "COVID", 0.8, opacity=1.0, outside=True, status=AnalysisRun.Status.FAILED)
    study.refresh_from_db()
    assert (study.ai_outside, study.opacity_percent) == (True, 30.0)  # a failed run changes nothing


def test_the_worklist_indexes_lead_with_the_outside_flag():
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'studies_study'")
        indexes = dict(cursor.fetchall())
    assert "ai_outside DESC NULLS LAST, ai_uncertainty DESC NULLS LAST, id DESC" in \
        indexes["study_outside_uncertainty_desc"]
    assert "(ai_outside, ai_uncertainty, id DESC)" in indexes["study_outside_uncertainty_asc"]  # ASC: nulls last
    assert "(opacity_percent DESC NULLS LAST, id DESC)" in indexes["study_opacity_desc"]
    assert "study_uncertainty_desc" not in indexes

"""The worklist's AI columns live on the study (copied from its latest succeeded run when results are written), so
sorting and filtering by them reads indexed study columns instead of every study's runs on each request."""
from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from factories import client_for
from review_factories import make_run, make_study
from webapp.analysis import services
from webapp.analysis.models import AnalysisRun
from webapp.studies.models import Study

pytestmark = pytest.mark.django_db


def ai_columns(study: Study) -> tuple:
    study.refresh_from_db()
    return study.ai_label, study.ai_probability, study.ai_uncertainty, study.infection_percent


def finish(run: AnalysisRun, label: str, probability: float, infection: float = 5.0) -> None:
    """What ``store_result`` writes for a succeeded run, then the study settles (as it does there)."""
    AnalysisRun.objects.filter(pk=run.pk).update(status=AnalysisRun.Status.SUCCEEDED, label=label,
                                                 probability=probability, uncertainty=1 - probability,
                                                 infection_percent=infection)
    services.settle_study_status(run.study_id)


def test_worklist_sorted_by_uncertainty_does_not_read_the_runs(users):
    for probability in (0.55, 0.9, 0.7):
        make_run(make_study(), "COVID", probability)
    make_study()  # no analysis yet
    client = client_for(users.clinician)
    client.get("/api/studies/")
    with CaptureQueriesContext(connection) as queries:
        page = client.get("/api/studies/?ordering=-ai_uncertainty&ai_label=covid").json()
    assert [r["ai_probability"] for r in page["results"]] == [0.55, 0.7, 0.9]
    sql = [q["sql"] for q in queries.captured_queries if "ORDER BY" in q["sql"]]
    assert sql and not any("analysis_analysisrun" in s for s in sql), sql


def test_study_columns_follow_the_latest_succeeded_run(users):
    study = make_study(status=Study.Status.NEW)
    assert ai_columns(study) == (None, None, None, None)

    first = AnalysisRun.objects.create(study=study, model_name="tiny")
    second = AnalysisRun.objects.create(study=study, model_name="tiny")
    AnalysisRun.objects.filter(pk=first.pk).update(created_at=second.created_at - dt.timedelta(minutes=1))
    finish(second, "CAP", 0.75, infection=3.0)
    assert ai_columns(study) == ("CAP", 0.75, pytest.approx(0.25), 3.0)
    finish(first, "COVID", 0.9)  # the older run finishing last does not replace the newer result
    assert ai_columns(study)[0] == "CAP"

    Study.objects.filter(pk=study.pk).update(status=Study.Status.IN_REVIEW)
    third = AnalysisRun.objects.create(study=study, model_name="tiny")
    services.mark_failed(third, "broken")  # a failed re-analysis leaves the last result standing
    assert ai_columns(study)[0] == "CAP"
    fourth = AnalysisRun.objects.create(study=study, model_name="tiny")
    finish(fourth, "NP", 0.6, infection=0.0)  # a study in review still shows its newest AI result
    assert ai_columns(study) == ("NP", 0.6, pytest.approx(0.4), 0.0)
    study.refresh_from_db()
    assert study.status == Study.Status.IN_REVIEW

    fourth.delete()  # e.g. removed in the admin: the worklist falls back to the run before it
    assert ai_columns(study)[0] == "CAP"

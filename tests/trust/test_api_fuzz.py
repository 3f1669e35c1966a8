"""Fuzzing the API: schemathesis over the app's own OpenAPI schema, and hypothesis over DICOMweb, which the
schema leaves out (PS3.18 specifies it).

The schema is fetched the way a client would, through ``/api/schema/`` with an admin's DRF token (it needs a login),
and every request goes in-process through the WSGI application, so the rows live in this test's transaction. Two
checks run on every response: no 5xx (``not_a_server_error``) and, where the response is JSON of a documented
status, conformance to the documented schema (``response_schema_conformance``; the map PNGs are binary, which the
check skips by media type, so for those only the 5xx check applies). Generation is derandomised and bounded
(``MAX_EXAMPLES`` per operation, no shrinking) so the sweep is reproducible and ends in a few minutes. DICOMweb
gets generated UIDs, frame lists and query strings on every resource and must never answer 5xx.
"""
from __future__ import annotations

from urllib.parse import quote

import pytest
import schemathesis
from django.db import transaction
from factories import ingest_phantom, make_user
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

MAX_EXAMPLES = 10
CHECKS = [not_a_server_error, response_schema_conformance]


@pytest.fixture
def auth_header(db, storage_dir, tmp_path) -> dict[str, str]:
    """An admin's token (admins may call every operation), with one ingested study so lookups can succeed."""
    admin = make_user("fuzz-admin", "admin")
    ingest_phantom(tmp_path, "COVID", seed=5, n_slices=4, size=64)
    return {"Authorization": f"Token {Token.objects.create(user=admin).key}"}


@pytest.fixture
def api_schema(auth_header):
    """The schema over the WSGI app. Like Django's test client, the handler must not close the database connection
    when a request starts or finishes: the connection holds this test's transaction."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    from webapp.wsgi import application

    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield schemathesis.openapi.from_wsgi("/api/schema/?format=json", application, headers=dict(auth_header))
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


def fuzz(operation, headers: dict[str, str]) -> int:
    """Run the bounded, derandomised examples of one operation; raises on the first failing check, else returns
    how many requests were made."""
    calls = 0

    @given(case=operation.as_strategy())
    @settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def examples(case) -> None:
        nonlocal calls
        calls += 1
        with transaction.atomic():  # a database error in one request must not abort the test's transaction
            case.call_and_validate(headers=headers, checks=CHECKS)
            transaction.set_rollback(True)

    examples()
    return calls


def describe(exc: BaseException) -> str:
    """The failure's own words, each sub-failure of a group included (a group's title alone names none)."""
    parts = [str(exc)] + [str(sub) for sub in getattr(exc, "exceptions", ())]
    return "\n".join(parts)[:3000]


def test_no_server_errors_and_responses_match_the_schema(api_schema, auth_header) -> None:
    """One sweep over every operation; failures are gathered so one report names every broken operation."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 40, "the schema lost its operations"
    failures, calls = [], 0
    for operation in operations:
        try:
            calls += fuzz(operation, auth_header)
        except (Exception, BaseExceptionGroup) as exc:  # failed checks (a group) or a crash: all are findings
            failures.append(f"{operation.label}: {describe(exc)}")
    assert not failures, f"{len(failures)} of {len(operations)} operations failed:\n\n" + "\n\n".join(failures)
    print(f"{calls} requests over {len(operations)} operations, none failed")


DICOMWEB_RESOURCES = (
    "/dicomweb/studies", "/dicomweb/series", "/dicomweb/instances", "/dicomweb/studies/{study}",
    "/dicomweb/studies/{study}/metadata", "/dicomweb/studies/{study}/series", "/dicomweb/studies/{study}/instances",
    "/dicomweb/studies/{study}/series/{series}", "/dicomweb/studies/{study}/series/{series}/metadata",
    "/dicomweb/studies/{study}/series/{series}/instances",
    "/dicomweb/studies/{study}/series/{series}/instances/{instance}",
    "/dicomweb/studies/{study}/series/{series}/instances/{instance}/metadata",
    "/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}", "/wado",
)
QUERY_KEYS = ("PatientName", "StudyDate", "StudyInstanceUID", "Modality", "00100020", "includefield", "limit",
              "offset", "fuzzymatching", "requestType", "studyUID", "seriesUID", "objectUID", "contentType", "Rows",
              "NotAKeyword", "SeriesNumber", "StudyTime")


def test_dicomweb_never_answers_a_server_error(auth_header) -> None:
    """Real UIDs mixed with generated ones in every path slot, odd Accept headers and query strings."""
    from django.test import Client

    from webapp.studies.models import Instance

    real = Instance.objects.select_related("series__study").first()
    uids = {"study": real.series.study.study_instance_uid, "series": real.series.series_instance_uid,
            "instance": real.sop_instance_uid, "frames": "1"}
    segment = st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="/?#"), min_size=1, max_size=30)
    client = Client(HTTP_AUTHORIZATION=auth_header["Authorization"])

    @given(template=st.sampled_from(DICOMWEB_RESOURCES),
           slots=st.fixed_dictionaries({k: st.one_of(st.just(v), segment) for k, v in uids.items()}),
           query=st.dictionaries(st.sampled_from(QUERY_KEYS), st.text(max_size=40), max_size=4),
           accept=st.sampled_from(["", "*/*", 'multipart/related; type="application/dicom"', "application/json",
                                   'multipart/related; type="application/octet-stream"', "image/png", ";;,"]))
    @settings(max_examples=300, derandomize=True, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    def request(template: str, slots: dict[str, str], query: dict[str, str], accept: str) -> None:
        path = template.format(**{k: quote(v, safe="") for k, v in slots.items()})
        with transaction.atomic():
            response = client.get(path, query, HTTP_ACCEPT=accept)
            transaction.set_rollback(True)
        assert response.status_code < 500, (path, query, accept, response.status_code)

    request()

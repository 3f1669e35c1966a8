"""The permissions matrix: every URL of the app x {anonymous, clinician, annotator, admin} x {allowed, forbidden}.

The list of endpoints is generated from the URL conf, so a new endpoint without a rule in ``RULES`` fails
``test_every_endpoint_has_a_rule``. Each request runs inside a savepoint that is rolled back, so one world of
objects serves the whole sweep. "Allowed" means the permission layer let the request through: any status but
401/403 (a 400 for an empty body or a 404 for another user's job is fine) and never a 5xx. "Forbidden" means
401/403 for the API and a redirect to the login page for the HTML pages.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from factories import ingest_phantom

from webapp.accounts.roles import ADMIN, ANNOTATOR, CLINICIAN
from webapp.analysis.models import AnalysisRun, SliceResult
from webapp.jobs.models import Job
from webapp.review.models import Box
from webapp.studies.models import Instance

ANON = "anonymous"
ROLES = (ANON, CLINICIAN, ANNOTATOR, ADMIN)
ALL = frozenset({CLINICIAN, ANNOTATOR, ADMIN})
ADMINS = frozenset({ADMIN})
CLINICIANS = frozenset({CLINICIAN, ADMIN})
ANNOTATORS = frozenset({ANNOTATOR, ADMIN})
PUBLIC = "public"  # reachable without login (the login and logout views)

#: url name -> {method: roles allowed}. Admins hold every role.
RULES: dict[str, dict[str, frozenset[str]] | str] = {
    "login": PUBLIC, "logout": PUBLIC,
    "schema": {"GET": ALL}, "api-docs": {"GET": ALL}, "me": {"GET": ALL},
    "worklist": {"GET": ALL}, "viewer": {"GET": ALL},
    "curation": {"GET": ADMINS}, "registry": {"GET": ADMINS},
    # studies, upload, DICOMweb (STOW lets any signed-in user store, like the upload button)
    "upload": {"POST": ALL},
    "qido-studies": {"GET": ALL, "POST": ALL}, "wado-study": {"GET": ALL, "POST": ALL},
    "qido-all-series": {"GET": ALL}, "qido-all-instances": {"GET": ALL}, "wado-study-metadata": {"GET": ALL},
    "qido-series": {"GET": ALL}, "qido-study-instances": {"GET": ALL}, "wado-series": {"GET": ALL},
    "wado-series-metadata": {"GET": ALL}, "qido-instances": {"GET": ALL}, "wado-instance": {"GET": ALL},
    "wado-instance-metadata": {"GET": ALL}, "wado-frames": {"GET": ALL}, "wado-uri": {"GET": ALL},
    "job-list": {"GET": ALL}, "job-detail": {"GET": ALL},
    # analysis
    "study-analyze": {"POST": CLINICIANS}, "study-analysis": {"GET": ALL}, "study-analyses": {"GET": ALL},
    "analysis-run-detail": {"GET": ALL}, "analysis-slice-map": {"GET": ALL},
    # review
    "worklist-api": {"GET": ALL}, "study-detail": {"GET": ALL},
    "study-boxes": {"GET": ALL, "POST": ANNOTATORS},
    "study-decision": {"GET": ALL, "PUT": CLINICIANS}, "study-mark-reviewed": {"POST": CLINICIANS},
    "study-start-review": {"POST": CLINICIANS},
    "study-audit": {"GET": ALL}, "audit-log": {"GET": ADMINS},
    "box-detail": {"GET": ALL, "PATCH": ANNOTATORS, "DELETE": ANNOTATORS},
    "box-accept": {"POST": ANNOTATORS}, "box-reject": {"POST": ANNOTATORS},
    "user-list": {"GET": ADMINS}, "user-detail": {"GET": ADMINS, "PATCH": ADMINS},
    # curation and registry: admins only, except reading the registry
    "dataset-version-list": {"GET": ADMINS, "POST": ADMINS}, "dataset-version-detail": {"GET": ADMINS},
    "export-list": {"GET": ADMINS, "POST": ADMINS}, "export-detail": {"GET": ADMINS},
    "export-download": {"GET": ADMINS},
    "model-version-list": {"GET": ALL}, "model-version-detail": {"GET": ALL}, "model-version-roc": {"GET": ALL},
    "model-version-promote": {"POST": ADMINS}, "model-version-rollback": {"POST": ADMINS},
    "training-run-list": {"GET": ADMINS, "POST": ADMINS}, "training-run-detail": {"GET": ADMINS},
    "training-run-progress": {"GET": ADMINS}, "training-run-cancel": {"POST": ADMINS},
    "reanalysis": {"POST": ADMINS},
    # DICOM node: admins configure AE titles and destinations; everyone reads the sent status; clinicians re-send
    "dicom-peer-list": {"GET": ADMINS, "POST": ADMINS},
    "dicom-peer-detail": {"GET": ADMINS, "PUT": ADMINS, "PATCH": ADMINS, "DELETE": ADMINS},
    "dicom-web-destination-list": {"GET": ADMINS, "POST": ADMINS},
    "dicom-web-destination-detail": {"GET": ADMINS, "PUT": ADMINS, "PATCH": ADMINS, "DELETE": ADMINS},
    "dicom-delivery-list": {"GET": ALL}, "dicom-study-sent-status": {"GET": ALL},
    "dicom-study-resend": {"POST": CLINICIANS},
}


@dataclass(frozen=True)
class Endpoint:
    name: str
    route: str
    params: tuple[str, ...]


def app_endpoints() -> list[Endpoint]:
    """Every named URL of the app outside Django's admin site, from the URL conf."""
    found: list[Endpoint] = []

    def walk(patterns, prefix: str) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                if getattr(p, "app_name", None) == "admin" or str(p.pattern).startswith("admin/"):
                    continue
                walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                assert p.name, f"URL {prefix}{p.pattern} has no name: name it so the matrix can hold a rule"
                found.append(Endpoint(p.name, prefix + str(p.pattern), tuple(p.pattern.converters)))

    walk(get_resolver().url_patterns, "")
    return found


def test_every_endpoint_has_a_rule():
    names = {e.name for e in app_endpoints()}
    assert names - RULES.keys() == set(), "endpoints without a permission rule in RULES"
    assert RULES.keys() - names == set(), "rules for endpoints that no longer exist"


@pytest.fixture
def study_in_review(role_users, storage_dir, tmp_path):
    """A study with a finished run (one slice result, one AI box) and an analysis job; the rest of the world is
    conftest's."""
    study = ingest_phantom(tmp_path, "COVID", seed=3, n_slices=4, size=64)
    instance = Instance.objects.filter(series__study=study).select_related("series").first()
    run = AnalysisRun.objects.create(study=study, series=instance.series, model_name="tiny",
                                     status=AnalysisRun.Status.SUCCEEDED, label="COVID", probabilities={"COVID": 1})
    SliceResult.objects.create(run=run, index=0, sop_instance_uid=instance.sop_instance_uid, probabilities={})
    box = Box.objects.create(study=study, analysis_run=run, sop_instance_uid=instance.sop_instance_uid, x0=1, y0=1,
                             x1=5, y1=5, label=Box.Label.COVID_LESION, provenance=Box.Provenance.AI)
    job = Job.objects.create(kind=Job.Kind.ANALYZE, created_by=role_users[ADMIN])
    return study, run, box.pk, job


#: Which object a ``pk`` stands for, by URL name prefix.
PK_OWNER = {"dicom-peer": "peer", "dicom-web-destination": "web", "dicom-study": "study", "study": "study",
            "box": "box", "analysis-run": "run", "analysis-slice": "run", "job": "job", "dataset-version": "dataset",
            "export": "export", "model-version": "model", "training-run": "training", "user": "user"}


def url_of(endpoint: Endpoint, ids: dict, uids: dict) -> str:
    kwargs = {}
    for param in endpoint.params:
        if param == "pk":
            owner = next(v for k, v in PK_OWNER.items() if endpoint.name.startswith(k))
            kwargs[param] = ids[owner]
        elif param in ("study_pk", "study_id"):
            kwargs[param] = ids["study"]
        elif param == "index":
            kwargs[param] = 0
        elif param == "kind":
            kwargs[param] = "joint"
        else:
            kwargs[param] = uids[param]
    url = reverse(endpoint.name, kwargs=kwargs)
    if endpoint.name == "wado-uri":
        url += f"?requestType=WADO&studyUID={uids['study']}&seriesUID={uids['series']}&objectUID={uids['instance']}"
    return url


def is_forbidden(response, anonymous: bool) -> bool:
    if response.status_code in (401, 403):
        return True
    return anonymous and response.status_code == 302 and "/accounts/login/" in response.get("Location", "")


@pytest.mark.parametrize("role", ROLES)
def test_permissions_matrix(role, world):
    users, ids, uids = world
    client = Client()
    if role != ANON:
        client.force_login(users[role])
    problems = []
    for endpoint in app_endpoints():
        rule = RULES.get(endpoint.name)
        if rule is None or rule == PUBLIC:
            continue
        url = url_of(endpoint, ids, uids)
        for method, allowed in rule.items():
            with transaction.atomic():
                response = getattr(client, method.lower())(url, content_type="application/json") \
                    if method in ("POST", "PUT", "PATCH") else getattr(client, method.lower())(url)
                transaction.set_rollback(True)
            expect_allowed = role in allowed
            forbidden = is_forbidden(response, role == ANON)
            if response.status_code >= 500:
                problems.append(f"{method} {url}: {response.status_code} (server error)")
            elif expect_allowed and forbidden:
                problems.append(f"{method} {url}: {response.status_code}, but {role} is allowed")
            elif not expect_allowed and not forbidden:
                problems.append(f"{method} {url}: {response.status_code}, but {role} is forbidden")
    assert not problems, "\n".join(problems)

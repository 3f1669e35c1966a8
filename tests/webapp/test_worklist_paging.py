"""The worklist pages keys first, rows second (``review.pagination``): the pages must be exactly those of one query
with the joins, for every ordering (ties and studies without an AI result included) and with filters."""
from __future__ import annotations

import pytest
from django.db.models import F

from factories import client_for
from review_factories import make_run, make_study
from webapp.review.models import Decision
from webapp.studies.models import Study

pytestmark = pytest.mark.django_db


def expected_ids(term: str, **filters) -> list[int]:
    key = F(term.lstrip("-"))
    order = key.desc(nulls_last=True) if term.startswith("-") else key.asc(nulls_last=True)
    return list(Study.objects.filter(**filters).order_by(order, "-pk").values_list("pk", flat=True))


def paged_ids(client, query: str, limit: int = 7) -> list[int]:
    ids, offset = [], 0
    while True:
        page = client.get(f"/api/studies/?limit={limit}&offset={offset}&{query}").json()
        ids += [row["id"] for row in page["results"]]
        offset += limit
        if offset >= page["count"]:
            return ids


def test_pages_follow_the_ordering_with_ties_and_studies_without_results(users):
    for n in range(24):
        study = make_study(date=f"202401{n % 5 + 10}")
        if n % 4:  # every fourth study has no AI result yet
            make_run(study, ("CAP", "COVID")[n % 2], 0.5 + (n % 3) / 10)  # many equal probabilities
        if n % 3 == 0:
            Decision.objects.create(study=study, label="np", decided_by=users.clinician)
    client = client_for(users.clinician)
    for term in ("-ai_uncertainty", "ai_uncertainty", "-ai_probability", "study_date", "-updated_at"):
        assert paged_ids(client, f"ordering={term}") == expected_ids(term), term
    assert paged_ids(client, "ordering=-ai_uncertainty&ai_label=covid") == expected_ids(
        "-ai_uncertainty", ai_label="COVID")
    rows = client.get("/api/studies/?limit=5&ordering=-ai_uncertainty").json()["results"]
    decided = set(Decision.objects.values_list("study_id", flat=True))
    assert all((row["reviewer"] == "clin") == (row["id"] in decided) for row in rows), rows


def test_a_limit_beyond_the_largest_page_gives_the_largest_page(users):
    """``limit`` past PostgreSQL's 64-bit LIMIT was a 500; any limit now gives at most the API's largest page."""
    from webapp.api import Pagination

    for n in range(3):
        make_study(date=f"2024011{n}")
    client = client_for(users.clinician)
    for who, url in ((client, "/api/studies/?limit=99999999999999999999"),
                     (client_for(users.admin), "/api/audit/?limit=99999999999999999999")):  # the API's default paging
        response = who.get(url)
        assert response.status_code == 200, (url, response.status_code)
        assert len(response.json()["results"]) <= Pagination.max_limit
    assert len(client.get("/api/studies/?limit=99999999999999999999").json()["results"]) == 3
    assert len(client.get(f"/api/studies/?limit={Pagination.max_limit + 1}").json()["results"]) == 3

"""The worklist costs the same number of queries with 10 studies as with 10,000 (bulk-created, so it stays fast),
and a page still answers at that size. tests/webapp/test_worklist.py pins the same for 10 vs 200 and the columns;
this is the production-sized case, with the seeding bench/load.py uses for its load run."""
from __future__ import annotations

import pytest
from factories import client_for, make_user

from bench.load import bulk_worklist, worklist_queries

pytestmark = pytest.mark.django_db


def test_worklist_query_count_is_the_same_for_10_and_10000_studies():
    reviewer = make_user("scale-reviewer", "clinician")
    client = client_for(reviewer)
    counts = {}
    for total in (10, 10_000):
        bulk_worklist(total, reviewer)
        counts[total], listed = worklist_queries(client)
        assert listed == total
    assert counts[10] == counts[10_000], counts
    page = client.get("/api/studies/?limit=50&offset=9950&ordering=-ai_uncertainty&search=Bulk")
    assert page.status_code == 200 and len(page.json()["results"]) == 50

"""The viewer loads every box of a study, not just the first page: the client follows the list's ``next`` links
(the box list pages at 1,000, so a study with more used to lose the rest without a word)."""
from __future__ import annotations

import pytest

from e2e_helpers import login, open_viewer

pytestmark = pytest.mark.e2e

PAGE = 1000  # the client's ?limit=


def test_viewer_lists_boxes_past_the_first_page(page, plain_world):
    from webapp.review.models import Box

    world = plain_world
    study = world.studies[0]
    uid = study.series.get().instances.first().sop_instance_uid
    Box.objects.bulk_create(Box(study=study, sop_instance_uid=uid, x0=i % 200, y0=10, x1=i % 200 + 5, y1=15,
                                label="other", provenance="human", status="accepted") for i in range(PAGE + 7))
    pages = []
    page.on("request", lambda r: pages.append(r.url) if f"/api/studies/{study.pk}/boxes/" in r.url else None)
    login(page, world, "clin")
    open_viewer(page, world, study)
    total = Box.objects.filter(study=study).count()  # these and the AI's own
    assert total >= PAGE + 7
    page.wait_for_function("(n) => document.querySelectorAll('ul.box-list li[data-box-id]').length === n",
                           arg=total, timeout=30_000)
    ids = {int(i) for i in page.eval_on_selector_all("ul.box-list li[data-box-id]", "els => els.map(e => e.dataset.boxId)")}
    assert ids == set(Box.objects.filter(study=study).values_list("pk", flat=True))
    assert len(pages) == 2 and "offset=1000" in pages[1], pages
    assert not page.errors, page.errors

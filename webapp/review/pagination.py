"""Worklist paging that reads a page's primary keys first and its rows second.

With the patient and decision joins in the paged query, PostgreSQL hash-joins every study before it sorts and
cuts the page (about 60 ms at 10,000 studies on two cores, whatever the offset). The keys alone come off the
ordering's index (``ai_uncertainty ... NULLS LAST, id DESC``; migration studies 0002) or a sort of one narrow
table, and joining the fifty rows of the page is cheap. Same pages, same order, same ``count``.
"""
from __future__ import annotations

from django.db.models import QuerySet
from webapp.api import Pagination


class KeysFirstPagination(Pagination):
    def paginate_queryset(self, queryset: QuerySet, request, view=None) -> list | None:
        keys = super().paginate_queryset(queryset.values_list("pk", flat=True), request, view)
        if keys is None:
            return None
        rows = queryset.order_by().in_bulk(keys)
        return [rows[key] for key in keys]

"""The worklist query: studies with their latest AI result and human decision, in a constant number of queries.

The AI columns are the latest *succeeded* AnalysisRun's, kept on the study itself (``Study.ai_label`` ...):
``analysis.columns.refresh_ai_columns`` copies them whenever a study's runs change. Filtering and ordering read the
study table and its "least certain first" indexes; a correlated subquery per study cost ~40 ms for a page of 10,000
studies (~130 ms for the last page) on PostgreSQL. Patient and decision come in by join. Also the study status
moves the review makes.
"""
from __future__ import annotations

from django.db.models import Q, QuerySet
from django.utils import timezone

from webapp.studies.models import Study

#: A clinician starting the review (``POST .../start-review/``) of a study in these states moves it to in review.
OPENABLE = (Study.Status.NEW, Study.Status.AI_DONE)


def worklist_queryset() -> QuerySet[Study]:
    return Study.objects.select_related("patient", "decision__decided_by")


def set_status(study: Study, status: str, only_from: tuple[str, ...] | None = None) -> None:
    """Move ``study`` to ``status`` (when it is in ``only_from``, if given) with one conditional UPDATE."""
    rows = Study.objects.filter(pk=study.pk)
    if only_from is not None:
        rows = rows.filter(status__in=only_from)
    now = timezone.now()
    if rows.update(status=status, updated_at=now):
        study.status, study.updated_at = status, now


def next_study_id(ordered: QuerySet[Study], current: int) -> int | None:
    """The first not-reviewed study after ``current`` in the worklist order (wrapping around), or None.

    Reads only primary keys: with nullable sort keys (AI columns of unanalysed studies) a keyset "after this row"
    predicate is error-prone, and 10,000 integers are cheap.
    """
    ids = list(ordered.filter(~Q(status=Study.Status.REVIEWED) | Q(pk=current)).values_list("pk", flat=True))
    if current not in ids:
        return ids[0] if ids else None
    position = ids.index(current)
    following = ids[position + 1:] + ids[:position]
    return following[0] if following else None

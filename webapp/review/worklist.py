"""The worklist query: studies with their latest AI result and human decision, in a constant number of queries.

The AI columns come from the latest *succeeded* AnalysisRun through correlated subqueries (one SQL statement for
the page, however many studies and runs there are), so rows can be filtered and ordered by them in the database;
patient and decision come in by join. Also the study status moves the review makes.
"""
from __future__ import annotations

from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from webapp.accounts.roles import CLINICIAN, has_role
from webapp.analysis.models import AnalysisRun
from webapp.studies.models import Study

#: Worklist column -> AnalysisRun field of the latest succeeded run.
AI_COLUMNS = {"ai_label": "label", "ai_probability": "probability", "ai_uncertainty": "uncertainty",
              "infection_percent": "infection_percent"}

#: A clinician opening a study in these states starts its review.
OPENABLE = (Study.Status.NEW, Study.Status.AI_DONE)


def sees_patient_identity(user) -> bool:
    """Patient id and name are for the clinicians (and admins) who diagnose; annotators work on pixels only."""
    return has_role(user, CLINICIAN)


def worklist_queryset() -> QuerySet[Study]:
    latest = AnalysisRun.objects.filter(study=OuterRef("pk"), status=AnalysisRun.Status.SUCCEEDED).order_by(
        "-created_at", "-pk")
    return Study.objects.select_related("patient", "decision__decided_by").annotate(
        **{column: Subquery(latest.values(field)[:1]) for column, field in AI_COLUMNS.items()}
    )


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

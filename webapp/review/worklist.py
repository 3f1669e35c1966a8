"""The worklist query: studies with their latest AI result and human decision, in a constant number of queries.

The AI columns are the latest *succeeded* AnalysisRun's, kept on the study itself (``Study.ai_label`` ...):
``refresh_ai_columns`` copies them whenever a study's runs change (``analysis.services.settle_study_status``, which
every run start, failure and result goes through, and a run's deletion). Filtering and ordering read the study
table and its "least certain first" indexes; a correlated subquery per study cost ~40 ms for a page of 10,000
studies (~130 ms for the last page) on PostgreSQL. Patient and decision come in by join. Also the study status
moves the review makes.
"""
from __future__ import annotations

from collections.abc import Iterable

from django.db.models import OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone

from webapp.analysis.models import AnalysisRun
from webapp.studies.models import Study

#: Study column (worklist column) -> AnalysisRun field of the latest succeeded run.
AI_COLUMNS = {"ai_label": "label", "ai_probability": "probability", "ai_uncertainty": "uncertainty",
              "infection_percent": "infection_percent", "opacity_percent": "opacity_percent",
              "ai_outside": "domain_outside"}
#: Columns that are never null on the study: a run without the figure (no domain model) counts as this value.
AI_COLUMN_DEFAULTS = {"ai_outside": False}

#: A clinician starting the review (``POST .../start-review/``) of a study in these states moves it to in review.
OPENABLE = (Study.Status.NEW, Study.Status.AI_DONE)


def worklist_queryset() -> QuerySet[Study]:
    return Study.objects.select_related("patient", "decision__decided_by")


def refresh_ai_columns(study_ids: Iterable[int] | None = None) -> int:
    """Copy the latest succeeded run's AI columns onto the studies ``study_ids`` (every study when None), or
    null them where no run succeeded; one UPDATE. Call it after writing runs outside ``analysis.services`` (bulk
    loads, fixtures). Returns the number of studies updated."""
    latest = AnalysisRun.objects.filter(study=OuterRef("pk"), status=AnalysisRun.Status.SUCCEEDED).order_by(
        "-created_at", "-pk")
    studies = Study.objects.all() if study_ids is None else Study.objects.filter(pk__in=list(study_ids))
    values = {column: Subquery(latest.values(field)[:1]) for column, field in AI_COLUMNS.items()}
    values.update({column: Coalesce(values[column], Value(default)) for column, default in AI_COLUMN_DEFAULTS.items()})
    return studies.update(**values)


@receiver(post_delete, sender=AnalysisRun, dispatch_uid="worklist-run-deleted")
def _run_deleted(sender, instance: AnalysisRun, **kwargs) -> None:
    """A run removed by hand (the admin): its study shows the run before it, if any. (The in-memory status may be
    stale, so every deletion refreshes; it is one UPDATE of one row.)"""
    refresh_ai_columns([instance.study_id])


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

"""The worklist's AI columns: the latest *succeeded* AnalysisRun's figures, kept on the study itself
(``Study.ai_label`` ...), so that the worklist filters and sorts on the study table (``review.worklist``).

``refresh_ai_columns`` copies them whenever a study's runs change (``services.settle_study_status``, which every
run start, failure and result goes through, and a run's deletion). They are the analysis app's output, so they
are written here, below the review app that reads them.
"""
from __future__ import annotations

from collections.abc import Iterable

from django.db.models import OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.db.models.signals import post_delete
from django.dispatch import receiver

from webapp.studies.models import Study

from .models import AnalysisRun

#: Study column (worklist column) -> AnalysisRun field of the latest succeeded run.
AI_COLUMNS = {"ai_label": "label", "ai_probability": "probability", "ai_uncertainty": "uncertainty",
              "infection_percent": "infection_percent", "opacity_percent": "opacity_percent",
              "ai_outside": "domain_outside"}
#: Columns that are never null on the study: a run without the figure (no domain model) counts as this value.
AI_COLUMN_DEFAULTS = {"ai_outside": False}


def refresh_ai_columns(study_ids: Iterable[int] | None = None) -> int:
    """Copy the latest succeeded run's AI columns onto the studies ``study_ids`` (every study when None), or
    null them where no run succeeded; one UPDATE. Call it after writing runs outside ``services`` (bulk
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

"""The worklist's opacity % and "outside the model's experience" columns (lungscope.analysis/2), filled from the
existing runs; the "least certain first" indexes now lead with the outside flag, which that ordering sorts first."""
from django.db import migrations, models
from django.db.models import OuterRef, Subquery, Value
from django.db.models.functions import Coalesce


def fill_from_runs(apps, schema_editor):
    Study = apps.get_model("studies", "Study")
    AnalysisRun = apps.get_model("analysis", "AnalysisRun")
    latest = AnalysisRun.objects.filter(study=OuterRef("pk"), status="succeeded").order_by("-created_at", "-pk")
    analysed = AnalysisRun.objects.filter(status="succeeded").values("study_id")
    Study.objects.filter(pk__in=analysed).update(
        opacity_percent=Subquery(latest.values("opacity_percent")[:1]),
        ai_outside=Coalesce(Subquery(latest.values("domain_outside")[:1]), Value(False)))


#: "Least certain first" (outside studies first, then by uncertainty, nulls last, newest id on ties) and its
#: reverse, and opacity % both ways, as webapp.review.filters.NullsLastOrdering sorts them: a page is read off the
#: index instead of sorting every study. PostgreSQL only (see 0002).
OLD_INDEXES = {"study_uncertainty_desc": "ai_uncertainty DESC NULLS LAST, id DESC",
               "study_uncertainty_asc": "ai_uncertainty ASC NULLS LAST, id DESC"}
NEW_INDEXES = {"study_outside_uncertainty_desc": "ai_outside DESC NULLS LAST, ai_uncertainty DESC NULLS LAST, id DESC",
               "study_outside_uncertainty_asc": "ai_outside ASC NULLS LAST, ai_uncertainty ASC NULLS LAST, id DESC",
               "study_opacity_desc": "opacity_percent DESC NULLS LAST, id DESC",
               "study_opacity_asc": "opacity_percent ASC NULLS LAST, id DESC"}


def _swap(schema_editor, drop: dict[str, str], create: dict[str, str]) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in drop:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')
    for name, columns in create.items():
        schema_editor.execute(f'CREATE INDEX IF NOT EXISTS "{name}" ON "studies_study" ({columns})')


def use_outside_indexes(apps, schema_editor):
    _swap(schema_editor, OLD_INDEXES, NEW_INDEXES)


def use_uncertainty_indexes(apps, schema_editor):
    _swap(schema_editor, NEW_INDEXES, OLD_INDEXES)


class Migration(migrations.Migration):

    dependencies = [
        ("studies", "0002_study_ai_columns"),
        ("analysis", "0003_run_opacity_domain"),
    ]

    operations = [
        migrations.AddField(
            model_name="study",
            name="ai_outside",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="study",
            name="opacity_percent",
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.RunPython(fill_from_runs, migrations.RunPython.noop),
        migrations.RunPython(use_outside_indexes, use_uncertainty_indexes),
    ]

"""The worklist's AI columns on the study, indexed for "least certain first", filled from the existing runs."""
from django.db import migrations, models
from django.db.models import OuterRef, Subquery

#: Study column -> AnalysisRun field of the latest succeeded run (as webapp.analysis.columns.AI_COLUMNS).
AI_COLUMNS = {"ai_label": "label", "ai_probability": "probability", "ai_uncertainty": "uncertainty",
              "infection_percent": "infection_percent"}


def fill_from_runs(apps, schema_editor):
    Study = apps.get_model("studies", "Study")
    AnalysisRun = apps.get_model("analysis", "AnalysisRun")
    latest = AnalysisRun.objects.filter(study=OuterRef("pk"), status="succeeded").order_by("-created_at", "-pk")
    analysed = AnalysisRun.objects.filter(status="succeeded").values("study_id")
    Study.objects.filter(pk__in=analysed).update(
        **{column: Subquery(latest.values(field)[:1]) for column, field in AI_COLUMNS.items()})


#: "Least certain first" and its reverse in the worklist's order (nulls last, newest id first on ties): a page is
#: read off the index instead of sorting every study. PostgreSQL only: SQLite cannot index with NULLS LAST, and the
#: SQLite demo database is small enough to sort.
UNCERTAINTY_INDEXES = {"study_uncertainty_desc": "ai_uncertainty DESC NULLS LAST, id DESC",
                       "study_uncertainty_asc": "ai_uncertainty ASC NULLS LAST, id DESC"}


def create_uncertainty_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    table = apps.get_model("studies", "Study")._meta.db_table
    for name, columns in UNCERTAINTY_INDEXES.items():
        schema_editor.execute(f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" ({columns})')


def drop_uncertainty_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in UNCERTAINTY_INDEXES:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


class Migration(migrations.Migration):

    dependencies = [
        ("studies", "0001_initial"),
        ("analysis", "0002_run_bundle_path"),
    ]

    operations = [
        migrations.AddField(
            model_name="study",
            name="ai_label",
            field=models.CharField(blank=True, max_length=16, null=True),
        ),
        migrations.AddField(
            model_name="study",
            name="ai_probability",
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="study",
            name="ai_uncertainty",
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="study",
            name="infection_percent",
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.RunPython(fill_from_runs, migrations.RunPython.noop),
        migrations.RunPython(create_uncertainty_indexes, drop_uncertainty_indexes),
    ]

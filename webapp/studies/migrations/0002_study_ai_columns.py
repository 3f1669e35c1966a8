"""The worklist's AI columns on the study, indexed for "least certain first", filled from the existing runs."""
from django.db import migrations, models
from django.db.models import OuterRef, Subquery

#: Study column -> AnalysisRun field of the latest succeeded run (as webapp.review.worklist.AI_COLUMNS).
AI_COLUMNS = {"ai_label": "label", "ai_probability": "probability", "ai_uncertainty": "uncertainty",
              "infection_percent": "infection_percent"}


def fill_from_runs(apps, schema_editor):
    Study = apps.get_model("studies", "Study")
    AnalysisRun = apps.get_model("analysis", "AnalysisRun")
    latest = AnalysisRun.objects.filter(study=OuterRef("pk"), status="succeeded").order_by("-created_at", "-pk")
    analysed = AnalysisRun.objects.filter(status="succeeded").values("study_id")
    Study.objects.filter(pk__in=analysed).update(
        **{column: Subquery(latest.values(field)[:1]) for column, field in AI_COLUMNS.items()})


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
        migrations.AddIndex(
            model_name="study",
            index=models.Index(models.OrderBy(models.F("ai_uncertainty"), descending=True, nulls_last=True),
                               models.OrderBy(models.F("id"), descending=True), name="study_uncertainty_desc"),
        ),
        migrations.AddIndex(
            model_name="study",
            index=models.Index(models.OrderBy(models.F("ai_uncertainty"), nulls_last=True),
                               models.OrderBy(models.F("id"), descending=True), name="study_uncertainty_asc"),
        ),
    ]

"""Admin views of the archive index, read-mostly: rows come from ingest, so the files and rows stay in step."""
from django.contrib import admin

from .models import Instance, Patient, Series, Study


@admin.register(Patient)
class PatientAdmin(admin.ModelAdmin):
    list_display = ("patient_id", "name", "birth_date", "sex")
    search_fields = ("patient_id", "name")


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    list_display = ("study_instance_uid", "patient", "study_date", "accession_number", "status", "source_label",
                    "updated_at")
    list_filter = ("status", "source_label")
    search_fields = ("study_instance_uid", "accession_number", "patient__patient_id", "patient__name")
    list_select_related = ("patient",)
    raw_id_fields = ("patient",)


@admin.register(Series)
class SeriesAdmin(admin.ModelAdmin):
    list_display = ("series_instance_uid", "study", "modality", "series_number", "series_description")
    list_filter = ("modality",)
    search_fields = ("series_instance_uid", "study__study_instance_uid")
    raw_id_fields = ("study",)


@admin.register(Instance)
class InstanceAdmin(admin.ModelAdmin):
    """Instances are created by ingest only (file, size and digest must match the stored bytes)."""

    list_display = ("sop_instance_uid", "series", "instance_number", "rows", "columns", "transfer_syntax_uid", "size")
    search_fields = ("sop_instance_uid", "series__series_instance_uid")
    readonly_fields = [field.name for field in Instance._meta.fields]
    list_select_related = ("series",)

    def has_add_permission(self, request) -> bool:
        return False

"""Admin views of analysis runs: read-only, since runs are the AI's record and are never edited by hand."""
from django.contrib import admin

from .models import AnalysisRun, Finding


class FindingInline(admin.TabularInline):
    model = Finding
    fields = ["sop_instance_uid", "x0", "y0", "x1", "y1", "score", "label"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False


@admin.register(AnalysisRun)
class AnalysisRunAdmin(admin.ModelAdmin):
    list_display = ["id", "study", "status", "model_name", "model_version_label", "label", "probability",
                    "infection_percent", "created_at"]
    list_filter = ["status", "label", "model_name"]
    search_fields = ["study__study_instance_uid", "study__patient__patient_id"]
    list_select_related = ["study"]
    inlines = [FindingInline]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

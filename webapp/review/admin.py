"""Django admin: the audit log, read-only (events are written by the app only, never edited)."""
from django.contrib import admin

from .models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "actor", "action", "object_type", "object_id", "study"]
    list_filter = ["action", "object_type"]
    search_fields = ["actor__username", "object_id", "study__study_instance_uid"]
    date_hierarchy = "created_at"
    list_select_related = ["actor", "study"]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

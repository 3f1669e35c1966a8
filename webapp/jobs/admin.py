"""Jobs in the admin: to see what workers are doing and why something failed."""
from django.contrib import admin

from .models import Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "kind", "status", "progress", "message", "created_by", "created_at", "finished_at")
    list_filter = ("kind", "status")
    search_fields = ("message", "error")
    readonly_fields = ("kind", "status", "progress", "message", "error", "params", "result", "attempts",
                       "created_by", "created_at", "started_at", "finished_at", "updated_at")

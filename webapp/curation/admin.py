from django.contrib import admin

from .models import DatasetVersion, Export


@admin.register(DatasetVersion)
class DatasetVersionAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "fingerprint", "created_by", "created_at"]
    readonly_fields = ["name", "description", "criteria", "summary", "fingerprint", "created_by", "created_at"]


@admin.register(Export)
class ExportAdmin(admin.ModelAdmin):
    list_display = ["id", "dataset_version", "format", "deidentify", "size", "created_at"]
    readonly_fields = ["dataset_version", "format", "deidentify", "job", "file", "size", "sha256", "summary"]

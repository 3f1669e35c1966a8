from django.contrib import admin

from .models import ModelActivation, ModelVersion, TrainingRun


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "version", "source", "is_active", "created_at"]
    readonly_fields = ["sha256", "bundle_path", "is_active"]


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ["id", "dataset_version", "status", "iteration", "total_iterations", "created_at"]


@admin.register(ModelActivation)
class ModelActivationAdmin(admin.ModelAdmin):
    list_display = ["id", "model_version", "action", "previous", "actor", "created_at"]

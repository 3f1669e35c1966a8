"""API shapes for model versions (with their side-by-side figures)."""
from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from .models import ModelVersion


class ModelVersionSerializer(serializers.ModelSerializer):
    """A version with ``held_out`` (its own held-out figures) and ``active_on_held_out`` (what the version active at
    training time scored on the same studies, by the same code), so the list reads side by side."""

    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None, allow_null=True)
    held_out = serializers.SerializerMethodField()
    active_on_held_out = serializers.SerializerMethodField()
    compared_with = serializers.SerializerMethodField()
    roc_url = serializers.SerializerMethodField()
    training_run = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = ["id", "name", "version", "source", "sha256", "classes", "is_active", "dataset_version", "config",
                  "held_out", "active_on_held_out", "compared_with", "metrics", "roc_url", "training_run",
                  "created_by", "created_at"]
        read_only_fields = fields

    @staticmethod
    def _comparison(version: ModelVersion) -> dict:
        return version.metrics.get("comparison") or {}

    def get_held_out(self, version: ModelVersion) -> dict | None:
        return self._comparison(version).get("new") or version.metrics.get("held_out")

    def get_active_on_held_out(self, version: ModelVersion) -> dict | None:
        return self._comparison(version).get("active")

    def get_compared_with(self, version: ModelVersion) -> int | None:
        return self._comparison(version).get("active_version")

    def get_roc_url(self, version: ModelVersion) -> str | None:
        return reverse("model-version-roc", args=[version.pk]) if version.roc_plot else None

    def get_training_run(self, version: ModelVersion) -> int | None:
        run = getattr(version, "training_run", None)
        return run.pk if run else None

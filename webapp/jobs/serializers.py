"""Job rows as the API shows them: progress for the UI's bars, the result summary, and who started it."""
from __future__ import annotations

from rest_framework import serializers

from .models import Job


class JobSerializer(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Job
        fields = ["id", "kind", "status", "progress", "message", "error", "params", "result", "attempts",
                  "cancel_requested", "created_by", "created_at", "started_at", "finished_at", "updated_at"]
        read_only_fields = fields

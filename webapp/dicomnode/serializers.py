from __future__ import annotations

from rest_framework import serializers

from .models import Delivery, DicomPeer, WebDestination


class DicomPeerSerializer(serializers.ModelSerializer):
    class Meta:
        model = DicomPeer
        fields = ["id", "ae_title", "host", "port", "description", "may_send", "is_destination", "created_at"]

    def validate(self, attrs):
        is_destination = attrs.get("is_destination", getattr(self.instance, "is_destination", False))
        host = attrs.get("host", getattr(self.instance, "host", ""))
        port = attrs.get("port", getattr(self.instance, "port", None))
        if is_destination and not (host and port):
            raise serializers.ValidationError({"host": "a destination needs a host and a port"})
        return attrs


class WebDestinationSerializer(serializers.ModelSerializer):
    authorization = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=500)

    class Meta:
        model = WebDestination
        fields = ["id", "name", "url", "authorization", "enabled", "created_at"]


class DeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = Delivery
        fields = ["id", "study", "run", "peer", "web", "target", "job", "sr_version", "status", "attempts",
                  "sent_sop_instance_uids", "error", "created_at", "sent_at"]
        read_only_fields = fields


class SentStatusSerializer(serializers.Serializer):
    """The answer of ``studies/{id}/sent-status/``, described for the OpenAPI schema."""

    study = serializers.IntegerField()
    sent_status = serializers.ChoiceField(choices=["", *Delivery.Status.values],
                                          help_text='"" when nothing was ever queued')


class ResendSerializer(serializers.Serializer):
    """The answer of ``studies/{id}/resend/``: the send job and the SR version it sends."""

    job = serializers.IntegerField()
    sr_version = serializers.IntegerField()

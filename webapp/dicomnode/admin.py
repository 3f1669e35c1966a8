from django.contrib import admin

from .models import Delivery, DicomPeer, WebDestination


@admin.register(DicomPeer)
class DicomPeerAdmin(admin.ModelAdmin):
    list_display = ["ae_title", "host", "port", "may_send", "is_destination", "description"]
    list_filter = ["may_send", "is_destination"]
    search_fields = ["ae_title", "host", "description"]


@admin.register(WebDestination)
class WebDestinationAdmin(admin.ModelAdmin):
    list_display = ["name", "url", "enabled"]


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["study", "run", "sr_version", "target", "status", "attempts", "sent_at"]
    list_filter = ["status"]
    readonly_fields = [f.name for f in Delivery._meta.fields]

"""Mounted at ``api/dicom/``."""
from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("peers", views.DicomPeerViewSet, basename="dicom-peer")
router.register("web-destinations", views.WebDestinationViewSet, basename="dicom-web-destination")

urlpatterns = [
    path("deliveries/", views.DeliveryList.as_view(), name="dicom-delivery-list"),
    path("studies/<int:pk>/sent-status/", views.StudySentStatus.as_view(), name="dicom-study-sent-status"),
    path("studies/<int:pk>/resend/", views.StudyResend.as_view(), name="dicom-study-resend"),
    *router.urls,
]

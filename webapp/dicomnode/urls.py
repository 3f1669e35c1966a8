"""Mounted at ``api/dicom/``."""
from django.urls import path

from . import views

LIST = {"get": "list", "post": "create"}
DETAIL = {"get": "retrieve", "put": "update", "patch": "partial_update", "delete": "destroy"}

urlpatterns = [
    path("peers/", views.DicomPeerViewSet.as_view(LIST), name="dicom-peer-list"),
    path("peers/<int:pk>/", views.DicomPeerViewSet.as_view(DETAIL), name="dicom-peer-detail"),
    path("web-destinations/", views.WebDestinationViewSet.as_view(LIST), name="dicom-web-destination-list"),
    path("web-destinations/<int:pk>/", views.WebDestinationViewSet.as_view(DETAIL),
         name="dicom-web-destination-detail"),
    path("deliveries/", views.DeliveryList.as_view(), name="dicom-delivery-list"),
    path("studies/<int:pk>/sent-status/", views.StudySentStatus.as_view(), name="dicom-study-sent-status"),
    path("studies/<int:pk>/resend/", views.StudyResend.as_view(), name="dicom-study-resend"),
]

"""Mounted at the site root: the study list page and the upload API."""
from django.urls import path

from .pages import StudyListView
from .uploads import UploadView

urlpatterns = [
    path("", StudyListView.as_view(), name="worklist"),
    path("api/uploads/", UploadView.as_view(), name="upload"),
]

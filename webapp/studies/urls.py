"""Mounted at the site root: the upload API. (The interim study list that lived at ``/`` gave way to the review
app's worklist.)"""
from django.urls import path

from .uploads import UploadView

urlpatterns = [
    path("api/uploads/", UploadView.as_view(), name="upload"),
]

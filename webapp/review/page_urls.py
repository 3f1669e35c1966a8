"""Page routes of the review UI, mounted at the site root: the worklist (/) and the viewer (/studies/<id>/)."""
from django.urls import path

from .pages import ViewerPage, WorklistPage

urlpatterns = [
    path("", WorklistPage.as_view(), name="worklist"),
    path("studies/<int:study_id>/", ViewerPage.as_view(), name="viewer"),
]

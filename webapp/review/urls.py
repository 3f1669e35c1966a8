"""Review API routes; mounted under ``/api/`` by ``webapp/urls.py``."""
from django.urls import path

from . import views

urlpatterns = [
    path("studies/", views.WorklistView.as_view(), name="worklist-api"),
    path("studies/<int:pk>/", views.StudyDetailView.as_view(), name="study-detail"),
    path("studies/<int:study_pk>/boxes/", views.StudyBoxesView.as_view(), name="study-boxes"),
    path("studies/<int:study_pk>/decision/", views.DecisionView.as_view(), name="study-decision"),
    path("studies/<int:study_pk>/start-review/", views.StartReviewView.as_view(), name="study-start-review"),
    path("studies/<int:study_pk>/mark-reviewed/", views.MarkReviewedView.as_view(), name="study-mark-reviewed"),
    path("studies/<int:study_pk>/audit/", views.StudyAuditView.as_view(), name="study-audit"),
    path("boxes/<int:pk>/", views.BoxDetailView.as_view(), name="box-detail"),
    path("boxes/<int:pk>/accept/", views.BoxTransitionView.as_view(transition="accept"), name="box-accept"),
    path("boxes/<int:pk>/reject/", views.BoxTransitionView.as_view(transition="reject"), name="box-reject"),
    path("audit/", views.AuditLogView.as_view(), name="audit-log"),
]

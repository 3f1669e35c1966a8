"""Analysis endpoints, mounted under /api/."""
from django.urls import path

from . import views

urlpatterns = [
    path("studies/<int:pk>/analyze/", views.StudyAnalyzeView.as_view(), name="study-analyze"),
    path("studies/<int:pk>/analysis/", views.StudyLatestAnalysisView.as_view(), name="study-analysis"),
    path("studies/<int:pk>/analyses/", views.StudyAnalysesView.as_view(), name="study-analyses"),
    path("analysis-runs/<int:pk>/", views.AnalysisRunDetailView.as_view(), name="analysis-run-detail"),
    path("analysis-runs/<int:pk>/slices/<int:index>/maps/<str:kind>.png", views.SliceMapView.as_view(),
         name="analysis-slice-map"),
]

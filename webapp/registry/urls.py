from django.urls import path

from . import views

urlpatterns = [
    path("api/model-versions/", views.ModelVersionList.as_view(), name="model-version-list"),
    path("api/model-versions/rollback/", views.ModelVersionRollback.as_view(), name="model-version-rollback"),
    path("api/model-versions/<int:pk>/", views.ModelVersionDetail.as_view(), name="model-version-detail"),
    path("api/model-versions/<int:pk>/roc.png", views.ModelVersionRoc.as_view(), name="model-version-roc"),
    path("api/model-versions/<int:pk>/promote/", views.ModelVersionPromote.as_view(), name="model-version-promote"),
    path("api/training-runs/", views.TrainingRunListCreate.as_view(), name="training-run-list"),
    path("api/training-runs/<int:pk>/", views.TrainingRunDetail.as_view(), name="training-run-detail"),
    path("api/training-runs/<int:pk>/progress/", views.TrainingRunProgress.as_view(), name="training-run-progress"),
    path("api/training-runs/<int:pk>/cancel/", views.TrainingRunCancel.as_view(), name="training-run-cancel"),
    path("api/reanalysis/", views.Reanalysis.as_view(), name="reanalysis"),
    path("registry/", views.registry_page, name="registry"),
]

from django.urls import path

from . import views

urlpatterns = [
    path("api/training-runs/", views.TrainingRunListCreate.as_view(), name="training-run-list"),
    path("api/training-runs/<int:pk>/", views.TrainingRunDetail.as_view(), name="training-run-detail"),
    path("api/training-runs/<int:pk>/progress/", views.TrainingRunProgress.as_view(), name="training-run-progress"),
    path("api/training-runs/<int:pk>/cancel/", views.TrainingRunCancel.as_view(), name="training-run-cancel"),
    path("api/reanalysis/", views.Reanalysis.as_view(), name="reanalysis"),
]

from django.urls import path

from . import views

urlpatterns = [
    path("api/model-versions/", views.ModelVersionList.as_view(), name="model-version-list"),
    path("api/model-versions/rollback/", views.ModelVersionRollback.as_view(), name="model-version-rollback"),
    path("api/model-versions/<int:pk>/", views.ModelVersionDetail.as_view(), name="model-version-detail"),
    path("api/model-versions/<int:pk>/roc.png", views.ModelVersionRoc.as_view(), name="model-version-roc"),
    path("api/model-versions/<int:pk>/promote/", views.ModelVersionPromote.as_view(), name="model-version-promote"),
    path("registry/", views.registry_page, name="registry"),
]

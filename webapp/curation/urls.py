from django.urls import path

from . import views

urlpatterns = [
    path("api/dataset-versions/", views.DatasetVersionListCreate.as_view(), name="dataset-version-list"),
    path("api/dataset-versions/<int:pk>/", views.DatasetVersionDetail.as_view(), name="dataset-version-detail"),
    path("api/exports/", views.ExportListCreate.as_view(), name="export-list"),
    path("api/exports/<int:pk>/", views.ExportDetail.as_view(), name="export-detail"),
    path("api/exports/<int:pk>/download/", views.ExportDownload.as_view(), name="export-download"),
    path("curation/", views.curation_page, name="curation"),
]

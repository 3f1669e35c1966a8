"""URL map. Each app owns its own ``urls.py``; this file only mounts them."""
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from webapp.accounts.views import ThrottledLoginView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/", include("webapp.analysis.urls")),
    path("api/", include("webapp.review.urls")),
    path("api/", include("webapp.accounts.urls")),
    path("api/jobs/", include("webapp.jobs.urls")),
    path("api/dicom/", include("webapp.dicomnode.urls")),
    path("", include("webapp.studies.dicomweb.urls")),  # /dicomweb/... and WADO-URI at /wado
    path("", include("webapp.curation.urls")),  # /api/dataset-versions/, /api/exports/, /curation/
    path("", include("webapp.registry.urls")),  # /api/model-versions/, /registry/
    path("", include("webapp.retraining.urls")),  # /api/training-runs/, /api/reanalysis/
    path("", include("webapp.review.page_urls")),  # the worklist (/) and the viewer (/studies/<id>/)
    path("", include("webapp.studies.urls")),
]

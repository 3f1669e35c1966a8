"""DICOMweb routes (mounted at the site root: ``/dicomweb/...`` plus WADO-URI at ``/wado``)."""
from django.urls import path

from .qido import INSTANCES, SERIES_LEVEL, QidoView
from .stow import StudiesResource, StudyResource
from .wado import RetrieveFrames, RetrieveInstances, RetrieveMetadata, WadoUri

STUDY = "dicomweb/studies/<str:study>"
SERIES = f"{STUDY}/series/<str:series>"
INSTANCE = f"{SERIES}/instances/<str:instance>"

urlpatterns = [
    path("dicomweb/studies", StudiesResource.as_view(), name="qido-studies"),
    path("dicomweb/series", QidoView.as_view(level=SERIES_LEVEL), name="qido-all-series"),
    path("dicomweb/instances", QidoView.as_view(level=INSTANCES), name="qido-all-instances"),
    path(STUDY, StudyResource.as_view(), name="wado-study"),
    path(f"{STUDY}/metadata", RetrieveMetadata.as_view(), name="wado-study-metadata"),
    path(f"{STUDY}/series", QidoView.as_view(level=SERIES_LEVEL), name="qido-series"),
    path(f"{STUDY}/instances", QidoView.as_view(level=INSTANCES), name="qido-study-instances"),
    path(SERIES, RetrieveInstances.as_view(), name="wado-series"),
    path(f"{SERIES}/metadata", RetrieveMetadata.as_view(), name="wado-series-metadata"),
    path(f"{SERIES}/instances", QidoView.as_view(level=INSTANCES), name="qido-instances"),
    path(INSTANCE, RetrieveInstances.as_view(), name="wado-instance"),
    path(f"{INSTANCE}/metadata", RetrieveMetadata.as_view(), name="wado-instance-metadata"),
    path(f"{INSTANCE}/frames/<str:frames>", RetrieveFrames.as_view(), name="wado-frames"),
    path("wado", WadoUri.as_view(), name="wado-uri"),
]

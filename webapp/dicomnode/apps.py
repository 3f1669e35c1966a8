from django.apps import AppConfig


class DicomNodeConfig(AppConfig):
    name = "webapp.dicomnode"
    label = "dicomnode"
    verbose_name = "DICOM node"

    def ready(self) -> None:
        from . import signals  # noqa: F401  (connects the results-back trigger)

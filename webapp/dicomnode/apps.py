from django.apps import AppConfig


class DicomNodeConfig(AppConfig):
    name = "webapp.dicomnode"
    label = "dicomnode"
    verbose_name = "DICOM node"

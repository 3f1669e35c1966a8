from django.apps import AppConfig


class CurationConfig(AppConfig):
    name = "webapp.curation"
    label = "curation"

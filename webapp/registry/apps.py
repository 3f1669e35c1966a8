from django.apps import AppConfig
from django.conf import settings
from django.db.models.signals import post_migrate


def register_shipped_model(**kwargs) -> None:
    """After ``migrate``: the shipped bundle (``settings.LUNGSCOPE_MODEL``) becomes the registry's first, active
    version, so no read of the registry has to write it. Idempotent; a new shipped bundle (other weights) is added
    beside the old one and becomes active only where no version is."""
    if settings.LUNGSCOPE_REGISTER_SHIPPED_MODEL:
        from .services import ensure_default_model_version

        ensure_default_model_version()


class RegistryConfig(AppConfig):
    name = "webapp.registry"
    label = "registry"

    def ready(self) -> None:
        post_migrate.connect(register_shipped_model, sender=self, dispatch_uid="lungscope-shipped-model")

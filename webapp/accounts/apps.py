from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "webapp.accounts"
    label = "accounts"

    def ready(self) -> None:
        from .roles import ensure_role_groups

        post_migrate.connect(lambda **kwargs: ensure_role_groups(), dispatch_uid="lungscope-role-groups", weak=False)

from django.apps import AppConfig


class ReviewConfig(AppConfig):
    name = "webapp.review"
    label = "review"

    def ready(self) -> None:
        from . import worklist  # noqa: F401 (registers the receiver that keeps studies' AI columns current)

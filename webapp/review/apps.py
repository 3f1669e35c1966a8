from django.apps import AppConfig


class ReviewConfig(AppConfig):
    name = "webapp.review"
    label = "review"

    def ready(self) -> None:
        from webapp.analysis.signals import results_stored

        from .services import propose_ai_boxes

        results_stored.connect(propose_ai_boxes, dispatch_uid="lungscope-propose-ai-boxes")

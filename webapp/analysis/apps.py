from django.apps import AppConfig


def analyse_when_stable(sender, study_id: int, **kwargs) -> None:
    """Ingest's ``instances_received``: queue the study's automatic analysis (``tasks.study_received``)."""
    from .tasks import study_received

    study_received(study_id)


class AnalysisConfig(AppConfig):
    name = "webapp.analysis"
    label = "analysis"

    def ready(self) -> None:
        from webapp.studies.signals import instances_received

        from . import columns  # noqa: F401 (registers the receiver that keeps studies' AI columns current)

        instances_received.connect(analyse_when_stable, dispatch_uid="lungscope-analyse-when-stable")

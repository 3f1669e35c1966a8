"""The two pages of the review UI: the worklist and the viewer. Both are shells for the bundled frontend
(``frontend/`` built into ``static/viewer/``), which talks to the REST API; they only require a signed-in user."""
from __future__ import annotations

from django.contrib.auth.mixins import LoginRequiredMixin
from django.shortcuts import get_object_or_404
from django.views.generic import TemplateView

from webapp.studies.identity import patient_label
from webapp.studies.models import Study


class WorklistPage(LoginRequiredMixin, TemplateView):
    template_name = "review/worklist.html"


class ViewerPage(LoginRequiredMixin, TemplateView):
    template_name = "review/viewer.html"

    def get_context_data(self, **kwargs):
        study = get_object_or_404(Study.objects.select_related("patient"), pk=kwargs["study_id"])
        return super().get_context_data(study=study, patient_label=patient_label(self.request.user, study.patient),
                                        **kwargs)

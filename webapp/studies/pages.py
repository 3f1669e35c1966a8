"""Server-rendered pages: a plain study list at ``/`` until the review app's worklist takes the route over."""
from __future__ import annotations

from django.contrib.auth.mixins import LoginRequiredMixin
from django.db.models import Count
from django.views.generic import ListView

from webapp.accounts.roles import ANNOTATOR, CLINICIAN, has_role

from .models import Study


class StudyListView(LoginRequiredMixin, ListView):
    template_name = "studies/study_list.html"
    context_object_name = "studies"
    paginate_by = 50

    def get_queryset(self):
        return (Study.objects.select_related("patient")
                .annotate(series_count=Count("series", distinct=True), instance_count=Count("series__instances"))
                .order_by("-updated_at"))

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        user = self.request.user
        # Annotators label images; they do not need to know whose lungs they are looking at.
        context["mask_patient_names"] = has_role(user, ANNOTATOR) and not has_role(user, CLINICIAN)
        return context

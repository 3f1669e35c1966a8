"""Read-only job API: each user sees the jobs they started and the analyses of the studies they can see (every
signed-in user sees every study), so everyone gets the progress bars of automatic analyses; admins see all jobs."""
from __future__ import annotations

from django.db.models import Exists, OuterRef, Q, QuerySet
from rest_framework import generics

from webapp.accounts.roles import ADMIN, has_role

from .models import Job
from .serializers import JobSerializer


def visible_jobs(user) -> QuerySet[Job]:
    """Jobs ``user`` may follow: their own, and every job that analyses a study (analyses started automatically
    on ingest have no creator). Uploads, exports and training of others stay private: their parameters name files."""
    jobs = Job.objects.select_related("created_by")
    if has_role(user, ADMIN):
        return jobs
    # AnalysisRun, reached through its reverse relation: the analysis app sits above this one.
    runs = Job._meta.get_field("analysis_runs").related_model
    on_a_study = runs.objects.filter(job=OuterRef("pk"))
    return jobs.filter(Q(created_by=user) | Q(Exists(on_a_study)))


class VisibleJobsMixin:
    serializer_class = JobSerializer
    filterset_fields = ["kind", "status"]
    ordering_fields = ["created_at", "updated_at", "status"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the schema generator calls this with AnonymousUser
            return Job.objects.none()
        return visible_jobs(self.request.user)


class JobList(VisibleJobsMixin, generics.ListAPIView):
    pass


class JobDetail(VisibleJobsMixin, generics.RetrieveAPIView):
    pass

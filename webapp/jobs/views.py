"""Read-only job API: each user sees the jobs they started; admins see everyone's."""
from __future__ import annotations

from rest_framework import generics

from webapp.accounts.roles import ADMIN, has_role

from .models import Job
from .serializers import JobSerializer


class VisibleJobsMixin:
    serializer_class = JobSerializer
    filterset_fields = ["kind", "status"]
    ordering_fields = ["created_at", "updated_at", "status"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # the schema generator calls this with AnonymousUser
            return Job.objects.none()
        jobs = Job.objects.select_related("created_by")
        if has_role(self.request.user, ADMIN):
            return jobs
        return jobs.filter(created_by=self.request.user)


class JobList(VisibleJobsMixin, generics.ListAPIView):
    pass


class JobDetail(VisibleJobsMixin, generics.RetrieveAPIView):
    pass

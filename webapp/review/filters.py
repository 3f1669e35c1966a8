"""Query-string filters, search and ordering for the worklist, boxes and the audit log."""
from __future__ import annotations

import datetime as dt

import django_filters
from django.db.models import Exists, F, OuterRef, Q
from rest_framework.exceptions import ValidationError
from rest_framework.filters import OrderingFilter, SearchFilter

from webapp.analysis.models import AnalysisRun
from webapp.studies.identity import sees_patient_identity
from webapp.studies.models import Study

from .models import AuditEvent, Box


class StudyFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=Study.Status.choices)
    ai_label = django_filters.CharFilter(lookup_expr="iexact", help_text="Label of the latest succeeded AI run.")
    reviewer = django_filters.CharFilter(field_name="decision__decided_by__username",
                                         help_text="Username of the clinician who decided the diagnosis.")
    # A choice rather than a BooleanFilter, whose widget reads any other value as "no filter": ?outside=yes is a 400.
    outside = django_filters.TypedChoiceFilter(
        field_name="ai_outside", choices=[("true", "true"), ("false", "false")], coerce=lambda value: value == "true",
        help_text="true: studies the latest AI run found outside the model's experience (its result is unreliable).")

    class Meta:
        model = Study
        fields = ["status", "ai_label", "reviewer", "outside"]


class WorklistSearch(SearchFilter):
    """Patient identity is searchable only by those allowed to see it: otherwise search would reveal masked names."""

    identity_fields = ("patient__patient_id", "patient__name")

    def get_search_fields(self, view, request):
        fields = tuple(getattr(view, "search_fields", ()))
        if sees_patient_identity(request.user):
            return fields
        return tuple(f for f in fields if f not in self.identity_fields)


class NullsLastOrdering(OrderingFilter):
    """Rows without a value (no AI run yet) sort last either way, and the primary key breaks ties.

    The tie-breaker keeps LimitOffset pages stable; nulls last keeps "least certain first" from opening with
    studies that have no AI result at all. A term in ``view.ordering_leaders`` sorts by its leader first: "least
    certain first" opens with the studies outside the model's experience, whose result is the least trustworthy
    of all, and its reverse ends with them.
    """

    def filter_queryset(self, request, queryset, view):
        terms = self.get_ordering(request, queryset, view) or ()
        leaders = getattr(view, "ordering_leaders", {})
        terms = [key for t in terms for key in (*leaders.get(t, ()), t)]
        ordering = [F(t[1:]).desc(nulls_last=True) if t.startswith("-") else F(t).asc(nulls_last=True)
                    for t in terms]
        return queryset.order_by(*ordering, "-pk")


class BoxFilter(django_filters.FilterSet):
    status = django_filters.MultipleChoiceFilter(choices=Box.Status.choices,
                                                 help_text="Default: every status but deleted.")
    all_runs = django_filters.BooleanFilter(
        method="filter_all_runs",
        help_text="Default false: untouched AI proposals only from the study's latest succeeded analysis, so a "
                  "re-analysis does not stack two runs' boxes. Reviewed and human boxes always stay.")

    class Meta:
        model = Box
        fields = ["status", "sop_instance_uid", "provenance", "label", "analysis_run"]

    def filter_queryset(self, queryset):
        if not self.form.cleaned_data.get("status"):
            queryset = queryset.exclude(status=Box.Status.DELETED)
        if not self.form.cleaned_data.get("all_runs"):
            superseded = AnalysisRun.objects.filter(study=OuterRef("study"), status=AnalysisRun.Status.SUCCEEDED,
                                                    pk__gt=OuterRef("analysis_run"))
            queryset = queryset.exclude(Q(provenance=Box.Provenance.AI, status=Box.Status.PROPOSED)
                                        & Q(Exists(superseded)))
        return super().filter_queryset(queryset)

    def filter_all_runs(self, queryset, name, value):
        return queryset  # applied in filter_queryset, together with the latest-run rule


class UtcDateTimeFromToRangeFilter(django_filters.IsoDateTimeFromToRangeFilter):
    """ISO 8601 bounds converted to UTC before they reach the database: ISO allows UTC offsets up to +-23:59,
    PostgreSQL only +-15:59, so ``2020-01-01T00:00+21:00`` passed through as is would be a 500."""

    def filter(self, qs, value):
        if value:
            try:
                value = slice(*(bound and bound.astimezone(dt.UTC) for bound in (value.start, value.stop)))
            except OverflowError:
                raise ValidationError({self.field_name: "date out of range"}) from None
        return super().filter(qs, value)


class AuditEventFilter(django_filters.FilterSet):
    actor = django_filters.CharFilter(field_name="actor__username")
    created = UtcDateTimeFromToRangeFilter(field_name="created_at",
                                           help_text="created_after / created_before (ISO 8601)")

    class Meta:
        model = AuditEvent
        fields = ["study", "actor", "action", "object_type", "object_id", "created"]

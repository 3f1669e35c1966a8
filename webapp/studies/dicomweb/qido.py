"""QIDO-RS search (PS3.18 10.6) over the index tables, at study, series and instance level.

Matching follows PS3.4 C.2.2.2: single value (exact), wildcards ``*`` and ``?`` (case-insensitive for person
names), UID lists (``\\`` or ``,`` separated), date/time ranges (``20200101-20201231``, open ends allowed) and
universal matching (an empty value only asks for the attribute). ``limit``/``offset`` page through results
(a ``Warning`` header says when more remain), ``includefield`` adds attributes (``all`` for every indexed one).
Attributes lungscope does not index are ignored with a ``Warning`` header, as the standard allows; unknown
keywords are a 400. Filters are applied as ``pk IN (subquery)`` so matching across series never duplicates
rows or skews the related-instance counts.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Model, Prefetch, Q, QuerySet
from django.urls import reverse
from rest_framework import generics, serializers
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from webapp.api import Pagination

from ..models import Instance, Series, Study
from . import dicomjson
from .base import DicomWebView
from ..identity import IDENTITY_KEYWORDS, masked_json, sees_patient_identity

CONTROL_PARAMETERS = {"limit", "offset", "includefield", "fuzzymatching"}


@dataclass(frozen=True)
class Attribute:
    """A searchable / returnable attribute: its keyword, where the index keeps it, and how it matches."""

    keyword: str
    path: str  # ORM path from the level's model; for computed attributes the annotation name
    match: str = "text"  # uid | text | person | date | time | number | computed

    def under(self, prefix: str) -> Attribute:
        return Attribute(self.keyword, f"{prefix}__{self.path}", self.match)


STUDY = (
    Attribute("StudyInstanceUID", "study_instance_uid", "uid"),
    Attribute("StudyDate", "study_date", "date"),
    Attribute("StudyTime", "study_time", "time"),
    Attribute("AccessionNumber", "accession_number"),
    Attribute("StudyDescription", "study_description"),
    Attribute("ReferringPhysicianName", "referring_physician", "person"),
    Attribute("StudyID", "study_id"),
    Attribute("PatientID", "patient__patient_id"),
    Attribute("PatientName", "patient__name", "person"),
    Attribute("PatientBirthDate", "patient__birth_date", "date"),
    Attribute("PatientSex", "patient__sex"),
)
STUDY_COMPUTED = (
    Attribute("ModalitiesInStudy", "series__modality"),
    Attribute("NumberOfStudyRelatedSeries", "series_count", "computed"),
    Attribute("NumberOfStudyRelatedInstances", "instance_count", "computed"),
)
SERIES = (
    Attribute("SeriesInstanceUID", "series_instance_uid", "uid"),
    Attribute("Modality", "modality"),
    Attribute("SeriesNumber", "series_number", "number"),
    Attribute("SeriesDescription", "series_description"),
    Attribute("BodyPartExamined", "body_part_examined"),
    Attribute("FrameOfReferenceUID", "frame_of_reference_uid", "uid"),
)
SERIES_COMPUTED = (Attribute("NumberOfSeriesRelatedInstances", "instance_count", "computed"),)
INSTANCE = (
    Attribute("SOPInstanceUID", "sop_instance_uid", "uid"),
    Attribute("SOPClassUID", "sop_class_uid", "uid"),
    Attribute("InstanceNumber", "instance_number", "number"),
    Attribute("Rows", "rows", "number"),
    Attribute("Columns", "columns", "number"),
    Attribute("NumberOfFrames", "number_of_frames", "number"),
)


@dataclass(frozen=True)
class Level:
    """One QIDO-RS resource: the model searched, its attributes (own ones first) and the defaults returned."""

    model: type[Model]
    own: tuple[Attribute, ...]
    parents: tuple[Attribute, ...]
    defaults: frozenset[str]
    annotations: dict[str, Any] = field(default_factory=dict)
    related: tuple[str, ...] = ()

    @property
    def attributes(self) -> dict[str, Attribute]:
        return {a.keyword: a for a in self.parents + self.own}


STUDIES = Level(
    model=Study,
    own=STUDY + STUDY_COMPUTED,
    parents=(),
    defaults=frozenset(a.keyword for a in STUDY + STUDY_COMPUTED),
    annotations={"series_count": Count("series", distinct=True), "instance_count": Count("series__instances")},
    related=("patient",),
)
SERIES_LEVEL = Level(
    model=Series,
    own=SERIES + SERIES_COMPUTED,
    parents=tuple(a.under("study") for a in STUDY),
    defaults=frozenset(a.keyword for a in SERIES + SERIES_COMPUTED) | {"StudyInstanceUID"},
    annotations={"instance_count": Count("instances")},
    related=("study__patient",),
)
INSTANCES = Level(
    model=Instance,
    own=INSTANCE,
    parents=tuple(a.under("series") for a in SERIES) + tuple(a.under("series__study") for a in STUDY),
    defaults=frozenset(a.keyword for a in INSTANCE) | {"StudyInstanceUID", "SeriesInstanceUID", "Modality"},
    related=("series__study__patient",),
)


def _split(value: str, uid: bool) -> list[str]:
    return [v for v in re.split(r"[\\,]" if uid else r"\\", value) if v]


def _wildcard_regex(value: str) -> str:
    return "^" + "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in value) + "$"


def _range_q(path: str, value: str) -> Q:
    low, _, high = value.partition("-")
    q = Q()
    if low:
        q &= Q(**{f"{path}__gte": low})
    if high:
        # An upper time bound without fractions ("1200") must still include "120000.5": compare against a
        # suffix that sorts after every digit and the dot.
        q &= Q(**{f"{path}__lte": high + ("~" if len(high) < 8 and "." not in high else "")})
    return q


def match_q(attribute: Attribute, raw: str) -> Q:
    """The ORM condition for one query parameter (PS3.4 C.2.2.2 matching rules)."""
    if "\x00" in raw:  # no DICOM value holds NUL, and PostgreSQL refuses it in a query (a 500 otherwise)
        raise ValidationError({attribute.keyword: "a DICOM value cannot contain the NUL character"})
    if attribute.match == "uid":
        return Q(**{f"{attribute.path}__in": _split(raw, uid=True)})
    condition = Q()
    for value in _split(raw, uid=False):
        if attribute.match in ("date", "time") and "-" in value:
            condition |= _range_q(attribute.path, value)
        elif attribute.match == "number":
            try:
                condition |= Q(**{attribute.path: int(value)})
            except ValueError:
                raise ValidationError({attribute.keyword: f"{value!r} is not a number"}) from None
        elif "*" in value or "?" in value:
            lookup = "iregex" if attribute.match == "person" else "regex"
            condition |= Q(**{f"{attribute.path}__{lookup}": _wildcard_regex(value)})
        elif attribute.match == "person":
            condition |= Q(**{f"{attribute.path}__iexact": value})
        else:
            condition |= Q(**{attribute.path: value})
    return condition


class QidoPagination(Pagination):
    """QIDO's limit/offset; the body stays a bare DICOM JSON array (no envelope), more results signalled by a
    ``Warning`` header as PS3.18 10.6.3.3 describes."""

    default_limit = 1000
    max_limit = 1000

    def get_paginated_response(self, data):
        response = Response(data)
        if self.offset + self.limit < self.count:
            response["Warning"] = (f'299 lungscope "There are {self.count - self.offset - self.limit} additional '
                                   'results that can be requested"')
        return response


class QidoResultSerializer(serializers.BaseSerializer):
    """One result row as DICOM JSON: the requested attributes, read from the row by their ORM paths."""

    def to_representation(self, obj) -> dict:
        level: Level = self.context["level"]
        values = {keyword: self._value(obj, level.attributes[keyword]) for keyword in self.context["fields"]}
        request = self.context["request"]
        values["RetrieveURL"] = request.build_absolute_uri(retrieve_path(obj))
        row = dicomjson.dataset(values)
        return row if sees_patient_identity(request.user) else masked_json(row)

    @staticmethod
    def _value(obj, attribute: Attribute) -> Any:
        if attribute.keyword == "ModalitiesInStudy":
            return sorted({series.modality for series in obj.series.all() if series.modality})
        if attribute.match == "computed":
            return getattr(obj, attribute.path)
        value = obj
        for step in attribute.path.split("__"):
            value = getattr(value, step)
        return value


def retrieve_path(obj: Study | Series | Instance) -> str:
    if isinstance(obj, Study):
        return reverse("wado-study", args=[obj.study_instance_uid])
    if isinstance(obj, Series):
        return reverse("wado-series", args=[obj.study.study_instance_uid, obj.series_instance_uid])
    return reverse("wado-instance", args=[obj.series.study.study_instance_uid, obj.series.series_instance_uid,
                                          obj.sop_instance_uid])


class QidoView(DicomWebView, generics.ListAPIView):
    """``GET`` on a QIDO-RS resource; the URL conf picks the ``level`` and fixes the scope via URL kwargs."""

    level: Level = STUDIES
    serializer_class = QidoResultSerializer
    pagination_class = QidoPagination
    filter_backends: list = []
    scope_kwargs = {"study": "StudyInstanceUID", "series": "SeriesInstanceUID"}

    def get_queryset(self) -> QuerySet:
        level = self.level
        matching, self.ignored, self.withheld = Q(), [], []
        sees_identity = sees_patient_identity(self.request.user)
        for key in self.request.query_params:
            if key.lower() in CONTROL_PARAMETERS:
                continue
            keyword = dicomjson.keyword_of(key)
            if keyword is None:
                raise ValidationError({key: "not a DICOM attribute keyword or tag"})
            attribute = level.attributes.get(keyword)
            if attribute is None or attribute.match == "computed":
                self.ignored.append(keyword)
                continue
            if keyword in IDENTITY_KEYWORDS and not sees_identity:  # matching on it would confirm a masked value
                self.withheld.append(keyword)
                continue
            raw = self.request.query_params.get(key, "")
            if raw:
                matching &= match_q(attribute, raw)
        for kwarg, keyword in self.scope_kwargs.items():
            if kwarg in self.kwargs:
                matching &= Q(**{level.attributes[keyword].path: self.kwargs[kwarg]})
        queryset = level.model.objects.select_related(*level.related).annotate(**level.annotations)
        if matching:
            queryset = queryset.filter(pk__in=level.model.objects.filter(matching).values("pk"))
        if level is STUDIES:
            modalities = Prefetch("series", queryset=Series.objects.only("study_id", "modality"))
            queryset = queryset.prefetch_related(modalities)
        return queryset.order_by("pk")

    def get_serializer_context(self) -> dict:
        return {**super().get_serializer_context(), "level": self.level, "fields": self.fields()}

    def fields(self) -> list[str]:
        """Default attributes, plus the matching keys and ``includefield`` ones the index knows."""
        level, wanted = self.level, set(self.level.defaults)
        includes = [v for value in self.request.query_params.getlist("includefield") for v in value.split(",") if v]
        if "all" in includes:
            wanted |= set(level.attributes)
        requested = includes + [k for k in self.request.query_params if k.lower() not in CONTROL_PARAMETERS]
        for key in requested:
            keyword = dicomjson.keyword_of(key)
            if keyword in level.attributes:
                wanted.add(keyword)
            elif keyword and key != "all" and keyword not in self.ignored:
                self.ignored.append(keyword)
        return sorted(wanted)

    def list(self, request, *args, **kwargs):
        response = super().list(request, *args, **kwargs)
        notes = [response.get("Warning")]
        if self.ignored:
            notes.append(f'299 lungscope "not indexed, ignored: {", ".join(sorted(set(self.ignored)))}"')
        if self.withheld:
            notes.append(f'299 lungscope "patient identity is not searchable for your role, ignored: '
                         f'{", ".join(sorted(set(self.withheld)))}"')
        if any(notes[1:]):
            response["Warning"] = ", ".join(filter(None, notes))
        return response

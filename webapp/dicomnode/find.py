"""C-FIND (Study Root, STUDY and SERIES level) over the same index and with the same matching rules as QIDO-RS:
the attributes, their ORM paths and PS3.4 C.2.2.2 matching come from ``studies.dicomweb.qido``, so the two ways
of searching cannot drift apart. Attributes lungscope does not index are returned empty, as the standard allows.
"""
from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Q
from pydicom import Dataset
from rest_framework.exceptions import ValidationError

from webapp.studies.dicomweb.qido import SERIES_LEVEL, STUDIES, Level, QidoResultSerializer, match_q

LEVELS: dict[str, Level] = {"STUDY": STUDIES, "SERIES": SERIES_LEVEL}
UNIQUE_KEYS = {"STUDY": ("StudyInstanceUID",), "SERIES": ("StudyInstanceUID", "SeriesInstanceUID")}
SKIPPED = {"QueryRetrieveLevel", "SpecificCharacterSet"}


class FindError(ValueError):
    """A query this SCP cannot answer (unsupported level, unparseable value)."""


def find(identifier: Dataset) -> Iterator[Dataset]:
    """One response identifier per matching study or series, in index order."""
    level_name = str(identifier.get("QueryRetrieveLevel", "")).upper()
    level = LEVELS.get(level_name)
    if level is None:
        raise FindError(f"query level {level_name or 'none'} is not supported (STUDY or SERIES)")
    matching, requested = Q(), list(UNIQUE_KEYS[level_name])
    for element in identifier:
        keyword = element.keyword
        if not keyword or keyword in SKIPPED:
            continue
        requested.append(keyword)
        attribute = level.attributes.get(keyword)
        value = "" if element.value is None else str(element.value)
        if attribute is not None and attribute.match != "computed" and value:
            try:
                matching &= match_q(attribute, value)
            except ValidationError as exc:
                raise FindError(f"{keyword}: {exc.detail}") from None
    queryset = level.model.objects.select_related(*level.related).annotate(**level.annotations)
    if matching:
        queryset = queryset.filter(pk__in=level.model.objects.filter(matching).values("pk"))
    for obj in queryset.order_by("pk").iterator(chunk_size=200):
        answer = Dataset()
        answer.QueryRetrieveLevel = level_name
        for keyword in dict.fromkeys(requested):
            attribute = level.attributes.get(keyword)
            value = QidoResultSerializer._value(obj, attribute) if attribute else None
            setattr(answer, keyword, "" if value is None else value)
        yield answer

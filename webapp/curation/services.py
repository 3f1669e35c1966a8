"""Selecting reviewed studies and freezing them into a DatasetVersion.

The final label is always the clinician's ``Decision``; the AI's label is stored beside it only for agreement
statistics. Boxes survive when a human accepted, edited or drew them; rejected and deleted boxes and AI proposals
nobody looked at are left out but counted, so the summary says how much review went into the version.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from webapp.analysis.models import AnalysisRun
from webapp.core import audit
from webapp.review.geometry import spatial_order
from webapp.review.models import Box, Decision
from webapp.studies.models import Instance, Series, Study

from .models import DatasetItem, DatasetVersion

SURVIVING_PROVENANCE = (Box.Provenance.AI_ACCEPTED, Box.Provenance.AI_EDITED, Box.Provenance.HUMAN)


class SelectionError(ValueError):
    """Criteria that cannot be used, or that select nothing."""


@dataclass
class Criteria:
    reviewed_only: bool = True
    study_date_from: str = ""  # DICOM DA, inclusive
    study_date_to: str = ""
    reviewed_from: date | None = None  # decision last changed, inclusive
    reviewed_to: date | None = None
    labels: list[str] = field(default_factory=list)  # final (clinician) labels
    reviewers: list[str] = field(default_factory=list)  # usernames
    study_ids: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "reviewed_only": self.reviewed_only,
            "study_date_from": self.study_date_from,
            "study_date_to": self.study_date_to,
            "reviewed_from": self.reviewed_from.isoformat() if self.reviewed_from else "",
            "reviewed_to": self.reviewed_to.isoformat() if self.reviewed_to else "",
            "labels": sorted(self.labels),
            "reviewers": sorted(self.reviewers),
            "study_ids": sorted(self.study_ids),
        }


#: Criteria fields and the study lookups they filter on (an empty or unset field does not filter).
_CRITERIA_LOOKUPS = (
    ("study_date_from", "study_date__gte"),
    ("study_date_to", "study_date__lte"),
    ("reviewed_from", "decision__updated_at__date__gte"),
    ("reviewed_to", "decision__updated_at__date__lte"),
    ("labels", "decision__label__in"),
    ("reviewers", "decision__decided_by__username__in"),
    ("study_ids", "pk__in"),
)


def select_studies(criteria: Criteria) -> QuerySet[Study]:
    """Studies with a clinician decision that match the criteria (reviewed ones only unless told otherwise)."""
    qs = Study.objects.filter(decision__isnull=False)
    if criteria.reviewed_only:
        qs = qs.filter(decision__reviewed=True)
    for field_name, lookup in _CRITERIA_LOOKUPS:
        value = getattr(criteria, field_name)
        if value:
            qs = qs.filter(**{lookup: value})
    return qs.select_related("patient", "decision", "decision__decided_by").order_by("study_instance_uid")


def image_series(study: Study) -> Series | None:
    """The series the AI analysed last (boxes point into it), else the study's largest image series."""
    run = (AnalysisRun.objects.filter(study=study, status=AnalysisRun.Status.SUCCEEDED, series__isnull=False)
           .select_related("series").first())
    if run is not None:
        return run.series
    candidates = sorted(study.series.all(), key=lambda s: -s.instances.count())
    return candidates[0] if candidates else None


def spatial_instances(series: Series) -> list[Instance]:
    """The series' instances in the order the viewer stacks them (``review.geometry.spatial_order``)."""
    return spatial_order(series.instances.all())


def _box_json(box: Box) -> dict[str, Any]:
    provenance = box.provenance
    if provenance == Box.Provenance.AI and box.status == Box.Status.ACCEPTED:
        provenance = Box.Provenance.AI_ACCEPTED  # accepted AI box saved without its provenance updated
    return {"id": box.pk, "sop_instance_uid": box.sop_instance_uid, "x0": box.x0, "y0": box.y0, "x1": box.x1,
            "y1": box.y1, "label": box.label, "provenance": provenance, "score": box.score}


def freeze_study(study: Study) -> dict[str, Any]:
    """The frozen content of one study: what a DatasetItem stores."""
    decision: Decision = study.decision
    series = image_series(study)
    instances = spatial_instances(series) if series else []
    uids = [i.sop_instance_uid for i in instances]
    in_series = set(uids)
    kept: list[dict[str, Any]] = []
    excluded: Counter[str] = Counter({"rejected": 0, "deleted": 0, "unreviewed": 0, "outside_series": 0})
    for box in Box.objects.filter(study=study).order_by("pk"):
        if box.status in (Box.Status.REJECTED, Box.Status.DELETED):
            excluded[box.status] += 1
        elif box.provenance == Box.Provenance.AI and box.status != Box.Status.ACCEPTED:
            excluded["unreviewed"] += 1
        elif box.sop_instance_uid not in in_series:
            excluded["outside_series"] += 1
        else:
            kept.append(_box_json(box))
    run = AnalysisRun.objects.filter(study=study, status=AnalysisRun.Status.SUCCEEDED).first()
    return {
        "study_instance_uid": study.study_instance_uid,
        "series_instance_uid": series.series_instance_uid if series else "",
        "sop_instance_uids": uids,
        "patient_id": study.patient.patient_id,
        "study_date": study.study_date,
        "final_label": decision.label,
        "ai_label": run.label if run else "",
        "ai_opacity_percent": run.opacity_percent if run else None,
        "ai_outside": run.domain_outside if run else None,
        "reviewer": decision.decided_by.username if decision.decided_by else "",
        "boxes": kept,
        "excluded_boxes": dict(excluded),
    }


def fingerprint(items: list[dict[str, Any]]) -> str:
    """sha256 of the canonical JSON (sorted keys, no whitespace) of the items sorted by study UID."""
    canonical = json.dumps(sorted(items, key=lambda i: i["study_instance_uid"]), sort_keys=True,
                           separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def summarize(items: list[dict[str, Any]]) -> dict[str, Any]:
    per_class = Counter(i["final_label"] for i in items)
    per_provenance = Counter(b["provenance"] for i in items for b in i["boxes"])
    per_box_label = Counter(b["label"] for i in items for b in i["boxes"])
    excluded: Counter[str] = Counter()
    for item in items:
        excluded.update(item["excluded_boxes"])
    return {
        "studies": len(items),
        "per_class": dict(sorted(per_class.items())),
        "boxes": sum(len(i["boxes"]) for i in items),
        "boxes_per_provenance": {p: per_provenance.get(p, 0) for p in SURVIVING_PROVENANCE},
        "boxes_per_label": dict(sorted(per_box_label.items())),
        "boxes_excluded": dict(sorted(excluded.items())),
        "ai_agreement": sum(1 for i in items if i["ai_label"] and i["ai_label"].lower() == i["final_label"]),
        "reviewers": sorted({i["reviewer"] for i in items if i["reviewer"]}),
    }


def create_dataset_version(criteria: Criteria, name: str, user=None, description: str = "") -> DatasetVersion:
    """Freeze the selected studies into a new DatasetVersion (atomic: all items or nothing)."""
    studies = list(select_studies(criteria))
    if not studies:
        raise SelectionError("no study matches these criteria (only studies with a clinician decision qualify)")
    items = [freeze_study(s) for s in studies]
    by_uid = {s.study_instance_uid: s for s in studies}
    with transaction.atomic():
        version = DatasetVersion.objects.create(
            name=name, description=description, criteria=criteria.to_json(), summary=summarize(items),
            fingerprint=fingerprint(items), created_by=user,
        )
        DatasetItem.objects.bulk_create(
            DatasetItem(dataset_version=version, study=by_uid[i["study_instance_uid"]], **i) for i in items
        )
        audit.record(actor=user, action="dataset_version.create", obj=version, study_id=None, before=None,
                     after={"name": name, "fingerprint": version.fingerprint, "studies": len(items),
                            "criteria": version.criteria})
    return version

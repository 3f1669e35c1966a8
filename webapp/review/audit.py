"""The audit trail: every change to a diagnosis, a box or a user's roles, with the state before and after.

Events are written in the same transaction as the change they describe, so a change without its event (or an
event for a change that rolled back) cannot exist. Rows are append-only (model guards plus a PostgreSQL trigger).
"""
from __future__ import annotations

from typing import Any

from django.db import models, transaction

from .concurrency import Render, ensure_current, versioned_update
from .models import AuditEvent, Box, Decision

#: The fields that make up a row's reviewable state; timestamps live on the event itself.
SNAPSHOT_FIELDS: dict[type[models.Model], tuple[str, ...]] = {
    Box: ("sop_instance_uid", "x0", "y0", "x1", "y1", "patient_coords", "label", "score", "provenance", "status",
          "version", "analysis_run_id", "updated_by_id"),
    Decision: ("label", "comment", "reviewed", "version", "decided_by_id"),
}


def snapshot(obj: models.Model) -> dict[str, Any]:
    return {field: getattr(obj, field) for field in SNAPSHOT_FIELDS[type(obj)]}


def record(*, actor, action: str, obj: models.Model, study_id: int | None,
           before: dict[str, Any] | None, after: dict[str, Any] | None) -> AuditEvent:
    """Append one event; call inside the transaction that makes the change."""
    return AuditEvent.objects.create(
        actor=actor if actor is not None and actor.is_authenticated else None, action=action, study_id=study_id,
        object_type=obj._meta.model_name, object_id=str(obj.pk), before=before, after=after,
    )


def audited_create(obj: models.Model, *, actor, action: str) -> None:
    with transaction.atomic():
        obj.save()
        record(actor=actor, action=action, obj=obj, study_id=obj.study_id, before=None, after=snapshot(obj))


def audited_update(obj: models.Model, expected: int, changes: dict[str, Any], *, actor, action: str,
                   render: Render) -> None:
    """Apply a versioned change to a Box or Decision and record it, atomically (409 when ``expected`` is stale)."""
    ensure_current(obj, expected, render)
    before = snapshot(obj)
    with transaction.atomic():
        versioned_update(obj, expected, changes, render)
        record(actor=actor, action=action, obj=obj, study_id=obj.study_id, before=before, after=snapshot(obj))

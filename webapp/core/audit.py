"""The audit trail: every change to a diagnosis, a box or a user's roles, with the state before and after.

Events are written in the same transaction as the change they describe, so a change without its event (or an
event for a change that rolled back) cannot exist. Rows are append-only (model guards plus a PostgreSQL trigger).
The event model stays ``review.AuditEvent`` (its table, trigger and admin page are there); it is looked up by label
so that the apps that audit (accounts, curation, registry, review) need not import review.
"""
from __future__ import annotations

from typing import Any

from django.apps import apps
from django.db import models, transaction

from .concurrency import Render, ensure_current, versioned_update

#: The audit event model, by app label.
EVENT_MODEL = "review.AuditEvent"


def snapshot(obj: models.Model) -> dict[str, Any]:
    """The row's reviewable state: the fields its model lists in ``audit_fields`` (timestamps live on the event)."""
    return {field: getattr(obj, field) for field in type(obj).audit_fields}


def record(*, actor, action: str, obj: models.Model, study_id: int | None,
           before: dict[str, Any] | None, after: dict[str, Any] | None) -> models.Model:
    """Append one event; call inside the transaction that makes the change."""
    return apps.get_model(EVENT_MODEL).objects.create(
        actor=actor if actor is not None and actor.is_authenticated else None, action=action, study_id=study_id,
        object_type=obj._meta.model_name, object_id=str(obj.pk), before=before, after=after,
    )


def audited_create(obj: models.Model, *, actor, action: str) -> None:
    with transaction.atomic():
        obj.save()
        record(actor=actor, action=action, obj=obj, study_id=obj.study_id, before=None, after=snapshot(obj))


def audited_update(obj: models.Model, expected: int, changes: dict[str, Any], *, actor, action: str,
                   render: Render) -> None:
    """Apply a versioned change to a Box or Decision and record it, atomically (StaleVersion when ``expected`` is
    stale)."""
    ensure_current(obj, expected, render)
    before = snapshot(obj)
    with transaction.atomic():
        versioned_update(obj, expected, changes, render)
        record(actor=actor, action=action, obj=obj, study_id=obj.study_id, before=before, after=snapshot(obj))

"""Optimistic concurrency for every editable review row (boxes, decisions): one mechanism, used everywhere.

A client names the version it edited: ``version`` in the body or query string, or an ``If-Match`` ETag header
(responses carry ``ETag: "<version>"``). The write is a conditional ``UPDATE ... WHERE version = N`` that also bumps
the version, so of two concurrent saves exactly one matches a row; the other gets 409 with the current object, and
nobody's change is silently overwritten. Rows must have ``version`` and ``updated_at`` fields.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import models
from django.db.models import F
from django.utils import timezone
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

Render = Callable[[models.Model], dict[str, Any]]


class VersionRequired(Exception):
    """The client did not say which version it edited (``webapp.api.exception_handler``: 428)."""

    message = ("Send the version you edited (field or query parameter 'version', or an If-Match header), "
               "so that a newer change by someone else is not overwritten.")

    def __init__(self) -> None:
        super().__init__(self.message)


class StaleVersion(Exception):
    """The client edited an older version than the stored one (``webapp.api.exception_handler``: 409 whose body
    carries the current object, so the UI can show what changed and let the user redo theirs)."""

    code = "stale_version"

    def __init__(self, current: dict[str, Any] | None, expected: int, noun: str) -> None:
        if current is None:
            message = f"This {noun} no longer exists; your change was not saved."
        else:
            message = (f"Someone else saved this {noun} first (you edited version {expected}, the current one is "
                       f"{current.get('version')}). Your change was not saved: review the current {noun} and "
                       f"apply your change again.")
        super().__init__(message)
        self.message = message
        self.current = current


def etag(version: int) -> str:
    return f'"{version}"'


def _parse(value: Any, source: str) -> int:
    text = str(value).strip()
    if source == "If-Match":
        text = text.removeprefix("W/").strip('"')
    try:
        version = int(text)
    except ValueError:
        raise ValidationError({"version": [f"{source} must be an integer version, got {value!r}."]}) from None
    if version < 0:
        raise ValidationError({"version": [f"{source} must not be negative."]})
    return version


def requested_version(request: Request) -> int | None:
    """The version the client edited, from the body, the query string or If-Match; None when none was sent."""
    sent: dict[str, Any] = {}
    if isinstance(request.data, dict) and request.data.get("version") not in (None, ""):
        sent["version"] = request.data["version"]
    if request.query_params.get("version"):
        sent["query parameter version"] = request.query_params["version"]
    if request.headers.get("If-Match"):
        sent["If-Match"] = request.headers["If-Match"]
    versions = {_parse(value, source) for source, value in sent.items()}
    if len(versions) > 1:
        raise ValidationError({"version": ["The version in the body, query string and If-Match header disagree."]})
    return versions.pop() if versions else None


def required_version(request: Request) -> int:
    version = requested_version(request)
    if version is None:
        raise VersionRequired()
    return version


def stale(model: type[models.Model], pk: Any, expected: int, render: Render) -> StaleVersion:
    current = model._default_manager.filter(pk=pk).first()
    return StaleVersion(None if current is None else render(current), expected, str(model._meta.verbose_name))


def ensure_current(obj: models.Model, expected: int, render: Render) -> None:
    """Fail early (before any domain checks) when the client edited an older version than the one just read."""
    if obj.version != expected:
        raise StaleVersion(render(obj), expected, str(obj._meta.verbose_name))


def versioned_update(obj: models.Model, expected: int, changes: dict[str, Any], render: Render) -> None:
    """Apply ``changes`` only if the row is still at ``expected``; bump the version and refresh ``obj``."""
    model = type(obj)
    updated = model._default_manager.filter(pk=obj.pk, version=expected).update(
        version=F("version") + 1, updated_at=timezone.now(), **changes
    )
    if not updated:
        raise stale(model, obj.pk, expected, render)
    obj.refresh_from_db()


class ETagMixin:
    """Adds ``ETag`` to responses that carry a versioned object (the current one on a 409)."""

    def finalize_response(self, request, response, *args, **kwargs):
        data = response.data if isinstance(getattr(response, "data", None), dict) else {}
        version = data.get("version", (data.get("current") or {}).get("version"))
        if isinstance(version, int):
            response["ETag"] = etag(version)
        return super().finalize_response(request, response, *args, **kwargs)

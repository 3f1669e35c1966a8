"""API-wide pieces: the exception handler that keeps every bad request a 4xx with a readable reason, and the
default pagination."""
from __future__ import annotations

import logging

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler
from rest_framework.views import set_rollback

from webapp.core.concurrency import StaleVersion, VersionRequired
from webapp.core.errors import Refused

log = logging.getLogger(__name__)


class Pagination(LimitOffsetPagination):
    """``?limit=&offset=`` paging with a largest page: without one, ``limit=99999999999999999999`` reached
    PostgreSQL as a LIMIT beyond its 64-bit range (a 500), and any limit asked the server for a whole table at once.
    A larger ``limit`` gives the largest page, as DRF's ``max_limit`` does."""

    max_limit = 1000


def exception_handler(exc, context):
    """DRF's handler, plus the domain's exceptions mapped to HTTP here, in one place: a stale version is 409 with the
    current object, a missing version 428, a refused change 400, and Django's own ValidationError 400 instead of a
    500. A stored file that has gone from storage (removed with its study while a viewer was still loading it, or
    lost) is a 404 that says so, logged for the admin, not a 500."""
    if isinstance(exc, FileNotFoundError):
        log.error("stored file missing: %s", exc.filename or exc)
        exc = exceptions.NotFound("a stored file of this resource is missing from storage")
    if isinstance(exc, Refused):
        exc = exceptions.ValidationError({"detail": str(exc)})
    if isinstance(exc, StaleVersion | VersionRequired):
        set_rollback()  # as DRF does for the exceptions it handles
    if isinstance(exc, StaleVersion):
        # A dict body keeps the current object's numbers as numbers.
        return Response({"detail": exc.message, "code": exc.code, "current": exc.current},
                        status=status.HTTP_409_CONFLICT)
    if isinstance(exc, VersionRequired):
        return Response({"detail": exc.message}, status=status.HTTP_428_PRECONDITION_REQUIRED)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    return drf_exception_handler(exc, context)

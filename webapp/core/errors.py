"""The domain's refusals, free of HTTP: ``webapp.api.exception_handler`` maps them to status codes in one place."""
from __future__ import annotations


class Refused(Exception):
    """A change the rules do not allow in the object's present state (400 with the reason as ``detail``), e.g. an
    edit of a deleted box or a sign-off without a diagnosis."""

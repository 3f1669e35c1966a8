"""The site header's navigation, by role: everyone gets the worklist and the API docs, admins the curation and
model registry pages, staff users Django's admin. The role rule is ``roles.has_role``, as in the API."""
from __future__ import annotations

from typing import Any

from django import template
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.urls import reverse

from webapp.accounts.roles import ADMIN, has_role

register = template.Library()


#: Pages without a link of their own, and the link that stands for them.
SECTION_OF = {"viewer": "worklist"}


def nav_links(user: AbstractBaseUser | AnonymousUser) -> list[tuple[str, str, str]]:
    """(url name, path, text) of the pages ``user`` may open, in header order."""
    names = [("worklist", "Worklist")]
    if has_role(user, ADMIN):
        names += [("curation", "Curation"), ("registry", "Model registry")]
    if user.is_active and user.is_staff:  # Django's admin lets in staff users only
        names.append(("admin:index", "Django admin"))
    names.append(("api-docs", "API docs"))
    return [(name, reverse(name), text) for name, text in names]


@register.inclusion_tag("accounts/navigation.html", takes_context=True)
def site_navigation(context) -> dict[str, Any]:
    request = context["request"]
    current = request.resolver_match.view_name if request.resolver_match else ""
    current = SECTION_OF.get(current, current)
    return {"links": [{"href": href, "text": text, "current": name == current}
                      for name, href, text in nav_links(request.user)]}

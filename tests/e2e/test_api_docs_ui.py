"""``/api/docs/`` renders Swagger UI from this server alone: every request the browser makes stays on the site
(Swagger UI's script, styles and favicon come from drf-spectacular-sidecar's static files, not a CDN)."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from e2e_helpers import login

pytestmark = pytest.mark.django_db(transaction=True)


def test_api_docs_render_with_no_outside_requests(page, bare_world):
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    login(page, bare_world, "clin")
    page.goto(f"{bare_world.url}/api/docs/")
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "lungscope API" in page.inner_text(".swagger-ui .info .title")
    page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)  # the schema was fetched and laid out
    assert page.locator(".swagger-ui .opblock").count() > 20

    site = urlsplit(bare_world.url).netloc
    outside = [url for url in requested if urlsplit(url).scheme in ("http", "https") and urlsplit(url).netloc != site]
    assert outside == [], outside
    assert any(url.endswith("/api/schema/") for url in requested)
    assert any("/static/drf_spectacular_sidecar/swagger-ui-dist/" in url for url in requested)
    assert page.errors == []

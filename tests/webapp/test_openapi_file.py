"""frontend/openapi.yaml is the schema the frontend's types are generated from at build time (openapi-typescript, then
tsc): it must be what the server publishes now, or the viewer compiles against an API that no longer exists."""
from __future__ import annotations

from pathlib import Path

from django.core.management import call_command

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "frontend" / "openapi.yaml"


def test_committed_schema_is_what_the_server_generates(tmp_path):
    generated = tmp_path / "openapi.yaml"
    call_command("spectacular", "--file", str(generated))
    assert generated.read_text() == COMMITTED.read_text(), (
        "frontend/openapi.yaml is stale: run `make schema` and rebuild the frontend (`npm run build` fails where the "
        "client reads what the server no longer sends)")

"""A web process starts without the ML stack: loading the URL conf (every view, serializer and service module it
reaches, as ``manage.py check`` and each gunicorn worker do) must not import torch, scikit-learn or matplotlib.
They load inside the functions that need them (an analysis, on-demand maps, a training run), in the worker."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: ``inference.io`` (numpy + pydicom, no torch) may load: the curation exporters read volumes with it.
HEAVY = ("torch", "sklearn", "matplotlib", "scipy", "training")

PROBE = f"""
import json, sys
import django
django.setup()
from django.urls import get_resolver
get_resolver().url_patterns
from django.core.management import call_command
call_command("check", verbosity=0)
print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""


def test_loading_the_url_conf_imports_no_ml_library():
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings.production", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []

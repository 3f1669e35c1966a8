"""The inference engine installs and imports on its own: a wheel built from inference/pyproject.toml, put on a path
without the repository, imports every module and pulls in only its declared dependencies (no Django, no web app, no
training code), and the app's pinned requirements satisfy those declarations."""
from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "inference" / "pyproject.toml").read_text())["project"]

# Imports every module of the installed package, then lists the third-party distributions that were loaded.
PROBE = """
import importlib, json, pkgutil, sys
from importlib.metadata import packages_distributions
import inference
for mod in pkgutil.walk_packages(inference.__path__, "inference."):
    if not mod.name.endswith("__main__"):
        importlib.import_module(mod.name)
import inference.__main__  # the CLI's imports, without running it
owners = packages_distributions()
tops = {name.split(".")[0] for name in list(sys.modules)} - set(sys.stdlib_module_names)
print(json.dumps({"file": inference.__file__,
                  "dists": sorted({d.lower() for t in tops for d in owners.get(t, [])}),
                  "tops": sorted(tops)}))
"""


def declared() -> dict[str, Requirement]:
    reqs = [Requirement(r) for r in PROJECT["dependencies"]]
    reqs += [Requirement(r) for extra in PROJECT["optional-dependencies"].values() for r in extra]
    return {r.name.lower(): r for r in reqs}


def pinned() -> dict[str, Version]:
    lines = (REPO / "requirements.txt").read_text().splitlines()
    reqs = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    return {r.name.lower(): Version(next(iter(r.specifier)).version) for r in reqs}


def test_app_pins_satisfy_the_engine_declarations():
    pins = pinned()
    for name, req in declared().items():
        assert name in pins, f"{name} is an inference dependency but requirements.txt does not pin it"
        assert req.specifier.contains(pins[name]), f"requirements.txt pins {name}=={pins[name]}, outside {req}"


@pytest.mark.timeout(300)
def test_wheel_imports_alone_with_only_declared_dependencies(tmp_path):
    # Build from a copy: setuptools writes build/ and *.egg-info next to the sources.
    src = tmp_path / "src"
    shutil.copytree(REPO / "inference", src, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", tmp_path / "wheel", src],
                   check=True, capture_output=True, timeout=240)
    (wheel,) = (tmp_path / "wheel").glob("lungscope_inference-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "inference/schemas/analysis.schema.json" in names and "inference/lungs/classical.py" in names

    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", site, wheel],
                   check=True, capture_output=True, timeout=120)
    # -P: the working directory is not put on sys.path, so only the installed copy can be found.
    out = subprocess.run([sys.executable, "-P", "-c", PROBE], cwd=tmp_path, env={"PYTHONPATH": str(site)},
                         check=True, capture_output=True, text=True, timeout=240)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(probe["file"]).is_relative_to(site)
    assert not {"django", "webapp", "training", "rest_framework", "celery"} & set(probe["tops"])


def test_every_third_party_import_is_declared():
    """Each distribution the engine's own modules import (lazily or not) is a declared dependency or extra."""
    owners = packages_distributions()
    tops: set[str] = set()
    for path in (REPO / "inference").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                tops |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops.add(node.module.split(".")[0])
    third_party = tops - set(sys.stdlib_module_names) - {"inference", "__future__"}
    assert {"torch", "numpy", "pydicom"} <= third_party  # the scan sees the engine's imports
    dists = {d.lower() for top in third_party for d in owners.get(top, [top])}
    undeclared = dists - set(declared())
    assert not undeclared, f"inference imports {undeclared} without declaring them in inference/pyproject.toml"

"""``make_demo``: balanced phantom studies ingested with their ground truth, analysed in-process with --sync."""
from __future__ import annotations

import io

import pytest
import torch
from django.core.management import CommandError, call_command

from inference.bundle import save_bundle
from inference.classifier import MultiScaleVGG
from webapp.analysis.models import AnalysisRun
from webapp.studies.models import Instance, Study


def make_demo(*args: str) -> str:
    out = io.StringIO()
    call_command("make_demo", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def tiny_bundle(tmp_path, settings):
    torch.manual_seed(0)
    settings.LUNGSCOPE_MODEL = str(save_bundle(MultiScaleVGG(num_classes=3, width=0.125), tmp_path / "tiny",
                                               {"name": "tiny", "version": "t1", "classes": ["NP", "CAP", "COVID"]}))


def test_sync_demo_ingests_balanced_labelled_studies_and_analyses_them(transactional_db, storage_dir, tiny_bundle):
    output = make_demo("--studies", "3", "--size", "96", "--slices", "8", "--seed", "5", "--sync")
    studies = list(Study.objects.order_by("pk"))
    assert [s.source_label for s in studies] == ["NP", "CAP", "COVID"]
    assert all(s.status == Study.Status.AI_DONE for s in studies)
    assert Instance.objects.count() == 3 * 8
    runs = AnalysisRun.objects.all()
    assert runs.count() == 3 and all(r.status == AnalysisRun.Status.SUCCEEDED for r in runs)
    assert "[3/3] COVID" in output and "truth COVID" in output and "3 phantom studies ready" in output

    assert "nothing to do" in make_demo("--studies", "3", "--if-empty")
    assert Study.objects.count() == 3


def test_no_analyze_only_ingests(db, storage_dir):
    output = make_demo("--studies", "2", "--size", "64", "--slices", "4", "--no-analyze")
    assert Study.objects.count() == 2 and not AnalysisRun.objects.exists()
    assert "[2/2] CAP" in output and "analysis" not in output


def test_bad_arguments_are_refused(db):
    with pytest.raises(CommandError, match="--studies >= 1"):
        make_demo("--studies", "0")

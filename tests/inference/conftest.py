"""Fixtures for the inference tests: a tiny random bundle and small phantom studies (no Django, no database)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inference.bundle import save_bundle
from inference.classifier import MultiScaleVGG

CLASSES = ["NP", "CAP", "COVID"]

# The 2-core box is shared with other test runs: one intra-op thread per process avoids OpenMP threads spinning
# against each other (four times slower than one thread when the machine is oversubscribed).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight width-0.125 bundle: the pipeline's behaviour, not a trained model's accuracy, is under test."""
    torch.manual_seed(0)
    return save_bundle(MultiScaleVGG(len(CLASSES), width=0.125), tmp_path_factory.mktemp("bundle") / "tiny",
                       {"name": "tiny", "version": "0.0.1", "classes": CLASSES})


@pytest.fixture(scope="session")
def phantom_covid():
    from training.phantom import generate_study

    return generate_study(3, "COVID", size=128, n_slices=32)

"""The web app's retraining entry point on a tiny training-ready export: a loadable bundle, and a clean cancel."""
import pytest
import torch

from inference.bundle import load_bundle
from training.datasets import PrepConfig, toy_studies, write_export_study
from training.retrain import RetrainCancelled, RetrainConfig, retrain
from training.train import TrainConfig


@pytest.fixture
def export(tmp_path):
    torch.set_num_threads(1)
    root = tmp_path / "export"
    for i, record in enumerate(toy_studies(12, seed=4, size=32, n_slices=2)):
        write_export_study(root, f"study{i}", record.array, record.label, patient_id=f"P{i}",
                           lung_mask=record.lung_mask if i % 2 else None)
    return root


def _config(tmp_path, **kw) -> RetrainConfig:
    return RetrainConfig(out_dir=tmp_path / "bundles" / "r1", width=0.125, prep=PrepConfig(size=32),
                         test_fraction=0.25, val_fraction=0.25, work_dir=tmp_path / "work",
                         train=TrainConfig(iterations=16, batch_size=8, val_every=8, log_every=4, progress_bar=False),
                         **kw)


def test_retrain_writes_a_loadable_bundle_with_held_out_metrics(export, tmp_path):
    seen = []
    result = retrain(export, _config(tmp_path), progress=seen.append)
    bundle = load_bundle(result.bundle_dir, device="cpu", expected_classes=["NP", "CAP", "COVID"])
    assert bundle.meta["input_size"] == [32, 32] and bundle.model.width == 0.125
    assert len(bundle.meta["training_data_fingerprint"]) == 64
    held = bundle.meta["metrics"]["held_out"]
    assert 0.0 <= held["study"]["accuracy"] <= 1.0 and bundle.meta["metrics"]["held_out_studies"] == 3
    assert result.metrics["slice"]["joint"]["n"] > 0
    assert result.log_path.is_file() and seen and seen[-1]["iter"] == 16
    # a second run from that bundle (fine-tuning) works too and must not overwrite it
    second = _config(tmp_path, base_bundle=result.bundle_dir)
    second.out_dir, second.work_dir = tmp_path / "bundles" / "r2", tmp_path / "work2"
    again = retrain(export, second)
    assert load_bundle(again.bundle_dir, device="cpu").meta["training"]["base_bundle"] == str(result.bundle_dir)


def test_should_stop_cancels_without_leaving_a_bundle(export, tmp_path):
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] >= 3

    config = _config(tmp_path)
    with pytest.raises(RetrainCancelled):
        retrain(export, config, should_stop=stop)
    assert calls["n"] == 3
    assert not config.out_dir.exists()
    assert not config.out_dir.parent.exists() or not any(config.out_dir.parent.iterdir())

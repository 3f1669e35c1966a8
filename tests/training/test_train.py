"""The trainer: a tiny model overfits a tiny set, resumes bit-identically, cancels cleanly, logs what the app reads."""
import json

import pytest
import torch

from training.augment import AugmentConfig
from training.datasets import TASKS, PrepConfig, build_slice_set, toy_studies
from inference.classifier import MultiScaleVGG
from training.train import TrainConfig, make_model, predict, train

NO_AUG = AugmentConfig(crop_scale=(1.0, 1.0), rotation_deg=0.0, hflip_p=0.0, contrast=(1.0, 1.0))


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    return build_slice_set(toy_studies(6, seed=0, size=32, n_slices=2), TASKS["3way"], PrepConfig(size=32))


def _cfg(**kw) -> TrainConfig:
    base = dict(iterations=60, batch_size=8, lr=3e-3, val_every=20, patience=1000, log_every=10, seed=0,
                progress_bar=False)
    return TrainConfig(**{**base, **kw})


def test_tiny_model_overfits_tiny_set(tiny):
    torch.manual_seed(0)
    model = make_model("MultiScaleVGG", 3, width=0.125)
    before = (predict(model, tiny.images)["joint"].argmax(1) == tiny.labels.numpy()).mean()
    result = train(model, tiny, tiny, _cfg(augment=NO_AUG))
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.5 * losses[0]
    after = (predict(result.model, tiny.images)["joint"].argmax(1) == tiny.labels.numpy()).mean()
    assert after >= 0.9 and after > before
    assert [h["stage"] for h in result.history][0] == "scales" and result.history[-1]["stage"] == "joint"


def test_resnet_baseline_trains_in_one_stage(tiny):
    torch.manual_seed(0)
    result = train(make_model("resnet18", 3, width=0.125), tiny, None, _cfg(iterations=20, augment=NO_AUG))
    assert {h["stage"] for h in result.history} == {"joint"} and result.iterations == 20


def test_resume_is_bit_identical_to_uninterrupted_run(tiny, tmp_path):
    cfg = _cfg(iterations=30, val_every=10)
    torch.manual_seed(1)
    full = train(make_model("MultiScaleVGG", 3, 0.125), tiny, tiny, cfg, out_dir=tmp_path / "a").model
    calls = {"n": 0}

    def stop_after_12() -> bool:  # crosses the stage boundary on resume (stage 1 ends at 15)
        calls["n"] += 1
        return calls["n"] >= 12

    torch.manual_seed(1)
    first = train(make_model("MultiScaleVGG", 3, 0.125), tiny, tiny, cfg, out_dir=tmp_path / "b",
                  should_stop=stop_after_12)
    assert first.stopped and first.iterations == 12
    torch.manual_seed(99)  # a different fresh init: everything must come from the checkpoint
    resumed = train(make_model("MultiScaleVGG", 3, 0.125), tiny, tiny, cfg, out_dir=tmp_path / "b", resume=True)
    assert resumed.iterations == 30 and not resumed.stopped
    a, b = full.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_log_lines_and_progress_callback(tiny, tmp_path):
    seen = []
    train(make_model("MultiScaleVGG", 3, 0.125), tiny, tiny, _cfg(iterations=20, val_every=10), out_dir=tmp_path,
          progress=seen.append)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == seen and lines[-1]["iter"] == 20
    assert set(lines[0]) == {"iter", "stage", "loss", "val_loss", "val_acc", "lr", "time_s", "eta_s"}
    assert any(x["val_acc"] is not None for x in lines) and (tmp_path / "best.pt").is_file()


def test_early_stopping_ends_a_stage(tiny):
    result = train(make_model("MultiScaleVGG", 3, 0.125), tiny, tiny,
                   _cfg(iterations=400, val_every=5, patience=5, lr=1e-6))
    assert result.iterations == 400
    assert len(result.history) < 400 / 10  # whole stretches skipped, not run


def test_model_starts_from_a_bundles_backbone_with_new_heads(tmp_path) -> None:
    from inference.bundle import load_bundle, save_bundle

    torch.manual_seed(3)
    source = MultiScaleVGG(3, width=0.125)
    with torch.no_grad():  # BatchNorm statistics travel with the backbone
        source.stages[0][1].running_mean.uniform_(0.1, 0.2)
    path = save_bundle(source, tmp_path / "source", {"name": "source", "version": "0.0.1",
                                                     "classes": ["NP", "CAP", "COVID"]})
    model = make_model("MultiScaleVGG", 2, width=0.125, init=str(path))
    stored = load_bundle(str(path), device="cpu").model  # as the bundle keeps them (fp16 weights)
    for ours, theirs in zip(model.stages.state_dict().values(), stored.stages.state_dict().values()):
        torch.testing.assert_close(ours, theirs)
    assert float(model.stages[0][1].running_mean.min()) >= 0.09
    assert all(h.out_channels == 2 and float(h.weight.std()) < 0.05 for h in model.heads)
    with pytest.raises(ValueError, match="width"):
        make_model("MultiScaleVGG", 2, width=0.25, init=str(path))
    with pytest.raises(ValueError, match="MultiScaleVGG"):
        make_model("resnet18", 2, width=0.125, init=str(path))

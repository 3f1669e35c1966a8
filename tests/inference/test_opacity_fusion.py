"""The study decision with the HU opacity (inference.opacity_fusion): its arithmetic, its bundle entry, and the
pipeline deciding with it on HU studies only, the classifier's own vector kept beside the decision."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from inference.bundle import BundleError, load_bundle, resolve_path
from inference.io import Volume
from inference.opacity_fusion import features, fuse
from inference.pipeline import analyze
from training.simulate.backgrounds import background, simulate

CLASSES = ["NP", "CAP", "COVID"]
REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "inference" / "schemas" / "analysis.schema.json").read_text())


def _params(coef: list[list[float]], intercept: list[float]) -> dict:
    return {"classes": CLASSES, "coef": coef, "intercept": intercept}


def test_the_fused_vector_is_the_softmax_of_the_fitted_scores() -> None:
    study = np.array([0.5, 0.3, 0.2])
    coef = [[1.0, 0, 0, -2.0], [0, 1.0, 0, 0.5], [0, 0, 1.0, 1.0]]
    intercept = [3.0, -1.0, 0.5]
    x = np.array([np.log(0.5), np.log(0.3), np.log(0.2), np.log1p(12.0)])
    scores = np.array(coef) @ x + np.array(intercept)
    expected = np.exp(scores) / np.exp(scores).sum()
    fused = fuse(study, CLASSES, {"percent": 12.0, "high_percent": 4.0}, _params(coef, intercept))
    np.testing.assert_allclose(fused, expected, rtol=1e-6)
    np.testing.assert_allclose(features(study, 12.0)[0], x)
    with pytest.raises(ValueError, match="classes"):
        fuse(study, ["NP", "COVID", "CAP"], {"percent": 1.0, "high_percent": 0.0}, _params(coef, intercept))


def _bundle_with(tmp_path: Path, fusion) -> Path:
    bundle = tmp_path / "bundle"
    shutil.copytree(resolve_path("default"), bundle)
    meta = json.loads((bundle / "model.json").read_text())
    meta.pop("opacity_fusion", None)
    if fusion is not None:
        meta["opacity_fusion"] = fusion
    (bundle / "model.json").write_text(json.dumps(meta))
    return bundle


@pytest.mark.parametrize("fusion", [
    {"classes": ["NP", "COVID"], "coef": [[0] * 4] * 3, "intercept": [0, 0, 0]},
    _params([[0] * 5] * 3, [0, 0, 0]),
    _params([[0] * 4] * 3, [0, 0]),
    _params([[0] * 4, [0] * 4, [0, 0, 0, float("nan")]], [0, 0, 0]),
    _params([["a"] * 4] * 3, [0, 0, 0]),
    {**_params([[0] * 4] * 3, [0, 0, 0]), "features": ["log_probability", "log1p_opacity_percent", "age"]},
    [1, 2, 3],
])
def test_a_bundle_with_a_malformed_fusion_is_refused(tmp_path, fusion) -> None:
    with pytest.raises(BundleError, match="opacity_fusion"):
        load_bundle(_bundle_with(tmp_path, fusion), device="cpu")


#: A fusion that reads the opacity only: NP while PO is under 5 %, COVID above it (NP - COVID = 20 (log 6 - log(1 + PO))).
BY_OPACITY = _params([[0, 0, 0, -10.0], [0] * 4, [0, 0, 0, 10.0]], [20.0 * np.log1p(5.0), 0.0, 0.0])


@pytest.fixture(scope="module")
def studies() -> dict[str, Volume]:
    """A healthy and an extensively diseased study on a phantom patient no model trained on."""
    out = {}
    for label, extent in (("NP", None), ("COVID", 0.4)):
        sample, _ = simulate(np.random.default_rng(20261207), background("phantom:977101"), label, extent=extent)
        out[label] = Volume(array=sample.hu.astype(np.float32), kind="nifti", is_hu=True, spacing_mm=sample.spacing_mm)
    return out


def test_the_pipeline_decides_with_the_opacity_and_keeps_the_classifiers_vector(tmp_path, studies) -> None:
    fused_bundle = load_bundle(_bundle_with(tmp_path, BY_OPACITY), device="cpu")
    plain_bundle = load_bundle(_bundle_with(tmp_path / "plain", None), device="cpu")
    labels = {}
    for label, volume in studies.items():
        fused, plain = (analyze(volume, b, saliency="none") for b in (fused_bundle, plain_bundle))
        labels[label] = fused.label
        assert fused.classifier_probabilities == plain.probabilities and plain.classifier_probabilities is None
        classifier = np.array([plain.probabilities[c] for c in CLASSES])
        expected = fuse(classifier, CLASSES, fused.opacity, BY_OPACITY)
        np.testing.assert_allclose([fused.probabilities[c] for c in CLASSES], expected, atol=1e-5)
        assert fused.label == ("NP" if fused.opacity["percent"] < 5.0 else "COVID")
        doc = fused.to_json()
        jsonschema.validate(doc, SCHEMA)
        assert doc["prediction"]["classifier_probabilities"] == plain.probabilities
        assert "classifier_probabilities" not in plain.to_json()["prediction"]
    # the fusion followed the measure both ways on these two studies
    assert labels == {"NP": "NP", "COVID": "COVID"}


def test_images_without_hu_keep_the_classifiers_decision(tmp_path, studies) -> None:
    hu = studies["COVID"].array
    grey = np.clip((hu + 1350.0) / 1500.0 * 255.0, 0, 255).round().astype(np.float32)
    volume = Volume(array=grey, kind="images", is_hu=False)
    fused = analyze(volume, load_bundle(_bundle_with(tmp_path, BY_OPACITY), device="cpu"), saliency="none")
    plain = analyze(volume, load_bundle(_bundle_with(tmp_path / "plain", None), device="cpu"), saliency="none")
    assert fused.opacity is None and fused.classifier_probabilities is None
    assert fused.probabilities == plain.probabilities and fused.label == plain.label

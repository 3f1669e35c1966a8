"""The lungscope.analysis/2 side of an analysis in the web app: opacity and the domain verdict stored on the run,
its slices and the study's worklist columns, served by the API, and the opacity labels as a colour PNG for any lung
slice (from the slice's maps, the run's stored labels, or measured again on the run's lungs for older runs).

The analysis runs for real (the pipeline, a tiny random bundle) on a COVID phantom, whose lesions are opacities.
"""
from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.files.storage import default_storage
from PIL import Image

from test_analysis import SIZE, SLICES, ingest_phantom, post_analyze, run_in_process
from webapp.analysis import maps
from webapp.analysis.models import AnalysisRun, SliceResult

pytestmark = pytest.mark.django_db


@pytest.fixture
def analysed(storage_dir, tiny_bundle, tmp_path, settings, clinician):
    settings.LUNGSCOPE_SALIENCY = "positive"  # the tiny bundle calls every slice COVID: every lung slice gets maps
    study = ingest_phantom(tmp_path)
    return study, run_in_process(post_analyze(clinician, study))


def test_the_run_its_slices_and_the_study_store_opacity_and_the_domain_verdict(analysed, clinician):
    study, run = analysed
    doc = run.result
    assert doc["schema"] == "lungscope.analysis/2"
    assert (run.opacity_percent, run.high_opacity_percent) == (doc["opacity"]["percent"],
                                                               doc["opacity"]["high_percent"])
    assert run.opacity_percent > 0, "a COVID phantom's lesions are opacities"
    domain = doc["domain"]
    assert (run.domain_score, run.domain_outside) == ((domain["score"], domain["outside"]) if domain else (None, None))
    assert {s.index: s.opacity_px for s in run.slices.all()} == {s["index"]: s["opacity_px"] for s in doc["slices"]}
    study.refresh_from_db()
    assert (study.opacity_percent, study.ai_outside) == (run.opacity_percent, bool(domain and domain["outside"]))

    body = clinician.get(f"/api/studies/{study.pk}/analysis/").json()
    assert body["opacity"] == doc["opacity"] and set(body["opacity"]["per_lung"]) == {"left", "right"}
    assert body["domain"] == domain and body["calibration"] == doc["model"].get("calibration")
    assert body["classifier_probabilities"] == doc["prediction"].get("classifier_probabilities")
    assert (body["opacity_percent"], body["domain_outside"]) == (run.opacity_percent, run.domain_outside)
    assert [s["opacity_px"] for s in body["slices"]] == [s["opacity_px"] for s in doc["slices"]]

    # The run's whole label volume is kept, and each slice's maps file holds that slice's labels.
    labels = stored_labels(run)
    assert labels.shape == (SLICES, SIZE, SIZE) and labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, 1, 2}
    for s in run.slices.all():
        assert s.maps, "every lung slice got maps"
        with default_storage.open(s.maps.name, "rb") as fh, np.load(io.BytesIO(fh.read())) as npz:
            assert np.array_equal(npz["opacity"], labels[s.index])
        assert s.opacity_px == int((labels[s.index] > 0).sum())


def stored_labels(run: AnalysisRun) -> np.ndarray:
    """The run's opacity label volume as stored beside its maps."""
    return np.stack([maps.load_opacity_slice(run.pk, z) for z in range(SLICES)])


def png_labels(response) -> np.ndarray:
    """The label of each pixel of an opacity PNG, read back through its colours (-1: a colour that is no label)."""
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "image/png"
    rgba = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGBA"))
    out = np.full(rgba.shape[:2], -1)
    out[rgba[..., 3] == 0] = 0
    for label, colour in maps.OPACITY_COLOURS.items():
        out[(rgba == colour).all(axis=2)] = label
    return out


def test_the_opacity_png_of_any_lung_slice(analysed, annotator):
    study, run = analysed
    labels = stored_labels(run)
    index = max(run.slices.all(), key=lambda s: s.opacity_px).index
    url = f"/api/analysis-runs/{run.pk}/slices/{{}}/maps/opacity.png"
    response = annotator.get(url.format(index))
    image = Image.open(io.BytesIO(response.content))
    assert (image.mode, image.size) == ("RGBA", (SIZE, SIZE))
    assert np.array_equal(png_labels(response), labels[index])
    assert float(response["X-Map-Max"]) == labels[index].max() > 0
    assert maps.OPACITY_COLOURS[1][:3] != maps.OPACITY_COLOURS[2][:3]  # GGO and consolidation told apart

    # A slice without maps, of a run whose model is gone: the saliency cannot be made (410), the opacity can (it is
    # a measurement in HU, not the model's), from the run's stored labels.
    SliceResult.objects.filter(run=run, index=index).update(maps="")
    AnalysisRun.objects.filter(pk=run.pk).update(model_sha256="0" * 64)
    assert annotator.get(url.format(index).replace("opacity", "joint")).status_code == 410
    assert np.array_equal(png_labels(annotator.get(url.format(index))), labels[index])

    # A run stored before the labels were kept (schema /1): measured again on the run's lungs and HU, and kept.
    default_storage.delete(maps.opacity_mask_name(run.pk))
    assert np.array_equal(png_labels(annotator.get(url.format(index))), labels[index])
    assert np.array_equal(maps.load_opacity_slice(run.pk, index), labels[index])

    missing = annotator.get(url.format(SLICES + 3), HTTP_ACCEPT="image/png")
    assert missing.status_code == 404 and "has no slice" in missing.json()["detail"]

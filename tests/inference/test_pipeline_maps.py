"""The maps a study's analysis returns: every one is zero outside the slice's lung mask and carries signal inside;
the joint and IG maps are the paper's smoothed magnitudes of the engine's attributions."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from inference.bundle import BundleError, load_bundle
from inference.io import Volume
from inference.boxes import smoothed_magnitude
from inference.pipeline import analyze, model_input, saliency_engine, slice_maps


def test_maps_stay_inside_the_lungs(tiny_bundle: Path, phantom_covid) -> None:
    volume = Volume(array=phantom_covid.hu.astype(np.float32), kind="nifti", is_hu=True, spacing_mm=(5.0, 2.5, 2.5))
    lungs = phantom_covid.lung_mask.astype(bool)
    bundle = load_bundle(str(tiny_bundle), device="cpu")
    result = analyze(volume, bundle, saliency="all", lungs=lungs)
    assert len(result.maps) >= 3
    for index, maps in list(result.maps.items())[:3]:
        outside = ~lungs[index]
        for m in (maps.joint, *maps.ig, *maps.cams):
            assert not np.any(m[outside]), "a map has values outside the lungs"
        # a scale's IG flows only through its max-pooled location's receptive field, which may lie outside the lungs
        # (then that map, and the joint product, are zero there); the CAMs always cover the lungs
        assert all(np.any(c[lungs[index]]) for c in maps.cams)
        assert any(np.any(m[lungs[index]]) for m in maps.ig)
        assert float(np.abs(maps.joint).max()) <= 1.0 + 1e-6  # scaled per scale, not a vanishing raw product
    index = next(iter(result.maps))
    again = slice_maps(volume, bundle, index, lungs)  # the viewer's on-demand maps follow the same rule
    assert not any(np.any(m[~lungs[index]]) for m in (again.joint, *again.ig, *again.cams))
    # the joint and IG maps are |IG| smoothed in the model's grid (inside its lung crop), mapped back: non-negative
    x, geometry = model_input(volume, bundle, index, lungs)
    raw = saliency_engine(bundle).attribute(torch.from_numpy(x)[None, None], bundle.classes.index(again.target))
    lung_in = geometry.mask_to_output(lungs[index])
    for shown, ig in zip(again.ig, raw.ig):
        assert shown.min() >= 0
        expected = geometry.map_to_original(smoothed_magnitude(np.asarray(ig) * lung_in)) * lungs[index]
        np.testing.assert_allclose(shown, expected, atol=1e-6 * max(1e-30, float(expected.max())))


def test_the_joint_map_is_the_product_of_the_scales_smoothed_magnitudes(phantom_covid) -> None:
    """The shipped model on a phantom COVID-19 slice: the joint map shown (and thresholded for boxes) is the product of
    each scale's |IG| smoothed by the 5x5 Gaussian (each at its peak), smoothed once more; not the smoothed raw
    product, whose maximum sat where the three speckled maps happened to peak on one pixel."""
    volume = Volume(array=phantom_covid.hu.astype(np.float32), kind="nifti", is_hu=True, spacing_mm=(5.0, 2.5, 2.5))
    lungs = phantom_covid.lung_mask.astype(bool)
    bundle = load_bundle("default", device="cpu")
    index = int(np.argmax(phantom_covid.lesion_mask.sum(axis=(1, 2))))
    maps = slice_maps(volume, bundle, index, lungs)
    x, geometry = model_input(volume, bundle, index, lungs)
    raw = saliency_engine(bundle).attribute(torch.from_numpy(x)[None, None], bundle.classes.index(maps.target))
    lung_in = geometry.mask_to_output(lungs[index])
    smoothed = [smoothed_magnitude(np.asarray(ig) * lung_in) for ig in raw.ig]
    assert all(m.max() > 0 for m in smoothed)
    product = np.prod([m / m.max() for m in smoothed], axis=0)
    expected = geometry.map_to_original(smoothed_magnitude(product)) * lungs[index]
    np.testing.assert_allclose(maps.joint, expected, atol=1e-4 * float(expected.max()))
    raw_product = np.prod([np.asarray(ig) * lung_in / np.abs(np.asarray(ig) * lung_in).max() for ig in raw.ig], axis=0)
    paper = geometry.map_to_original(smoothed_magnitude(raw_product)) * lungs[index]
    assert np.corrcoef(maps.joint.ravel(), paper.ravel())[0, 1] < 0.99  # a different map, not a rescaling


def test_a_studys_maps_are_held_in_the_model_grid_and_read_at_the_slices_size(tiny_bundle: Path,
                                                                              phantom_covid) -> None:
    """Seven full-size float32 maps per explained slice made a long study's analysis grow by ~7.6 MB a slice (a
    600-slice scan: 1.33 -> 2.24 GB); the result holds them at the model's input size and maps them back on reading."""
    volume = Volume(array=phantom_covid.hu.astype(np.float32), kind="nifti", is_hu=True, spacing_mm=(5.0, 2.5, 2.5))
    lungs = phantom_covid.lung_mask.astype(bool)
    bundle = load_bundle(str(tiny_bundle), device="cpu")
    result = analyze(volume, bundle, saliency="all", lungs=lungs)
    size = bundle.meta["input_size"][0]
    rows, cols = volume.array.shape[1:]
    for index, maps in result.maps.items():
        assert maps.grid.shape == (7, size, size) and maps.grid.dtype == np.float32
        assert maps.grid.nbytes == 7 * 4 * size * size
        assert np.shares_memory(maps.lung, result.lung_mask), "the slice's lung mask is the study's, not a copy"
        read = (maps.joint, *maps.ig, *maps.cams)
        assert all(m.shape == (rows, cols) and m.dtype == np.float32 for m in read)
        for m, grid in zip(read, maps.grid):
            inside = maps.geometry.map_to_original(grid)
            np.testing.assert_array_equal(m, inside * lungs[index])


def test_a_bundle_that_keeps_only_the_lungs_surroundings_gets_them_alone(tiny_bundle: Path, phantom_covid,
                                                                        tmp_path: Path) -> None:
    """A bundle with ``crop.outside_lungs_mm`` is given each slice blanked beyond that distance from the lungs (the
    spine and the heart's middle), in mm of the study's pixels; the lungs and the margin round them are as before.
    A value the pipeline cannot use is refused when the bundle is loaded."""
    volume = Volume(array=phantom_covid.hu.astype(np.float32), kind="nifti", is_hu=True, spacing_mm=(5.0, 2.5, 2.5))
    lungs = phantom_covid.lung_mask.astype(bool)
    index = int(np.argmax(lungs.sum(axis=(1, 2))))
    masked_dir = tmp_path / "masked"
    shutil.copytree(tiny_bundle, masked_dir)
    meta = json.loads((masked_dir / "model.json").read_text())
    meta["crop"] = {**meta.get("crop", {"margin": 0.05}), "outside_lungs_mm": 10.0}
    (masked_dir / "model.json").write_text(json.dumps(meta))
    whole, geometry = model_input(volume, load_bundle(str(tiny_bundle), device="cpu"), index, lungs)
    kept, _ = model_input(volume, load_bundle(str(masked_dir), device="cpu"), index, lungs)
    distance_mm = ndimage.distance_transform_edt(~geometry.mask_to_output(lungs[index])) * geometry.scale_x * 2.5
    near, far = distance_mm <= 9.0, distance_mm > 11.0
    assert far.any() and whole[far].max() > 0.2  # there was tissue to blank
    assert (kept[far] == 0).all()
    np.testing.assert_array_equal(kept[near], whole[near])
    meta["crop"]["outside_lungs_mm"] = -3
    (masked_dir / "model.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="outside_lungs_mm"):
        load_bundle(str(masked_dir), device="cpu")

"""Data sources, preparation through the inference code path, and patient-level splits."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

from inference.bundle import DEFAULT_META, load_bundle
from inference.io import Volume
from inference.lungs import segment_lungs
from inference.normalize import normalize_volume
from inference.preprocess import crop_geometry, prepare_slice
from training.__main__ import main
from training.datasets import (TASKS, PrepConfig, build_slice_set, export_studies, group_kfold, group_split,
                               image_studies, study_slices, toy_studies, write_export_study)


def test_slices_are_prepared_exactly_as_inference_prepares_them():
    """Cropped and normalised with the lungs the pipeline segments, not the record's truth mask (which the pipeline
    never has); the truth mask is used only when asked for."""
    record = next(toy_studies(1, seed=5, size=64, n_slices=3))
    record.lung_mask = record.lung_mask.copy()
    record.lung_mask[:, :, :32] = False  # a "truth" mask unlike the segmentation: one lung
    prep = PrepConfig(size=48)
    lungs = segment_lungs(Volume(array=record.array.astype(np.float32), kind="nifti", is_hu=True,
                                 spacing_mm=record.spacing_mm), prep.lungs)
    for mask, config in ((lungs, prep), (record.lung_mask, PrepConfig(size=48, source_lungs=True))):
        got = study_slices(record, config)
        unit, _ = normalize_volume(record.array.astype(np.float32), prep.normalization_params, mask=mask)
        expected = prepare_slice(unit[1], crop_geometry(mask[1], prep.margin, unit.shape[1:], 48), 48)
        assert got.shape == (3, 48, 48) and np.array_equal(got[1], expected)


def test_blanking_beyond_the_lungs_is_prepared_as_the_bundle_tells_the_pipeline():
    """``--outside-lungs-mm``: training blanks each slice beyond that distance from its lungs, in the record's pixel
    size, exactly as the pipeline does for a bundle whose ``crop.outside_lungs_mm`` says so (``for_bundle``)."""
    record = next(toy_studies(1, seed=5, size=64, n_slices=3))
    prep = PrepConfig.for_bundle({**DEFAULT_META, "input_size": [48, 48],
                                  "crop": {"margin": 0.05, "outside_lungs_mm": 6.0}})
    assert prep.outside_lungs_mm == 6.0
    lungs = segment_lungs(Volume(array=record.array.astype(np.float32), kind="nifti", is_hu=True,
                                 spacing_mm=record.spacing_mm), prep.lungs)
    got = study_slices(record, prep)
    whole = study_slices(record, PrepConfig(size=48))
    unit, _ = normalize_volume(record.array.astype(np.float32), prep.normalization_params, mask=lungs)
    geometry = crop_geometry(lungs[1], prep.margin, unit.shape[1:], 48)
    expected = prepare_slice(unit[1], geometry, 48, lungs[1], 6.0 / record.spacing_mm[1])
    assert np.array_equal(got[1], expected)
    assert (got[1] == 0).sum() > (whole[1] == 0).sum()  # something beyond the reach was blanked


def test_only_lung_slices_are_kept():
    record = next(toy_studies(1, seed=0, size=32, n_slices=4))
    record.lung_mask[0] = False
    record.lung_mask[3, :, :] &= np.arange(32)[None, :] < 12  # one lung cut to a sliver: < 25 % of the largest
    record.lung_mask[3, :, :] &= np.arange(32)[:, None] < 14
    assert study_slices(record, PrepConfig(size=32, source_lungs=True)).shape[0] == 2


def test_task_filters_classes_and_labels_follow_the_study():
    data = build_slice_set(toy_studies(6, seed=1, size=32, n_slices=2), TASKS["np-covid"], PrepConfig(size=32))
    assert data.classes == ("NP", "COVID") and data.n_studies == 4
    for s in range(data.n_studies):
        assert set(data.labels[data.study == s].tolist()) == {int(data.study_labels[s])}
    sub = data.subset([2, 0])
    assert sub.study_ids == [data.study_ids[2], data.study_ids[0]] and len(sub) == 4
    assert data.fingerprint() != sub.fingerprint() and len(data.fingerprint()) == 64


def test_split_keeps_patients_apart():
    # 40 studies of 12 patients (several studies per patient), three classes.
    rng = np.random.default_rng(0)
    groups = np.array([f"p{i % 12}" for i in range(40)])
    labels = rng.integers(0, 3, 40)
    folds = group_kfold(labels, groups, 4, seed=1)
    seen = np.zeros(40, dtype=int)
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])
        seen[test] += 1
    assert np.all(seen == 1)
    rest, held = group_split(labels, groups, 0.25, seed=2)
    assert not set(groups[rest]) & set(groups[held]) and len(rest) + len(held) == 40
    with pytest.raises(ValueError):
        group_kfold(labels, groups, 13)


def test_export_round_trip(tmp_path):
    hu = np.full((3, 32, 32), -800, dtype=np.int16)
    write_export_study(tmp_path, "s1", hu, "COVID", patient_id="P1", spacing_mm=(2.5, 0.7, 0.7),
                       boxes=[{"slice_index": 1, "x0": 2, "y0": 3, "x1": 9, "y1": 10, "label": "covid_lesion"}])
    write_export_study(tmp_path, "s2", hu, "NP", source_group="G2", lung_mask=np.ones((3, 32, 32), bool))
    # the PNG variant: 16-bit grey with HU + 32768
    (tmp_path / "s3").mkdir()
    for z in range(2):
        Image.fromarray((hu[z].astype(np.int32) + 32768).astype(np.uint16)).save(tmp_path / "s3" / f"slice_{z:04d}.png")
    with open(tmp_path / "labels.csv", "a", newline="") as fh:
        csv.writer(fh).writerow(["s3", "P3", "CAP", ""])
    records = list(export_studies(tmp_path))
    assert [r.study_id for r in records] == ["s1", "s2", "s3"]
    assert [r.group for r in records] == ["P1", "G2", "P3"]
    assert records[0].spacing_mm == (2.5, 0.7, 0.7) and records[0].boxes[0]["label"] == "covid_lesion"
    assert records[1].lung_mask is not None and records[1].lung_mask.all()
    assert records[2].array.shape == (2, 32, 32) and int(records[2].array.min()) == -800


def test_image_folder_source_reads_display_images(tmp_path):
    Image.fromarray(np.full((40, 50), 128, np.uint8)).save(tmp_path / "a.png")  # no lungs: whole image
    Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(tmp_path / "b.jpg")
    (tmp_path / "labels.csv").write_text("file,label,source_group\na.png,COVID,G1\nb.jpg,NonCOVID,G2\n")
    records = list(image_studies(tmp_path))
    assert [r.is_hu for r in records] == [False, False] and records[0].group == "G1"
    data = build_slice_set(records, ("NonCOVID", "COVID"), PrepConfig(size=32))
    assert data.images.shape == (2, 32, 32)
    assert abs(float(data.images[0].float().mean()) - 128 / 255) < 1e-2  # whole image, scaled by 255


def test_capped_keeps_evenly_spaced_slices_of_each_study():
    data = build_slice_set(toy_studies(3, seed=4, size=32, n_slices=9), TASKS["3way"], PrepConfig(size=32))
    capped = data.capped(4)
    for s in range(data.n_studies):
        rows = np.flatnonzero(data.study == s)
        kept = np.flatnonzero(capped.study == s)
        assert len(kept) == min(4, len(rows))
        assert (capped.images[kept] == data.images[rows[np.linspace(0, len(rows) - 1, len(kept)).round().astype(int)]]).all()
    assert capped.study_ids == data.study_ids and data.capped(None) is data


def test_a_study_keeps_its_unlabelled_slices_and_training_does_not_see_them() -> None:
    """A slice with a sliver of lesion has no label (neither clearly diseased nor clean): no loss or slice score
    uses it, but its study is decided on it, as the pipeline decides a study on all its lung slices. Before, such
    slices left the set, and a diseased study was scored without its healthy-looking slices, chosen by the truth."""
    import torch

    from inference.classifier import MultiScaleVGG
    from inference.pipeline import aggregate_as
    from training.calibration import study_probabilities
    from training.crossval import predictions
    from training.datasets import prepared_slices, slice_labels
    from training.simulate.backgrounds import simulated_studies

    classes, prep = TASKS["3way"], PrepConfig(size=64)
    records = [r for r in simulated_studies(["phantom:977105"], 3, 9, classes) if r.label != "NP"]
    kept = [(r, prepared_slices(r, prep)[1]) for r in records]
    unlabelled = [(r, keep) for r, keep in kept if (slice_labels(r, keep, classes, prep.min_lesion_fraction) < 0).any()]
    assert unlabelled, "no study of this draw has a sliver of lesion: the case is not exercised"
    data = build_slice_set([r for r, _ in kept], classes, prep)
    assert len(data) == sum(keep.size for _, keep in kept)
    assert (data.labels < 0).any() and sum(data.class_counts().values()) == int((data.labels >= 0).sum())
    labelled = data.labelled()
    assert len(labelled) == int((data.labels >= 0).sum()) and (labelled.labels >= 0).all()
    assert labelled.n_studies == data.n_studies and set(labelled.study.tolist()) <= set(range(data.n_studies))

    torch.manual_seed(0)
    model = MultiScaleVGG(3, width=0.125).eval()
    rule = {"rule": "mean", "min_lung_fraction": 0.25}
    pred = predictions(model, data, rule)
    assert len(pred["slice"]["labels"]) == len(labelled) and (pred["slice"]["labels"] >= 0).all()
    with torch.no_grad():
        logits = model(data.images.float()[:, None]).numpy()
    every_slice = study_probabilities(logits, data.study, list(classes), rule)
    np.testing.assert_allclose(pred["study"]["probs"]["joint"], every_slice, atol=1e-5)
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    study = next(i for i in range(data.n_studies) if (data.labels.numpy()[data.study == i] < 0).any())
    only_labelled = aggregate_as(softmax[(data.study == study) & (data.labels.numpy() >= 0)], list(classes), rule)
    assert not np.allclose(every_slice[study], only_labelled)  # the unlabelled slices count in their study


def test_the_train_command_records_the_blanking_its_slices_had(tmp_path):
    """``python -m training train --outside-lungs-mm``: the bundle carries ``crop.outside_lungs_mm``, so the pipeline
    blanks the slices it classifies as training blanked them; without the flag the crop keeps the default."""
    for flag, expected in ((["--outside-lungs-mm", "8"], 8.0), ([], None)):
        out = tmp_path / f"bundle{len(flag)}"
        main(["train", "--source", "toy", "--studies", "9", "--iterations", "2", "--val-every", "2", "--width",
              "0.125", "--size", "48", "--no-progress", "--threads", "1", "--out", str(out), "--work-dir",
              str(tmp_path / f"work{len(flag)}"), *flag])
        assert json.loads((out / "model.json").read_text())["crop"].get("outside_lungs_mm") == expected
        assert load_bundle(str(out), device="cpu").meta["crop"]["margin"] == 0.05
    # a reach the bundle loader would refuse is refused before any data is made, by the command and by PrepConfig
    with pytest.raises(SystemExit):
        main(["train", "--source", "toy", "--outside-lungs-mm", "300", "--out", str(tmp_path / "far")])
    assert not (tmp_path / "far").exists()
    for reach in (0.0, -2.0, 300.0):
        with pytest.raises(ValueError, match="outside_lungs_mm"):
            PrepConfig(outside_lungs_mm=reach)
    assert PrepConfig(outside_lungs_mm=200).outside_lungs_mm == 200.0

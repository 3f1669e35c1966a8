"""The synthetic chest CT phantom: determinism, anatomy, the literature's lesion patterns, ground truth, DICOM."""
from __future__ import annotations

import time

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from training.phantom import LABELS, PROFILES, generate_dataset, generate_study, lesion_boxes, write_dicom_series

SMALL = {"n_slices": 32, "size": 128}


@pytest.fixture(scope="module")
def studies() -> dict[tuple[int, str], object]:
    """Six small studies (two patients x three classes), generated once for the module."""
    return {(seed, label): generate_study(seed, label, **SMALL) for seed in (11, 12) for label in LABELS}


def _sides_hit(study) -> set[int]:
    """Image halves holding lesion voxels: 0 = left half (patient's right lung), 1 = right half (left lung)."""
    cols = np.nonzero(study.lesion_mask.any(axis=(0, 1)))[0]
    mid = study.hu.shape[2] / 2
    return {int(c >= mid) for c in cols}


def test_same_seed_same_study_and_new_seed_new_patient() -> None:
    a, b = generate_study(4, "COVID", **SMALL), generate_study(4, "COVID", **SMALL)
    assert np.array_equal(a.hu, b.hu) and np.array_equal(a.lesion_mask, b.lesion_mask)
    assert a.boxes == b.boxes and a.patient_id == b.patient_id
    c = generate_study(5, "COVID", **SMALL)
    assert not np.array_equal(a.hu, c.hu) and c.patient_id != a.patient_id


def test_label_adds_findings_to_the_same_patient() -> None:
    np_study, covid = generate_study(4, "NP", **SMALL), generate_study(4, "COVID", **SMALL)
    assert np.array_equal(np_study.lung_mask, covid.lung_mask)
    assert np_study.profile == covid.profile and np_study.spacing_mm == covid.spacing_mm


def test_shapes_types_and_spacing(studies) -> None:
    study = studies[(11, "NP")]
    assert study.hu.shape == (32, 128, 128) and study.hu.dtype == np.int16
    assert study.lung_mask.dtype == bool and study.lesion_mask.shape == study.hu.shape
    prof = PROFILES[study.profile]
    assert study.spacing_mm[1] == study.spacing_mm[2] == pytest.approx(prof.fov_mm / 128)
    assert 270 / 32 <= study.spacing_mm[0] <= 330 / 32
    assert study.slice_thickness_mm == prof.slice_thickness_mm


def test_lungs_are_plausible(studies) -> None:
    for study in studies.values():
        frac = study.lung_mask.mean()
        assert 0.05 < frac < 0.25, frac
        lung_hu = study.hu[study.lung_mask & ~study.lesion_mask]
        assert -900 < np.median(lung_hu) < -750
        assert np.median(study.hu[:, 0, 0]) < -900  # air in the corner
        # Two lungs: at mid-height the mask has two large components, one per image half.
        k = int(np.argmax(study.lung_mask.sum(axis=(1, 2))))
        labels, n = ndimage.label(study.lung_mask[k])
        sizes = np.bincount(labels.ravel())[1:]
        assert (sizes > 200).sum() == 2
        # Tapered: the apex slice of the lungs is far smaller than the widest slice.
        area = study.lung_mask.sum(axis=(1, 2))
        top = np.nonzero(area)[0].max()
        assert area[top] < 0.2 * area.max()


def test_lesions_lie_inside_the_lungs_and_match_infection_percent(studies) -> None:
    for study in studies.values():
        assert not (study.lesion_mask & ~study.lung_mask).any()
        expected = 100.0 * study.lesion_mask.sum() / study.lung_mask.sum()
        assert study.infection_percent == pytest.approx(expected)


def test_covid_is_bilateral_peripheral_and_has_more_lesions_than_cap(studies) -> None:
    for seed in (11, 12):
        covid, cap = studies[(seed, "COVID")], studies[(seed, "CAP")]
        assert _sides_hit(covid) == {0, 1}
        assert covid.findings.count("ggo") >= 3 and covid.findings.count("ggo") > len(cap.findings)
        lesion_hu = covid.hu[covid.lesion_mask]
        assert -750 < np.median(lesion_hu) < -150  # ground glass, not consolidation
        # Subpleural: lesion voxels sit closer to the lung border than lung voxels on average.
        depth = ndimage.distance_transform_edt(covid.lung_mask, sampling=covid.spacing_mm)
        assert np.median(depth[covid.lesion_mask]) < np.median(depth[covid.lung_mask])


def test_cap_is_one_unilateral_dense_consolidation(studies) -> None:
    for seed in (11, 12):
        cap = studies[(seed, "CAP")]
        assert cap.findings == ["consolidation"] and _sides_hit(cap) in ({0}, {1})
        assert np.median(cap.hu[cap.lesion_mask]) > -250
        assert cap.infection_percent > 1.0


def test_np_has_no_pneumonia() -> None:
    """NP may carry a nodule or emphysema, but neither is pneumonia: empty lesion mask, no boxes, 0 %."""
    kinds = set()
    for seed in range(8):
        study = generate_study(seed, "NP", n_slices=16, size=64)
        kinds.update(study.findings)
        assert not study.lesion_mask.any() and study.boxes == {} and study.infection_percent == 0.0
    assert kinds <= {"nodule", "emphysema"} and kinds  # some NP studies do show a non-pneumonia finding


def test_boxes_are_the_lesion_components(studies) -> None:
    study = studies[(11, "COVID")]
    assert set(study.boxes) == set(np.nonzero(study.lesion_mask.any(axis=(1, 2)))[0].tolist())
    for k, boxes in study.boxes.items():
        painted = np.zeros(study.lesion_mask[k].shape, dtype=bool)
        for x0, y0, x1, y1 in boxes:
            assert 0 <= x0 <= x1 < 128 and 0 <= y0 <= y1 < 128
            box = study.lesion_mask[k, y0:y1 + 1, x0:x1 + 1]
            # Each box is tight: its border rows and columns touch the lesion.
            assert box[0].any() and box[-1].any() and box[:, 0].any() and box[:, -1].any()
            painted[y0:y1 + 1, x0:x1 + 1] = True
        assert not (study.lesion_mask[k] & ~painted).any()
    assert lesion_boxes(np.zeros((2, 4, 4), dtype=bool)) == {}


def test_box_columns_are_x() -> None:
    mask = np.zeros((1, 10, 20), dtype=bool)
    mask[0, 2:4, 10:15] = True
    assert lesion_boxes(mask) == {0: [(10, 2, 14, 3)]}


def test_dataset_is_balanced_and_distinct() -> None:
    studies = list(generate_dataset(6, seed=1, n_slices=8, size=64))
    assert [s.label for s in studies] == ["NP", "CAP", "COVID"] * 2
    assert len({s.patient_id for s in studies}) == 6


def test_unknown_label_or_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="label"):
        generate_study(0, "FLU", **SMALL)
    with pytest.raises(ValueError, match="profile"):
        generate_study(0, "NP", profile="nope", **SMALL)


def test_small_study_is_fast() -> None:
    start = time.perf_counter()
    generate_study(99, "COVID", **SMALL)
    assert time.perf_counter() - start < 2.0  # ~0.2 s alone; slack for a shared, loaded machine


def test_dicom_series_round_trips_hu_and_geometry(tmp_path) -> None:
    study = generate_study(21, "COVID", profile="standard", n_slices=6, size=64)
    paths = write_dicom_series(study, tmp_path, AccessionNumber="ACC42")
    assert len(paths) == 6
    datasets = [pydicom.dcmread(p) for p in paths]
    first = datasets[0]
    assert first.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert first.SOPClassUID == pydicom.uid.CTImageStorage and first.Modality == "CT"
    assert first.StudyDescription == "PHANTOM COVID" and first.AccessionNumber == "ACC42"
    assert first.BodyPartExamined == "CHEST" and first.PatientID == study.patient_id
    assert not any(elem.tag.is_private for ds in datasets for elem in ds)
    assert len({ds.SOPInstanceUID for ds in datasets}) == 6
    assert len({(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID) for ds in datasets}) == 1
    for k, ds in enumerate(datasets):
        hu = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
        assert np.array_equal(hu, study.hu[k])
        assert ds.InstanceNumber == k + 1
        assert list(ds.ImageOrientationPatient) == [1, 0, 0, 0, 1, 0]
        assert [float(v) for v in ds.PixelSpacing] == pytest.approx(study.spacing_mm[1:], abs=1e-5)
    z = np.array([float(ds.ImagePositionPatient[2]) for ds in datasets])
    assert np.diff(z) == pytest.approx(np.full(5, study.spacing_mm[0]), abs=1e-3)
    x0 = float(first.ImagePositionPatient[0])
    assert x0 == pytest.approx(-(63 / 2) * study.spacing_mm[2], abs=1e-3)  # image centred on the scanner axis
    # Same study -> same UIDs (re-uploads are duplicates).
    again = [pydicom.dcmread(p) for p in write_dicom_series(study, tmp_path / "again")]
    assert [ds.SOPInstanceUID for ds in again] == [ds.SOPInstanceUID for ds in datasets]

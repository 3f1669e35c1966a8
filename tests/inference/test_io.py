"""Loading studies: spatial slice order whatever the file names and InstanceNumbers, HU, geometry, other formats."""
from __future__ import annotations

import random
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from inference.io import LoadError, load_study


@pytest.fixture(scope="module")
def small_study():
    from training.phantom import generate_study

    return generate_study(5, "CAP", size=64, n_slices=12)


def _write_shuffled(study, folder: Path, seed: int = 0) -> list[Path]:
    """The phantom series with file names and InstanceNumbers both shuffled, plus a stray non-DICOM file."""
    from training.phantom import write_dicom_series

    files = write_dicom_series(study, folder / "raw")
    rng = random.Random(seed)
    names, numbers = list(range(len(files))), list(range(1, len(files) + 1))
    rng.shuffle(names)
    rng.shuffle(numbers)
    out = []
    for f, name, number in zip(files, names, numbers):
        ds = pydicom.dcmread(f)
        ds.InstanceNumber = number
        target = folder / "series" / f"{name:03d}_{rng.random():.6f}"
        target.parent.mkdir(exist_ok=True)
        ds.save_as(target)
        out.append(target)
    (folder / "series" / "README.txt").write_text("not an image")
    return out


def test_slices_sorted_by_position_not_by_name_or_instance_number(small_study, tmp_path: Path) -> None:
    _write_shuffled(small_study, tmp_path)
    volume = load_study(tmp_path / "series")
    assert volume.kind == "dicom-series" and volume.is_hu
    np.testing.assert_array_equal(volume.array, small_study.hu.astype(np.float32))  # HU through the rescale
    assert volume.z_mm == sorted(volume.z_mm)
    dz, dy, dx = small_study.spacing_mm
    assert volume.spacing_mm == pytest.approx((dz, dy, dx), abs=1e-4)
    assert len(set(volume.sop_instance_uids)) == volume.n_slices
    # pixel -> patient: origin of slice k is its ImagePositionPatient; columns run along +X, rows along +Y
    x0, y0, z0 = volume.image_position_patient[3]
    assert volume.pixel_to_patient(3, 10, 20) == pytest.approx((x0 + 10 * dx, y0 + 20 * dy, z0), abs=1e-3)


def test_oblique_normal_decides_the_order(small_study, tmp_path: Path) -> None:
    """Coronal slices (normal along Y): z is constant, only the projection on the normal orders them."""
    files = _write_shuffled(small_study, tmp_path, seed=1)
    for f in files:
        ds = pydicom.dcmread(f)
        k = int(round(float(ds.ImagePositionPatient[2]) / small_study.spacing_mm[0]))
        ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]  # normal = row x col = (0, 1, 0)
        ds.ImagePositionPatient = [0.0, 3.0 * k, 7.0]
        ds.save_as(f)
    volume = load_study(files)
    np.testing.assert_array_equal(volume.array, small_study.hu.astype(np.float32))
    assert volume.spacing_mm[0] == pytest.approx(3.0)
    assert volume.pixel_to_patient(0, 0, 5)[2] == pytest.approx(7.0 - 5 * small_study.spacing_mm[1], abs=1e-3)


def test_instance_number_fallback_without_positions(small_study, tmp_path: Path) -> None:
    from training.phantom import write_dicom_series

    files = write_dicom_series(small_study, tmp_path / "raw")
    order = list(range(len(files)))
    random.Random(2).shuffle(order)
    for rank, f in zip(order, files):  # file k gets InstanceNumber rank: sorting must follow the numbers
        ds = pydicom.dcmread(f)
        del ds.ImagePositionPatient
        ds.InstanceNumber = rank + 1
        ds.save_as(f)
    volume = load_study(tmp_path / "raw")
    expected = np.empty_like(small_study.hu)
    expected[order] = small_study.hu
    np.testing.assert_array_equal(volume.array, expected.astype(np.float32))
    assert volume.instance_numbers == list(range(1, len(files) + 1))


def test_zip_of_a_series(small_study, tmp_path: Path) -> None:
    files = _write_shuffled(small_study, tmp_path, seed=3)
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in files:
            zf.write(f, f"nested/dir/{f.name}")
    volume = load_study(archive)
    np.testing.assert_array_equal(volume.array, small_study.hu.astype(np.float32))


def test_nifti_geometry(tmp_path: Path) -> None:
    data = np.arange(4 * 5 * 3, dtype=np.int16).reshape(4, 5, 3)  # (i=x, j=y, k=z)
    affine = np.diag([-0.7, -0.8, 2.5, 1.0])  # RAS with x and y flipped: LPS-aligned like DICOM axial
    affine[:3, 3] = [10.0, 20.0, -30.0]
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "ct.nii.gz")
    volume = load_study(tmp_path / "ct.nii.gz")
    assert volume.kind == "nifti" and volume.array.shape == (3, 5, 4)
    assert volume.array[2, 4, 1] == data[1, 4, 2]
    assert volume.spacing_mm == pytest.approx((2.5, 0.8, 0.7))
    # voxel (i=1, j=4, k=2) in RAS is 10-0.7, 20-3.2, -30+5 -> LPS flips x and y
    assert volume.pixel_to_patient(2, 1, 4) == pytest.approx((-(10 - 0.7), -(20 - 3.2), -25.0))


def test_a_nifti_of_display_grey_levels_is_read_as_grey_not_hu(tmp_path: Path, small_study) -> None:
    """A windowed 8-bit export (0..255, or 0..1) read as HU would have no lung at all (lung at grey 20 is soft tissue
    in HU); it is an 8-bit volume, segmented from its grey levels and flagged by the HU model as unfamiliar."""
    from inference.bundle import load_bundle
    from inference.pipeline import analyze

    hu = small_study.hu.astype(np.float32)
    grey = np.clip((hu + 1350.0) / 1500.0 * 255.0, 0, 255).round().astype(np.uint8)
    affine = np.diag([2.5, 2.5, 5.0, 1.0])
    nib.save(nib.Nifti1Image(np.ascontiguousarray(grey.transpose(2, 1, 0)), affine), tmp_path / "grey.nii.gz")
    unit = (grey.astype(np.float32) / 255.0).transpose(2, 1, 0)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(unit), affine), tmp_path / "unit.nii.gz")
    nib.save(nib.Nifti1Image(np.ascontiguousarray(hu.transpose(2, 1, 0)).astype(np.int16), affine),
             tmp_path / "hu.nii.gz")
    volume, unit_volume = load_study(tmp_path / "grey.nii.gz"), load_study(tmp_path / "unit.nii.gz")
    assert volume.kind == "nifti" and not volume.is_hu and not unit_volume.is_hu
    np.testing.assert_array_equal(volume.array, grey.astype(np.float32))
    np.testing.assert_allclose(unit_volume.array, grey.astype(np.float32), atol=1e-3)
    assert load_study(tmp_path / "hu.nii.gz").is_hu
    result = analyze(volume, load_bundle("default", device="cpu"), saliency="none")
    truth = small_study.lung_mask.astype(bool)
    found = result.lung_mask.astype(bool)
    assert 2.0 * (found & truth).sum() / (found.sum() + truth.sum()) > 0.8  # lungs from the grey levels
    assert result.domain["outside"] and result.opacity is None


def test_a_nifti_with_nan_is_refused_with_a_reason(tmp_path: Path) -> None:
    data = np.full((32, 32, 4), -800.0, dtype=np.float32)
    data[3, 3, 1] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "nan.nii.gz")
    with pytest.raises(LoadError, match="NaN or infinite"):
        load_study(tmp_path / "nan.nii.gz")


def test_a_nifti_label_mask_is_refused_with_a_reason(tmp_path: Path) -> None:
    mask = np.zeros((64, 64, 8), dtype=np.uint8)
    mask[10:30, 10:50], mask[34:54, 10:50] = 1, 2  # left and right lung labels
    nib.save(nib.Nifti1Image(mask, np.eye(4)), tmp_path / "lung_mask.nii.gz")
    with pytest.raises(LoadError, match=r"only the values \[0, 1, 2\]: a label mask"):
        load_study(tmp_path / "lung_mask.nii.gz")


def test_a_nifti_saved_slices_first_is_read_in_that_order(tmp_path: Path, small_study) -> None:
    """A NumPy (slices, rows, columns) volume saved as is (nibabel, identity affine) is read as those slices, with a
    warning, not as one slice per image column."""
    hu = small_study.hu.astype(np.int16)  # (12, 64, 64)
    nib.save(nib.Nifti1Image(hu, np.eye(4)), tmp_path / "zyx.nii.gz")
    with pytest.warns(UserWarning, match=r"read as \(slices, rows, columns\)"):
        volume = load_study(tmp_path / "zyx.nii.gz")
    np.testing.assert_array_equal(volume.array, hu.astype(np.float32))
    nib.save(nib.Nifti1Image(np.ascontiguousarray(hu.transpose(2, 1, 0)), np.diag([0.7, 0.7, 5.0, 1.0])),
             tmp_path / "xyz.nii.gz")
    np.testing.assert_array_equal(load_study(tmp_path / "xyz.nii.gz").array, hu.astype(np.float32))  # the usual


def _enhanced_ct(classic: list[Path], path: Path) -> Path:
    """The classic series as one Enhanced CT instance: every frame's position in its functional group, the
    orientation, spacing and rescale shared (written descending, as some scanners do)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    slices = [pydicom.dcmread(f) for f in classic][::-1]
    first = slices[0]
    ds = Dataset()
    for keyword in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "Rows", "Columns", "BitsAllocated",
                    "BitsStored", "HighBit", "PixelRepresentation", "SamplesPerPixel", "PhotometricInterpretation"):
        setattr(ds, keyword, getattr(first, keyword))
    ds.Modality, ds.SOPClassUID, ds.SOPInstanceUID = "CT", "1.2.840.10008.5.1.4.1.1.2.1", generate_uid()
    ds.NumberOfFrames = len(slices)

    def item(**elements) -> Dataset:
        out = Dataset()
        for keyword, value in elements.items():
            setattr(out, keyword, value)
        return out

    ds.SharedFunctionalGroupsSequence = Sequence([item(
        PixelMeasuresSequence=Sequence([item(PixelSpacing=first.PixelSpacing, SliceThickness=first.SliceThickness)]),
        PlaneOrientationSequence=Sequence([item(ImageOrientationPatient=first.ImageOrientationPatient)]),
        PixelValueTransformationSequence=Sequence([item(RescaleIntercept=first.RescaleIntercept,
                                                        RescaleSlope=first.RescaleSlope, RescaleType="HU")]))])
    ds.PerFrameFunctionalGroupsSequence = Sequence([item(PlanePositionSequence=Sequence([item(
        ImagePositionPatient=sl.ImagePositionPatient)])) for sl in slices])
    ds.PixelData = b"".join(sl.PixelData for sl in slices)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


def test_an_enhanced_ct_is_read_with_its_per_frame_rescale_and_geometry(tmp_path: Path, small_study) -> None:
    """One Enhanced CT instance holding the series: HU through the functional groups' rescale (read as a classic
    image it kept its stored values, air at 0), spacing and orientation from them, frames in their stored order."""
    from training.phantom import write_dicom_series

    classic = write_dicom_series(small_study, tmp_path / "classic")
    volume = load_study(_enhanced_ct(classic, tmp_path / "enhanced.dcm"))
    reference = load_study(tmp_path / "classic")
    np.testing.assert_array_equal(volume.array, reference.array[::-1])  # descending, as stored
    assert volume.is_hu and volume.spacing_mm == pytest.approx(reference.spacing_mm)
    assert volume.image_orientation_patient[0] == pytest.approx(reference.image_orientation_patient[0])
    assert volume.image_position_patient[0] == pytest.approx(reference.image_position_patient[-1])
    assert volume.pixel_to_patient(0, 3, 4) == pytest.approx(reference.pixel_to_patient(reference.n_slices - 1, 3, 4))


def test_png_is_one_windowed_slice(tmp_path: Path) -> None:
    Image.fromarray(np.tile(np.arange(256, dtype=np.uint8), (8, 1))).save(tmp_path / "slice.png")
    volume = load_study(tmp_path / "slice.png")
    assert volume.kind == "image" and not volume.is_hu and volume.array.shape == (1, 8, 256)
    assert volume.spacing_mm is None and volume.array.max() == 255


@pytest.mark.parametrize("content", [b"", b"garbage, not DICOM"])
def test_unreadable_input_is_a_load_error(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(content)
    with pytest.raises(LoadError, match="no DICOM images"):
        load_study(bad)
    with pytest.raises(LoadError, match="no such file"):
        load_study(tmp_path / "missing")
    (tmp_path / "bad.png").write_bytes(content)
    with pytest.raises(LoadError, match="unreadable image"):
        load_study(tmp_path / "bad.png")


def test_jpeg2000_series_decodes(shared_data: Path) -> None:
    volume = load_study(shared_data / "real-ct" / "totalsegmentator-abdomen-j2k" / "example_ct_dicom")
    assert volume.n_slices == 20 and volume.is_hu
    assert -1100 <= volume.array.min() and volume.array.max() > 500  # HU, decoded
    assert np.all(np.diff(volume.z_mm) > 0)

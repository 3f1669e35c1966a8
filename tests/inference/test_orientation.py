"""A prone DICOM series (rows and columns stored reversed, ImageOrientationPatient -1\\0\\0\\0\\-1\\0) is analysed in
the orientation the models were trained on and answered on its own pixels: the same study stored both ways gives
the same probabilities, and masks, boxes and maps that are each other's mirror images. A NIfTI volume stored upside
down (spine at the top) is turned when its anatomy (the dependent lung's density) and the classifier's familiarity
with the turned slices agree, never by its affine."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from inference.bundle import load_bundle
from inference.io import Volume, load_study
from inference.orientation import (BONE_BELOW_UPRIGHT, DEPENDENT_TURNED_HU, canonical_axes, dependent_gradient_hu,
                                   looks_upside_down, posterior_bone_share, study_axes)
from inference.pipeline import analyze, slice_maps


def prone_copy(files: list[Path], folder: Path) -> Path:
    """The series as a prone scanner would store it: each slice turned by 180 degrees in its plane, its orientation
    and first-pixel position saying so (the same voxels at the same places in the patient)."""
    folder.mkdir()
    for path in files:
        ds = pydicom.dcmread(path)
        rows, columns = int(ds.Rows), int(ds.Columns)
        dy, dx = (float(v) for v in ds.PixelSpacing)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.PixelData = np.ascontiguousarray(ds.pixel_array[::-1, ::-1]).tobytes()
        ds.ImageOrientationPatient = [-1, 0, 0, 0, -1, 0]
        ds.ImagePositionPatient = [x + (columns - 1) * dx, y + (rows - 1) * dy, z]
        ds.save_as(folder / path.name)
    return folder


@pytest.fixture(scope="module")
def supine_and_prone(tmp_path_factory) -> tuple[Path, Path]:
    from training.phantom import generate_study, write_dicom_series

    root = tmp_path_factory.mktemp("orientation")
    files = write_dicom_series(generate_study(5, "COVID", size=96, n_slices=12), root / "supine")
    return root / "supine", prone_copy(files, root / "prone")


def test_a_prone_series_is_analysed_as_supine_and_answered_on_its_own_pixels(tiny_bundle, supine_and_prone):
    supine, prone = (load_study(path) for path in supine_and_prone)
    assert canonical_axes(supine) == () and canonical_axes(prone) == (1, 2)
    stored = prone.array.copy()
    bundle = load_bundle(str(tiny_bundle), device="cpu")
    a, b = analyze(supine, bundle, saliency="all"), analyze(prone, bundle, saliency="all")
    np.testing.assert_array_equal(prone.array, stored)  # the caller's volume as it was
    np.testing.assert_array_equal(b.lung_mask, a.lung_mask[:, ::-1, ::-1])
    np.testing.assert_array_equal(b.opacity_mask, a.opacity_mask[:, ::-1, ::-1])
    assert b.probabilities == a.probabilities and b.label == a.label
    rows, columns = supine.array.shape[1:]
    for sa, sb in zip(a.slices, b.slices):
        assert sa.probabilities == sb.probabilities
        assert [(bx.x0, bx.y0, bx.x1, bx.y1) for bx in sb.boxes] == [
            (columns - 1 - bx.x1, rows - 1 - bx.y1, columns - 1 - bx.x0, rows - 1 - bx.y0) for bx in sa.boxes]
    assert a.maps and a.maps.keys() == b.maps.keys()
    for k in a.maps:
        for ma, mb in zip((a.maps[k].joint, *a.maps[k].cams), (b.maps[k].joint, *b.maps[k].cams)):
            np.testing.assert_allclose(mb, ma[::-1, ::-1], atol=1e-5 * max(1e-30, float(np.abs(ma).max())))
    k = next(iter(b.maps))  # the viewer's on-demand maps of the prone series: on its pixels too
    again = slice_maps(prone, bundle, k, b.lung_mask)
    np.testing.assert_allclose(again.joint, b.maps[k].joint, atol=1e-5 * max(1e-30, float(b.maps[k].joint.max())))
    np.testing.assert_array_equal(prone.array, stored)


def test_a_read_only_prone_volume_is_analysed_from_a_mirrored_copy(tiny_bundle, supine_and_prone):
    supine, prone = (load_study(path) for path in supine_and_prone)
    prone.array.flags.writeable = False
    stored = prone.array
    bundle = load_bundle(str(tiny_bundle), device="cpu")
    a, b = analyze(supine, bundle, saliency="none"), analyze(prone, bundle, saliency="none")
    assert prone.array is stored and b.probabilities == a.probabilities
    np.testing.assert_array_equal(b.lung_mask, a.lung_mask[:, ::-1, ::-1])


def test_only_an_axial_dicom_series_is_turned(supine_and_prone):
    supine = load_study(supine_and_prone[0])
    for iop, axes in (((-1, 0, 0, 0, 1, 0), (2,)), ((1, 0, 0, 0, -1, 0), (1,)), ((0, 1, 0, 1, 0, 0), ())):
        supine.image_orientation_patient = [iop] * supine.n_slices
        assert canonical_axes(supine) == axes
    supine.kind = "nifti"  # a NIfTI affine is often a placeholder: never trusted to turn an image
    supine.image_orientation_patient = [(-1, 0, 0, 0, -1, 0)] * supine.n_slices
    assert canonical_axes(supine) == ()


def _nifti(array: np.ndarray, spacing_mm: tuple[float, float, float], path: Path) -> Path:
    """``array`` (slices, rows, columns) written as a NIfTI file with a placeholder-like affine (the spacing only)."""
    import nibabel as nib

    dz, dy, dx = spacing_mm
    nib.save(nib.Nifti1Image(np.ascontiguousarray(array.transpose(2, 1, 0)).astype(np.int16),
                             np.diag([dx, dy, dz, 1.0])), path)
    return path


def test_a_nifti_volume_stored_upside_down_is_turned_and_answered_on_its_own_pixels(tiny_bundle, tmp_path):
    from training.phantom import generate_study

    study = generate_study(5, "COVID", size=96, n_slices=12)
    spacing = (5.0, 3.6, 3.6)
    upright = load_study(_nifti(study.hu, spacing, tmp_path / "upright.nii.gz"))
    turned = load_study(_nifti(study.hu[:, ::-1], spacing, tmp_path / "turned.nii.gz"))
    assert dependent_gradient_hu(upright.array) >= DEPENDENT_TURNED_HU  # the phantom's dependent density
    assert posterior_bone_share(upright.array) > BONE_BELOW_UPRIGHT  # and its spine and ribs behind the lungs
    assert not looks_upside_down(upright) and looks_upside_down(turned)
    assert canonical_axes(turned) == ()  # the affine (a placeholder here) is not what turns it
    assert study_axes(upright) == ()
    bundle = load_bundle(str(tiny_bundle), device="cpu")  # the orientation does not depend on the model
    stored = turned.array.copy()
    a = analyze(upright, bundle, saliency="positive")
    with pytest.warns(UserWarning, match="stored upside down"):  # the CLI lists it among the reading warnings
        b = analyze(turned, bundle, saliency="positive")
    np.testing.assert_array_equal(turned.array, stored)
    assert b.probabilities == a.probabilities and b.label == a.label
    np.testing.assert_array_equal(b.lung_mask, a.lung_mask[:, ::-1])
    np.testing.assert_array_equal(b.opacity_mask, a.opacity_mask[:, ::-1])
    rows = upright.array.shape[1]
    for sa, sb in zip(a.slices, b.slices):
        assert [(bx.x0, bx.y0, bx.x1, bx.y1) for bx in sb.boxes] == [
            (bx.x0, rows - 1 - bx.y1, bx.x1, rows - 1 - bx.y0) for bx in sa.boxes]
    assert b.maps.keys() == a.maps.keys()
    for k in b.maps:
        np.testing.assert_allclose(b.maps[k].joint, a.maps[k].joint[::-1],
                                   atol=1e-5 * max(1e-30, float(np.abs(a.maps[k].joint).max())))


def test_a_lung_without_a_dependent_gradient_is_analysed_as_stored():
    flat = np.full((12, 64, 64), -1000.0, dtype=np.float32)
    flat[:, 8:56, 8:56] = 40.0  # a body
    flat[:, 16:48, 12:30] = flat[:, 16:48, 34:52] = -850.0  # two lungs of one density
    assert dependent_gradient_hu(flat) == 0.0
    assert dependent_gradient_hu(np.full((4, 32, 32), 40.0, dtype=np.float32)) is None  # no lung at all


def two_lungs_and_a_spine(top_hu: float, bottom_hu: float, spine_rows: slice) -> np.ndarray:
    """A 12-slice chest: a body, two lungs running from ``top_hu`` at the top to ``bottom_hu`` at the bottom, and a
    block of cortical bone over ``spine_rows``."""
    hu = np.full((12, 64, 64), -1000.0, dtype=np.float32)
    hu[:, 4:60, 6:58] = 40.0
    hu[:, 14:46, 10:30] = hu[:, 14:46, 34:54] = np.linspace(top_hu, bottom_hu, 32, dtype=np.float32)[:, None]
    hu[:, spine_rows, 28:36] = 800.0
    return hu


def test_a_nifti_volume_is_turned_only_when_its_lung_and_its_bone_both_say_so():
    for top, bottom, spine, turned in ((-850, -700, slice(48, 56), False),  # upright: denser below, spine below
                                       (-700, -850, slice(6, 13), True),  # upside down: both signs say so
                                       (-700, -850, slice(48, 56), False),  # the lung alone says so
                                       (-850, -700, slice(6, 13), False)):  # the bone alone says so
        volume = Volume(array=two_lungs_and_a_spine(top, bottom, spine), kind="nifti", is_hu=True,
                        spacing_mm=(5.0, 5.0, 5.0))
        assert looks_upside_down(volume) is turned, (top, bottom, spine)
        volume.kind = "dicom-series"  # a DICOM series is turned by its orientation alone
        assert not looks_upside_down(volume)
    assert posterior_bone_share(two_lungs_and_a_spine(-850, -700, slice(48, 56))) == 1.0
    assert posterior_bone_share(two_lungs_and_a_spine(-850, -700, slice(0, 0))) is None  # no bone to judge by


def test_real_scans_turned_upside_down_are_turned_back_and_upright_ones_never(shared_data):
    """Every real scan here stored upright is left as it is, and stored upside down as a NIfTI volume is turned
    back, but RICORD positive patient_2, a CT angiogram slab whose lung fills too little of the body to be judged.
    LIDC-IDRI-0001 is contrast-enhanced (the least bone share behind the lungs' centre, 0.67), LIDC-IDRI-0002 has
    the smallest dependent gradient (26 HU)."""
    scans = sorted((shared_data / "real-ct" / "ricord-slabs").glob("covid-*/patient_*"))
    scans += sorted((shared_data / "real-ct" / "lidc-idri").glob("LIDC-IDRI-*"))
    scans += sorted((shared_data / "real-ct" / "tcia-lung-pet-ct-dx" / "Lung-PET-CT-Dx").glob("Lung_Dx-*"))
    assert len(scans) == 13
    undecided = []
    for path in scans:
        volume = load_study(path)
        assert canonical_axes(volume) == ()  # stored upright, as its orientation says
        volume.kind = "nifti"
        assert study_axes(volume) == (), path  # upright: never turned
        volume.array = np.ascontiguousarray(volume.array[:, ::-1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "stored upside down", said when it turns one
            turned = study_axes(volume)
        if turned != (1,):
            undecided.append((path.parent.name, path.name, dependent_gradient_hu(volume.array),
                              posterior_bone_share(volume.array)))
    assert [u[:2] for u in undecided] == [("covid-positive", "patient_2")], undecided

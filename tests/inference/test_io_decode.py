"""Compressed series are decoded on workers (threads for JPEG 2000, whose imagecodecs codec releases the GIL;
processes for syntaxes pylibjpeg decodes holding it): the volume must be the one a single worker decodes, slice for
slice, with the geometry in the same order, and JPEG 2000 pixels must be pydicom's, on the real scans too."""
from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut
from pydicom.uid import JPEG2000Lossless, RLELossless

from inference import io as study_io

SHARED = Path(os.environ.get("LUNGSCOPE_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
LIDC = SHARED / "real-ct" / "lidc-idri" / "LIDC-IDRI-0002"
LIDC_ALL = SHARED / "real-ct" / "lidc-idri"


def load_with(monkeypatch, processes: int, path: Path) -> study_io.Volume:
    monkeypatch.setenv("LUNGSCOPE_DECODE_PROCESSES", str(processes))
    return study_io.load_study(path)


def compressed_series(folder: Path, syntax: pydicom.uid.UID) -> Path:
    """A phantom series stored in ``syntax`` (one pydicom encodes with the codecs the project installs)."""
    from training.phantom import generate_study, write_dicom_series

    for path in write_dicom_series(generate_study(9, "COVID", size=64, n_slices=10), folder):
        ds = pydicom.dcmread(path)
        ds.compress(syntax)
        ds.save_as(path)
    return folder


@pytest.fixture(scope="module")
def rle_series(tmp_path_factory) -> Path:
    return compressed_series(tmp_path_factory.mktemp("rle"), RLELossless)


@pytest.fixture(scope="module")
def j2k_series(tmp_path_factory) -> Path:
    return compressed_series(tmp_path_factory.mktemp("j2k"), JPEG2000Lossless)


def executor_kind(monkeypatch, folder: Path, workers: int) -> type | None:
    monkeypatch.setenv("LUNGSCOPE_DECODE_PROCESSES", str(workers))
    executor = study_io._decode_executor([pydicom.dcmread(path) for path in sorted(folder.iterdir())])
    if executor is None:
        return None
    executor.shutdown()
    return type(executor)


def test_compressed_slices_decoded_on_processes_match_one_process(monkeypatch, rle_series):
    one = load_with(monkeypatch, 1, rle_series)
    many = load_with(monkeypatch, 2, rle_series)
    assert executor_kind(monkeypatch, rle_series, 2) is ProcessPoolExecutor, \
        "RLE (pydicom's decoder holds the GIL) on two CPUs goes through the decode processes"
    assert executor_kind(monkeypatch, rle_series, 1) is None
    # No decode process outlives the load: a forked child keeps a copy of every descriptor the parent had open (a
    # browser driver's pipe, a web server's client sockets), so a lingering one kept those open after their owner
    # closed them (the browser tests hung at exit on exactly this).
    assert multiprocessing.active_children() == []
    np.testing.assert_array_equal(many.array, one.array)
    assert many.sop_instance_uids == one.sop_instance_uids and many.z_mm == one.z_mm
    assert one.array.min() < -500 < one.array.max()  # HU after the modality LUT, not raw stored values


def test_jpeg2000_decoded_on_threads_gives_pydicoms_pixels(monkeypatch, j2k_series):
    assert executor_kind(monkeypatch, j2k_series, 2) is ThreadPoolExecutor
    one = load_with(monkeypatch, 1, j2k_series)
    many = load_with(monkeypatch, 2, j2k_series)
    np.testing.assert_array_equal(many.array, one.array)
    for path in j2k_series.iterdir():
        ds = pydicom.dcmread(path)
        np.testing.assert_array_equal(study_io._gil_free_frames(ds)[0], ds.pixel_array)
        np.testing.assert_array_equal(one.array[one.sop_instance_uids.index(ds.SOPInstanceUID)],
                                      apply_modality_lut(ds.pixel_array, ds))
    assert one.array.min() < -500 < one.array.max()  # HU after the modality LUT


def test_a_jpeg2000_codestream_that_disagrees_with_its_header_is_left_to_pydicom(j2k_series):
    """An unsigned codestream in a header that says signed (as some archives write): pydicom reconciles the two,
    so imagecodecs' pixels are not used."""
    ds = pydicom.dcmread(next(j2k_series.iterdir()))
    assert ds.PixelRepresentation == 0 and study_io._gil_free_frames(ds) is not None
    ds.PixelRepresentation = 1
    assert study_io._gil_free_frames(ds) is None
    np.testing.assert_array_equal(study_io._pixels(ds)[0], apply_modality_lut(ds.pixel_array, ds))


@pytest.mark.skipif(not LIDC_ALL.exists(), reason=f"real LIDC-IDRI scans not found at {LIDC_ALL}")
def test_the_real_jpeg2000_scans_decode_to_pydicoms_pixels_on_threads(monkeypatch):
    files = [f for scan in sorted(p for p in LIDC_ALL.iterdir() if p.is_dir())
             for f in sorted(scan.rglob("*.dcm"))[::40]]
    assert len(files) >= 12
    for path in files:
        ds = pydicom.dcmread(path)
        np.testing.assert_array_equal(study_io._gil_free_frames(ds)[0], ds.pixel_array)
    scan = sorted(LIDC.rglob("*.dcm"))[:24]
    one = load_with(monkeypatch, 1, scan)
    many = load_with(monkeypatch, 2, scan)
    np.testing.assert_array_equal(many.array, one.array)
    assert many.array.shape == (24, 512, 512)


VARIANTS = SHARED / "dicom-variants"


@pytest.mark.skipif(not VARIANTS.exists(), reason=f"pydicom's test files not found at {VARIANTS}")
def test_every_jpeg2000_variant_decodes_to_pydicoms_pixels_or_is_left_to_it():
    """pydicom's JPEG 2000 test files: lossless and lossy, single and multi-frame, signed and unsigned give pydicom's
    pixels; the one whose codestream's signedness disagrees with its header (J2K_pixelrep_mismatch) is left to
    pydicom, which reconciles them."""
    decoded, left = [], []
    for path in sorted(p for p in VARIANTS.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path)
        except Exception:  # not DICOM (licences, manifests) or deliberately broken
            continue
        if ds.file_meta.get("TransferSyntaxUID") not in study_io.GIL_FREE_SYNTAXES or "PixelData" not in ds:
            continue
        frames = study_io._gil_free_frames(ds)
        if frames is None:
            left.append(path.name)
            continue
        expected = ds.pixel_array
        np.testing.assert_array_equal(frames, expected if frames.shape[0] > 1 else expected[None], err_msg=path.name)
        decoded.append((path.name, frames.shape[0]))
    assert "J2K_pixelrep_mismatch.dcm" in left
    assert len(decoded) >= 4 and any(n > 1 for _, n in decoded), decoded


@pytest.mark.parametrize("workers", [1, 2])
def test_a_slice_that_cannot_be_decoded_is_named(monkeypatch, j2k_series, tmp_path, workers):
    """Damage inside a stored slice's data is found when the study is read: the error names the slice."""
    import shutil

    folder = tmp_path / "series"
    shutil.copytree(j2k_series, folder)
    victim = sorted(folder.iterdir())[3]
    ds = pydicom.dcmread(victim)
    frame = next(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = pydicom.encaps.encapsulate([frame[: len(frame) // 2]])
    ds.save_as(victim)
    with pytest.raises(study_io.LoadError, match=rf"slice \d+ of 10 \(SOP Instance UID {ds.SOPInstanceUID}\): "
                                                 r"cannot decode pixel data \(JPEG 2000"):
        load_with(monkeypatch, workers, folder)

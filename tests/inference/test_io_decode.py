"""Compressed series are decoded on worker processes (pylibjpeg's codecs hold the GIL): the volume must be the one
a single process decodes, slice for slice, with the geometry in the same order; and the real JPEG 2000 scan too."""
from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import RLELossless

from inference import io as study_io

SHARED = Path(os.environ.get("LUNGSCOPE_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
LIDC = SHARED / "real-ct" / "lidc-idri" / "LIDC-IDRI-0002"


def load_with(monkeypatch, processes: int, path: Path) -> study_io.Volume:
    monkeypatch.setenv("LUNGSCOPE_DECODE_PROCESSES", str(processes))
    return study_io.load_study(path)


@pytest.fixture(scope="module")
def rle_series(tmp_path_factory) -> Path:
    """A phantom series stored RLE Lossless (a compressed syntax pydicom encodes without extra codecs)."""
    from training.phantom import generate_study, write_dicom_series

    folder = tmp_path_factory.mktemp("rle")
    for path in write_dicom_series(generate_study(9, "COVID", size=64, n_slices=10), folder):
        ds = pydicom.dcmread(path)
        ds.compress(RLELossless)
        ds.save_as(path)
    return folder


def test_compressed_slices_decoded_on_processes_match_one_process(monkeypatch, rle_series):
    one = load_with(monkeypatch, 1, rle_series)
    many = load_with(monkeypatch, 2, rle_series)
    series = [pydicom.dcmread(path) for path in sorted(rle_series.iterdir())]
    assert study_io._decode_processes(series) == 2, "a compressed series on two CPUs goes through the decode processes"
    # No decode process outlives the load: a forked child keeps a copy of every descriptor the parent had open (a
    # browser driver's pipe, a web server's client sockets), so a lingering one kept those open after their owner
    # closed them (the browser tests hung at exit on exactly this).
    assert multiprocessing.active_children() == []
    np.testing.assert_array_equal(many.array, one.array)
    assert many.sop_instance_uids == one.sop_instance_uids and many.z_mm == one.z_mm
    assert one.array.min() < -500 < one.array.max()  # HU after the modality LUT, not raw stored values


@pytest.mark.skipif(not LIDC.exists(), reason=f"real LIDC-IDRI scan not found at {LIDC}")
def test_the_real_jpeg2000_scan_decodes_the_same_on_processes(monkeypatch):
    files = sorted(LIDC.rglob("*.dcm"))[:24]
    one = load_with(monkeypatch, 1, files)
    many = load_with(monkeypatch, 2, files)
    np.testing.assert_array_equal(many.array, one.array)
    assert many.array.shape == (24, 512, 512)

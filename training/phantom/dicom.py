"""Write a phantom as a CT Image Storage series: one explicit-VR little-endian file per slice, no private tags.

Pixels are stored unsigned (HU + 1024, PixelRepresentation 0) with RescaleSlope 1 / RescaleIntercept -1024, the
common 12-bit CT convention. UIDs derive from the seed, so rewriting a study gives the same identifiers (uploads of
the same phantom are duplicates, not new studies). The class appears only in StudyDescription ("PHANTOM COVID").
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

from .profiles import PROFILES
from .study import PhantomStudy

INTERCEPT = -1024


def _uid(study: PhantomStudy, *parts: object) -> str:
    return generate_uid(entropy_srcs=["lungscope-phantom", study.patient_id, str(study.seed), study.label,
                                      *map(str, parts)])


def study_uids(study: PhantomStudy) -> dict[str, str]:
    """The deterministic study, series and frame-of-reference UIDs of a phantom."""
    return {"StudyInstanceUID": _uid(study, "study"), "SeriesInstanceUID": _uid(study, "series"),
            "FrameOfReferenceUID": _uid(study, "frame")}


def _base_dataset(study: PhantomStudy) -> Dataset:
    prof = PROFILES[study.profile]
    date = (dt.date(2020, 1, 1) + dt.timedelta(days=study.seed % 900)).strftime("%Y%m%d")
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Modality = "CT"
    ds.BodyPartExamined = "CHEST"
    ds.PatientID = study.patient_id
    ds.PatientName = f"Phantom^{study.seed:06d}"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "090000"
    ds.AccessionNumber = f"PH{study.seed:08d}"[:16]
    ds.StudyID = str(study.seed % 10_000_000)
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = f"PHANTOM {study.label}"
    ds.SeriesDescription = f"Chest {prof.slice_thickness_mm:g}mm {study.profile}"
    ds.SeriesNumber = 1
    ds.AcquisitionNumber = 1
    ds.Manufacturer = prof.manufacturer
    ds.ManufacturerModelName = f"lungscope phantom {study.profile}"
    ds.KVP = prof.kvp
    ds.PatientPosition = "FFS"
    ds.PositionReferenceIndicator = ""
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [round(study.spacing_mm[1], 6), round(study.spacing_mm[2], 6)]
    ds.SliceThickness = study.slice_thickness_mm
    ds.SpacingBetweenSlices = round(study.spacing_mm[0], 6)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = study.hu.shape[1:]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = INTERCEPT, 1, "HU"
    ds.WindowCenter, ds.WindowWidth = -600, 1500
    ds.update(study_uids(study))
    return ds


def write_dicom_series(study: PhantomStudy, out_dir: str | Path, **tags: Any) -> list[Path]:
    """Write every slice to ``out_dir`` as ``IM0001.dcm``...; ``tags`` (keyword=value) override header elements.

    The per-slice elements (SOPInstanceUID, InstanceNumber, ImagePositionPatient, SliceLocation) are always derived.

    Slice ``k`` sits at z = k * spacing (increasing towards the head); the in-plane origin centres the image on
    the scanner axis, matching the phantom's millimetre coordinates.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n, rows, cols = study.hu.shape
    dz, dy, dx = study.spacing_mm
    x0, y0 = -(cols - 1) / 2.0 * dx, -(rows - 1) / 2.0 * dy
    template = _base_dataset(study)
    template.update(tags)
    stored = (study.hu.astype(np.int32) - INTERCEPT).astype(np.uint16)
    paths: list[Path] = []
    for k in range(n):
        ds = Dataset()
        ds.update(template)
        ds.SOPInstanceUID = _uid(study, "sop", k)
        ds.InstanceNumber = k + 1
        z = round(k * dz, 4)
        ds.ImagePositionPatient = [round(x0, 4), round(y0, 4), z]
        ds.SliceLocation = z
        ds.PixelData = stored[k].tobytes()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.file_meta = meta
        path = out / f"IM{k + 1:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths

"""2D research images (PNG/JPEG slices, already windowed, not Hounsfield units) as Secondary Capture DICOM.

Each image becomes a one-slice study so it can travel through the same archive, viewer and analysis as real CT.
Every UID and time stamp derives from the image's bytes and modification time, so importing the same file again
produces the same DICOM bytes and is recognised as a duplicate rather than a new study.
"""
from __future__ import annotations

import datetime
import hashlib
import io
from pathlib import Path

import numpy as np
from highdicom import PatientOrientationValuesBiped
from highdicom.sc import SCImage
from PIL import Image, UnidentifiedImageError
from pydicom.uid import ExplicitVRLittleEndian

from .dicom_tags import derived_uid

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


class ImageError(ValueError):
    """The file is not an image Pillow can read."""


def read_grayscale(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        # DecompressionBombError: a header claiming billions of pixels (not an OSError, it would end the import)
        raise ImageError(f"not a readable PNG/JPEG image: {exc}") from None


def image_to_dicom(path: Path, label: str) -> bytes:
    """A Part 10 Secondary Capture file (Modality CT: these are CT slices, captured) for one image."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    pixels = read_grayscale(path)
    captured = datetime.datetime.fromtimestamp(int(path.stat().st_mtime), tz=datetime.UTC)
    image = SCImage(
        pixel_array=pixels,
        photometric_interpretation="MONOCHROME2",
        bits_allocated=8,
        coordinate_system="PATIENT",
        patient_orientation=(PatientOrientationValuesBiped.L, PatientOrientationValuesBiped.P),
        study_instance_uid=derived_uid("image-study", digest),
        series_instance_uid=derived_uid("image-series", digest),
        sop_instance_uid=derived_uid("image-instance", digest),
        series_number=1,
        instance_number=1,
        manufacturer="lungscope import_images",
        patient_id=f"IMG-{digest[:12]}",
        study_id=digest[:16],
        accession_number="",
        study_date=captured.date(),
        study_time=captured.time(),
        content_date=captured.date(),
        content_time=captured.time(),
        series_description=path.name[:64],
        transfer_syntax_uid=ExplicitVRLittleEndian,
    )
    image.Modality = "CT"
    image.StudyDescription = f"Image import: {label}"[:64]
    for date_keyword, time_keyword in (("InstanceCreationDate", "InstanceCreationTime"),
                                       ("DateOfSecondaryCapture", "TimeOfSecondaryCapture")):
        setattr(image, date_keyword, captured.strftime("%Y%m%d"))
        setattr(image, time_keyword, captured.strftime("%H%M%S"))
    for equipment in image.get("ContributingEquipmentSequence", []):
        equipment.ContributionDateTime = captured.strftime("%Y%m%d%H%M%S")
    buffer = io.BytesIO()
    image.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()

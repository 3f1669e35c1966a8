"""The attributes lungscope indexes from a DICOM header, read once into a plain record.

Every way in (upload, STOW-RS, import commands) funnels through ``IndexedAttributes.from_dataset`` so the
rules for missing or odd values live in one place:

* identifying UIDs fall back to the file meta (SOP class/instance) or, when a de-identification tool blanked
  them, to UIDs derived deterministically from the tags that do remain, so every file of such a series lands in
  the same series and re-sending it is recognised as a duplicate;
* Enhanced CT keeps its geometry in functional groups, read from the shared / first per-frame group;
* text is cut to the column widths instead of failing on over-long values from sloppy writers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.2"
CT_SOP_CLASSES = frozenset({CT_IMAGE_STORAGE, ENHANCED_CT_IMAGE_STORAGE, LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE})
SECONDARY_CAPTURE_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def text(ds: Dataset, keyword: str, max_length: int | None = None) -> str:
    """A tag's value as stripped text ('' when absent or empty), cut to ``max_length``."""
    value = ds.get(keyword)
    if value is None:
        return ""
    value = str(value).strip().replace("\x00", "")
    return value[:max_length] if max_length else value


def number(ds: Dataset | None, keyword: str, cast: type = float) -> Any:
    """A numeric tag as ``cast`` or None when absent or unparsable (IS/DS written as free text happen)."""
    if ds is None:
        return None
    try:
        value = ds.get(keyword)
        return None if value in (None, "") else cast(value)
    except (TypeError, ValueError):
        return None


def floats(ds: Dataset | None, keyword: str, count: int) -> list[float] | None:
    """A multi-valued DS tag as ``count`` floats, or None when absent or malformed."""
    if ds is None:
        return None
    try:
        values = [float(v) for v in (ds.get(keyword) or [])]
    except (TypeError, ValueError):
        return None
    return values if len(values) == count else None


def _functional_group(ds: Dataset, sequence: str) -> Dataset | None:
    """The first item of a functional-group macro, looked up in the shared then the first per-frame group."""
    for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        for group in (ds.get(groups) or [])[:1]:
            items = group.get(sequence) or []
            if items:
                return items[0]
    return None


def _first(*values: Any) -> Any:
    """The first value that is not None (0.0 is a valid position, so ``or`` will not do)."""
    return next((v for v in values if v is not None), None)


def derived_uid(*parts: str) -> str:
    """A UID that is the same for the same inputs, for files whose identifying UIDs were blanked."""
    return generate_uid(entropy_srcs=[str(p) for p in parts])


@dataclass
class IndexedAttributes:
    """What the Patient / Study / Series / Instance rows hold for one file."""

    patient_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str
    study_instance_uid: str
    study_date: str
    study_time: str
    study_description: str
    accession_number: str
    referring_physician: str
    study_id: str
    series_instance_uid: str
    modality: str
    series_number: int | None
    series_description: str
    body_part_examined: str
    frame_of_reference_uid: str
    sop_class_uid: str
    sop_instance_uid: str
    instance_number: int | None
    image_position_patient: list[float] | None
    image_orientation_patient: list[float] | None
    pixel_spacing: list[float] | None
    slice_thickness: float | None
    slice_location: float | None
    rows: int
    columns: int
    number_of_frames: int
    samples_per_pixel: int
    bits_allocated: int
    transfer_syntax_uid: str
    derived: list[str] = field(default_factory=list)  # keywords filled in by lungscope, not read from the file

    @classmethod
    def from_dataset(cls, ds: Dataset) -> IndexedAttributes:
        meta = getattr(ds, "file_meta", None) or Dataset()
        derived: list[str] = []
        sop_class_uid = text(ds, "SOPClassUID", 64) or text(meta, "MediaStorageSOPClassUID", 64)
        sop_instance_uid = text(ds, "SOPInstanceUID", 64) or text(meta, "MediaStorageSOPInstanceUID", 64)
        if not text(ds, "SOPInstanceUID"):
            derived.append("SOPInstanceUID")
        if not text(ds, "SOPClassUID"):
            derived.append("SOPClassUID")

        study_uid = text(ds, "StudyInstanceUID", 64)
        if not study_uid:
            study_uid = derived_uid("study", text(ds, "PatientID"), text(ds, "StudyDate"), text(ds, "StudyTime"),
                                    text(ds, "AccessionNumber"), text(ds, "StudyID"), text(ds, "FrameOfReferenceUID"))
            derived.append("StudyInstanceUID")
        series_uid = text(ds, "SeriesInstanceUID", 64)
        if not series_uid:
            series_uid = derived_uid("series", study_uid, text(ds, "SeriesNumber"), text(ds, "SeriesDescription"),
                                     text(ds, "SeriesDate"), text(ds, "SeriesTime"), text(ds, "FrameOfReferenceUID"),
                                     text(ds, "Modality"))
            derived.append("SeriesInstanceUID")
        patient_id = text(ds, "PatientID", 64)
        if not patient_id:
            # Type 2 and often blanked by anonymisers: one anonymous patient per study, never one shared row.
            patient_id = f"ANON-{study_uid[-20:]}"
            derived.append("PatientID")
        modality = text(ds, "Modality", 16)
        if not modality and sop_class_uid in CT_SOP_CLASSES:
            modality = "CT"  # e.g. lungmask's sample slices carry the CT SOP class but no Modality
            derived.append("Modality")

        orientation_item = _functional_group(ds, "PlaneOrientationSequence")
        measures_item = _functional_group(ds, "PixelMeasuresSequence")
        position_item = _functional_group(ds, "PlanePositionSequence")
        return cls(
            patient_id=patient_id,
            patient_name=text(ds, "PatientName", 324),
            patient_birth_date=text(ds, "PatientBirthDate", 8),
            patient_sex=text(ds, "PatientSex", 16),
            study_instance_uid=study_uid,
            study_date=text(ds, "StudyDate", 8),
            study_time=text(ds, "StudyTime", 16),
            study_description=text(ds, "StudyDescription", 64),
            accession_number=text(ds, "AccessionNumber", 16),
            referring_physician=text(ds, "ReferringPhysicianName", 324),
            study_id=text(ds, "StudyID", 16),
            series_instance_uid=series_uid,
            modality=modality,
            series_number=number(ds, "SeriesNumber", int),
            series_description=text(ds, "SeriesDescription", 64),
            body_part_examined=text(ds, "BodyPartExamined", 16),
            frame_of_reference_uid=text(ds, "FrameOfReferenceUID", 64),
            sop_class_uid=sop_class_uid,
            sop_instance_uid=sop_instance_uid,
            instance_number=number(ds, "InstanceNumber", int),
            image_position_patient=_first(floats(ds, "ImagePositionPatient", 3),
                                          floats(position_item, "ImagePositionPatient", 3)),
            image_orientation_patient=_first(floats(ds, "ImageOrientationPatient", 6),
                                             floats(orientation_item, "ImageOrientationPatient", 6)),
            pixel_spacing=_first(floats(ds, "PixelSpacing", 2), floats(measures_item, "PixelSpacing", 2)),
            slice_thickness=_first(number(ds, "SliceThickness"), number(measures_item, "SliceThickness")),
            slice_location=number(ds, "SliceLocation"),
            rows=number(ds, "Rows", int) or 0,
            columns=number(ds, "Columns", int) or 0,
            number_of_frames=number(ds, "NumberOfFrames", int) or 1,
            samples_per_pixel=number(ds, "SamplesPerPixel", int) or 1,
            bits_allocated=number(ds, "BitsAllocated", int) or 0,
            transfer_syntax_uid=text(meta, "TransferSyntaxUID", 64),
            derived=derived,
        )

    @property
    def decoded_frame_bytes(self) -> int:
        """Bytes one decoded frame takes, from the header alone (checked before anything is decoded)."""
        return self.rows * self.columns * self.samples_per_pixel * max(self.bits_allocated, 8) // 8

    def identifying_overrides(self) -> dict[str, str]:
        """The derived values keyed by keyword, for WADO-RS metadata to show what the index holds."""
        return {keyword: getattr(self, _FIELD_OF[keyword]) for keyword in self.derived}


_FIELD_OF = {
    "SOPInstanceUID": "sop_instance_uid",
    "SOPClassUID": "sop_class_uid",
    "StudyInstanceUID": "study_instance_uid",
    "SeriesInstanceUID": "series_instance_uid",
    "PatientID": "patient_id",
    "Modality": "modality",
}

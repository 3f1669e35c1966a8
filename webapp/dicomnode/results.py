"""The DICOM objects that carry an analysis back to the PACS, all referencing the analysed CT series:

* the TID 1500 Structured Report built by the SR export (``curation.exporters.sr.build_report``): the AI's label
  and boxes straight after analysis (``sr_version`` 1), or the clinician's decision and reviewed boxes when a review
  is re-sent (2, 3, ...);
* a DICOM Segmentation (highdicom) with the boxes as a binary lesion segment on the source slices, so a PACS viewer
  overlays them (only when there are boxes: an empty segmentation carries nothing);
* a Secondary Capture of the key slice with the boxes drawn, for viewers that show nothing else.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
from PIL import Image, ImageDraw
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from webapp.analysis.models import AnalysisRun
from webapp.curation.exporters import read_dataset
from webapp.curation.exporters.sr import SR_SERIES_NUMBER, STUDY_LABEL_CODES, build_report
from webapp.curation.services import freeze_study, spatial_instances
from webapp.review.models import Box

SEG_SERIES_NUMBER = SR_SERIES_NUMBER + 1
SC_SERIES_NUMBER = SR_SERIES_NUMBER + 2
MANUFACTURER = "lungscope"
LUNG_WINDOW = (-1350.0, 150.0)  # HU shown in the secondary capture (centre -600, width 1500)


class ResultsError(RuntimeError):
    """The run cannot be turned into DICOM results (no series, images gone); retrying will not help."""


@dataclass
class ResultSet:
    datasets: list[pydicom.Dataset] = field(default_factory=list)

    @property
    def sop_instance_uids(self) -> list[str]:
        return [str(ds.SOPInstanceUID) for ds in self.datasets]


def report_content(run: AnalysisRun, sr_version: int) -> SimpleNamespace:
    """What the SR says: the AI's result for version 1, the current review (decision, kept boxes) after that."""
    if sr_version > 1:
        if not hasattr(run.study, "decision"):
            raise ResultsError("the study has no clinician decision to re-send")
        frozen = freeze_study(run.study)
        return SimpleNamespace(final_label=frozen["final_label"], boxes=frozen["boxes"])
    boxes = [{"id": b.pk, "sop_instance_uid": b.sop_instance_uid, "x0": b.x0, "y0": b.y0, "x1": b.x1, "y1": b.y1,
              "label": b.label, "provenance": b.provenance}
             for b in Box.objects.filter(analysis_run=run, provenance=Box.Provenance.AI).order_by("pk")]
    label = run.label.lower() if run.label.lower() in STUDY_LABEL_CODES else "indeterminate"
    return SimpleNamespace(final_label=label, boxes=boxes)


def build_results(run: AnalysisRun, sr_version: int = 1) -> ResultSet:
    """SR, Segmentation (when there are boxes) and Secondary Capture for ``run``."""
    if run.series is None:
        raise ResultsError(f"analysis run {run.pk} has no analysed series")
    instances = spatial_instances(run.series)
    if not instances:
        raise ResultsError(f"the analysed series of run {run.pk} has no stored images")
    content = report_content(run, sr_version)
    headers = {i.sop_instance_uid: read_dataset(i, pixels=False) for i in instances}
    content.boxes = [b for b in content.boxes if b["sop_instance_uid"] in headers]
    results = ResultSet()
    sr = build_report(content, headers)
    sr.SeriesDescription = f"lungscope AI report v{sr_version}"
    results.datasets.append(sr)
    if content.boxes:
        results.datasets.append(segmentation(instances, headers, content.boxes))
    results.datasets.append(secondary_capture(run, instances, content))
    return results


def segmentation(instances, headers: dict[str, pydicom.Dataset], boxes: list[dict[str, Any]]) -> hd.seg.Segmentation:
    """The boxes as one binary "lesion" segment over the source slices (frames without boxes are omitted)."""
    sources = [headers[i.sop_instance_uid] for i in instances]
    index = {i.sop_instance_uid: n for n, i in enumerate(instances)}
    first = sources[0]
    mask = np.zeros((len(sources), int(first.Rows), int(first.Columns)), dtype=bool)
    for box in boxes:
        mask[index[box["sop_instance_uid"]], box["y0"]:box["y1"] + 1, box["x0"]:box["x1"] + 1] = True
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label="lesion boxes",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="lungscope", version="1", family=codes.cid7162.ArtificialIntelligence),
    )
    return hd.seg.Segmentation(
        source_images=sources, pixel_array=mask, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment], series_instance_uid=generate_uid(), series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer=MANUFACTURER,
        manufacturer_model_name="lungscope", software_versions="lungscope", device_serial_number="0",
        series_description="lungscope AI lesion boxes", transfer_syntax_uid=ExplicitVRLittleEndian,
    )


def key_slice(instances, content, run: AnalysisRun) -> int:
    """The slice with the most boxes, else the one the model found most likely of the study's label."""
    index = {i.sop_instance_uid: n for n, i in enumerate(instances)}
    if content.boxes:
        counts = np.bincount([index[b["sop_instance_uid"]] for b in content.boxes], minlength=len(instances))
        return int(counts.argmax())
    scores = {s.sop_instance_uid: s.probabilities.get(run.label, 0.0) for s in run.slices.all()}
    ranked = [(scores.get(i.sop_instance_uid, -1.0), n) for n, i in enumerate(instances)]
    return max(ranked)[1] if ranked else len(instances) // 2


def secondary_capture(run: AnalysisRun, instances, content) -> hd.sc.SCImage:
    """The key slice in a lung window, boxes drawn in red and the result written on it (RGB, 8 bit)."""
    n = key_slice(instances, content, run)
    source = read_dataset(instances[n])
    hu = source.pixel_array.astype(np.float32) * float(getattr(source, "RescaleSlope", 1)) + float(
        getattr(source, "RescaleIntercept", 0))
    low, high = LUNG_WINDOW
    gray = (np.clip((hu - low) / (high - low), 0, 1) * 255).astype(np.uint8)
    image = Image.fromarray(gray).convert("RGB")
    draw = ImageDraw.Draw(image)
    for box in content.boxes:
        if box["sop_instance_uid"] == instances[n].sop_instance_uid:
            draw.rectangle([box["x0"], box["y0"], box["x1"], box["y1"]], outline=(255, 0, 0), width=2)
    draw.text((8, 8), f"lungscope AI: {content.final_label}  (research use, not for diagnosis)", fill=(255, 255, 0))
    capture = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=np.asarray(image), photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="PATIENT", patient_orientation=patient_orientation(source),
        series_instance_uid=generate_uid(), sop_instance_uid=generate_uid(), series_number=SC_SERIES_NUMBER,
        instance_number=1, manufacturer=MANUFACTURER,
        series_description="lungscope AI key image", transfer_syntax_uid=ExplicitVRLittleEndian,
    )
    capture.SourceImageSequence = [pydicom.Dataset()]
    capture.SourceImageSequence[0].ReferencedSOPClassUID = source.SOPClassUID
    capture.SourceImageSequence[0].ReferencedSOPInstanceUID = source.SOPInstanceUID
    return capture


def patient_orientation(source: pydicom.Dataset) -> tuple[str, str]:
    """Patient Orientation (row, column directions) from the source's direction cosines, by their main axis."""
    cosines = [float(v) for v in getattr(source, "ImageOrientationPatient", [1, 0, 0, 0, 1, 0])]

    def letter(vector: list[float]) -> str:
        axis = int(np.argmax(np.abs(vector)))
        return ("LR", "PA", "HF")[axis][0 if vector[axis] > 0 else 1]

    return letter(cosines[:3]), letter(cosines[3:])


def encode(ds: pydicom.Dataset) -> bytes:
    """Part 10 bytes of a result (what STOW-RS sends)."""
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()

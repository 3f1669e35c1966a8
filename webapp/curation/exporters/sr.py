"""DICOM Structured Reports: per study a TID 1500 Measurement Report (Comprehensive 3D SR) beside its images.

The report holds the clinician's final label as a qualitative evaluation "Diagnosis" (a TID 1501 group) and one
planar ROI group (TID 1410) per surviving box: a closed POLYLINE image region on the source image (SOP instance
reference), the lesion label and the box's provenance as qualitative evaluations. A PACS or OHIF viewer shows the
regions on the images.

Coordinates follow DICOM SCOORD: (0, 0) is the top-left corner of the top-left pixel, so the inclusive pixel box
x0..x1, y0..y1 becomes the outline (x0, y0) -> (x1 + 1, y0) -> (x1 + 1, y1 + 1) -> (x0, y1 + 1) -> (x0, y0).

The series' images are written under ``<study_id>/images/`` so the export is self-contained; when de-identifying,
the report is built from the original images and then the images and the report go through the same
``Deidentifier``, whose UID map keeps the report's references pointing at the exported images.
"""
from __future__ import annotations

import io
from typing import Any

import highdicom as hd
import numpy as np
from pydicom.filewriter import dcmwrite
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from . import ExportContext, ExportError, Sink, frozen_instances, read_dataset

DIAGNOSIS = Code("439401001", "SCT", "Diagnosis")
LESION = Code("52988006", "SCT", "Lesion")
CT_CHEST = Code("24627-2", "LN", "CT Chest")
STUDY_LABEL_CODES = {
    "covid": Code("840539006", "SCT", "Disease caused by SARS-CoV-2"),
    "cap": Code("385093006", "SCT", "Community acquired pneumonia"),
    "np": Code("233604007", "SCT", "Pneumonia not present"),
    "indeterminate": Code("82334004", "SCT", "Indeterminate"),
}
BOX_LABEL_CODES = {
    "covid_lesion": Code("840539006", "SCT", "Disease caused by SARS-CoV-2"),
    "cap_lesion": Code("385093006", "SCT", "Community acquired pneumonia"),
    "other": Code("74964007", "SCT", "Other"),
}
# Private codes (99 prefix: local coding scheme) for how a box came to be.
PROVENANCE = Code("provenance", "99LUNGSCOPE", "Annotation provenance")
PROVENANCE_CODES = {
    "ai": Code("ai", "99LUNGSCOPE", "AI proposal, not reviewed"),  # results sent to PACS straight after analysis
    "ai_accepted": Code("ai_accepted", "99LUNGSCOPE", "AI proposal accepted by a reviewer"),
    "ai_edited": Code("ai_edited", "99LUNGSCOPE", "AI proposal edited by a reviewer"),
    "human": Code("human", "99LUNGSCOPE", "Drawn by a reviewer"),
}
SR_SERIES_NUMBER = 9001


def box_outline(box: dict[str, Any]) -> np.ndarray:
    x0, y0, x1, y1 = float(box["x0"]), float(box["y0"]), float(box["x1"]) + 1.0, float(box["y1"]) + 1.0
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=np.float32)


def build_report(item, evidence: dict[str, Any]) -> hd.sr.Comprehensive3DSR:
    """The SR for ``item``; ``evidence`` maps SOP instance UID -> the source image's header (no pixels)."""
    groups: list[Any] = [hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="study label"),
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(DIAGNOSIS, STUDY_LABEL_CODES[item.final_label])],
    )]
    for box in item.boxes:
        source = evidence[box["sop_instance_uid"]]
        region = hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=box_outline(box),
            source_image=hd.sr.SourceImageForRegion(source.SOPClassUID, source.SOPInstanceUID),
        )
        groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"box {box['id']}"),
            referenced_region=region, finding_type=LESION,
            qualitative_evaluations=[hd.sr.QualitativeEvaluation(DIAGNOSIS, BOX_LABEL_CODES[box["label"]]),
                                     hd.sr.QualitativeEvaluation(PROVENANCE, PROVENANCE_CODES[box["provenance"]])],
        ))
    observer = hd.sr.ObserverContext(
        observer_type=Code("121007", "DCM", "Device"),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name="lungscope review"),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=CT_CHEST, imaging_measurements=groups,
    )
    referenced = [evidence[b["sop_instance_uid"]] for b in item.boxes] or [next(iter(evidence.values()))]
    unique = list({ds.SOPInstanceUID: ds for ds in referenced}.values())
    return hd.sr.Comprehensive3DSR(
        evidence=unique, content=report[0], series_instance_uid=generate_uid(), series_number=SR_SERIES_NUMBER,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="lungscope", is_complete=True,
    )


def _dicom_bytes(ds) -> bytes:
    out = io.BytesIO()
    dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def write(items, sink: Sink, context: ExportContext) -> dict[str, Any]:
    reports = images = 0
    for n, item in enumerate(items):
        study_id = context.study_id(item)
        context.progress(n / max(1, len(items)), f"study {n + 1} of {len(items)}")
        try:
            instances = frozen_instances(item)
        except ExportError as exc:
            context.skipped[study_id] = str(exc)
            continue
        evidence = {i.sop_instance_uid: read_dataset(i, pixels=False) for i in instances}
        sr = build_report(item, evidence)
        for instance in instances:
            name = f"{study_id}/images/{context.sop_uid(instance.sop_instance_uid)}.dcm"
            if context.deid:
                sink.write_bytes(name, _dicom_bytes(context.deid.dataset(read_dataset(instance))))
            else:
                with sink.open(name) as dst, instance.file.open("rb") as src:
                    for chunk in iter(lambda: src.read(1 << 20), b""):
                        dst.write(chunk)
            images += 1
        if context.deid:
            context.deid.dataset(sr)
        sink.write_bytes(f"{study_id}/sr.dcm", _dicom_bytes(sr))
        reports += 1
    if not reports:
        raise ExportError("no study could be exported: " + "; ".join(sorted(set(context.skipped.values()))))
    return {"reports": reports, "images": images}

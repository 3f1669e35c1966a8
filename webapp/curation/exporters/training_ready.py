"""The training-ready layout that ``training.datasets.export_studies`` reads (see its module docstring).

Per study ``<study_id>/slices.npy`` (int16 HU, z,y,x, spatial order), ``spacing.json``, ``boxes.csv``
(slice_index,x0,y0,x1,y1,label), and one ``labels.csv`` row. Only studies whose final label is a class (NP, CAP,
COVID) go in; indeterminate ones are reported as skipped.
"""
from __future__ import annotations

import csv
import io
import json
from typing import Any

import numpy as np

from . import CLASS_KEYS, ExportContext, ExportError, Sink, boxes_by_slice

BOX_COLUMNS = ["slice_index", "x0", "y0", "x1", "y1", "label"]


def _csv_bytes(columns: list[str], rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def write(items, sink: Sink, context: ExportContext) -> dict[str, Any]:
    labels: list[dict[str, str]] = []
    for n, item in enumerate(items):
        study_id = context.study_id(item)
        context.progress(n / max(1, len(items)), f"study {n + 1} of {len(items)}")
        label = CLASS_KEYS.get(item.final_label)
        if label is None:
            context.skipped[study_id] = f"final label {item.final_label!r} is not a training class"
            continue
        volume = context.load_volume(item, study_id)
        if volume is None:
            continue
        hu = np.clip(np.rint(volume.array), -32768, 32767).astype(np.int16)
        with sink.open(f"{study_id}/slices.npy") as fh:
            np.save(fh, hu)
        spacing = [float(v) for v in volume.spacing_mm] if volume.spacing_mm else [1.0, 1.0, 1.0]
        sink.write_bytes(f"{study_id}/spacing.json", json.dumps({"spacing_mm": spacing}).encode())
        rows = [{"slice_index": z, **{k: box[k] for k in ("x0", "y0", "x1", "y1", "label")}}
                for z, boxes in sorted(boxes_by_slice(item, list(volume.sop_instance_uids)).items()) for box in boxes]
        sink.write_bytes(f"{study_id}/boxes.csv", _csv_bytes(BOX_COLUMNS, rows))
        labels.append({"study_id": study_id, "patient_id": context.patient_id(item), "label": label,
                       "source_group": ""})
    if not labels:
        raise ExportError("no study could be exported: " + "; ".join(sorted(set(context.skipped.values()))))
    sink.write_bytes("labels.csv", _csv_bytes(["study_id", "patient_id", "label", "source_group"], labels))
    return {"studies": len(labels)}

"""Study-level labels as one CSV: the clinician's final label beside the AI's (with its opacity % and whether the
study was outside the model's experience; empty when the AI did not say), reviewer and box count.

The study date is written only for identified exports; de-identified ones leave it empty.
"""
from __future__ import annotations

import io
from typing import Any

from . import ExportContext, Sink

COLUMNS = ["study_id", "patient_id", "study_date", "label", "ai_label", "agrees_with_ai", "ai_opacity_percent",
           "ai_outside", "reviewer", "boxes"]


def write(items, sink: Sink, context: ExportContext) -> dict[str, Any]:
    import csv as csvlib

    out = io.StringIO()
    writer = csvlib.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    for item in items:
        writer.writerow({
            "study_id": context.study_id(item),
            "patient_id": context.patient_id(item),
            "study_date": "" if context.deid else item.study_date,
            "label": item.final_label,
            "ai_label": item.ai_label,
            "agrees_with_ai": "" if not item.ai_label else str(item.ai_label.lower() == item.final_label).lower(),
            "ai_opacity_percent": "" if item.ai_opacity_percent is None else item.ai_opacity_percent,
            "ai_outside": "" if item.ai_outside is None else str(item.ai_outside).lower(),
            "reviewer": item.reviewer,
            "boxes": len(item.boxes),
        })
    sink.write_bytes("labels.csv", out.getvalue().encode())
    return {"studies": len(items)}

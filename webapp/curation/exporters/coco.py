"""COCO detection JSON: one image per slice that holds a surviving box, one annotation per box.

``annotations.json`` follows the COCO object-detection format (bbox = [x, y, width, height] in pixels, x = column,
top-left corner of the top-left pixel at 0,0, so an inclusive box x0..x1 has width x1 - x0 + 1). The slices are
written beside it as 8-bit PNGs in a lung window (level -600 HU, width 1500) under ``images/``. Extra keys
(``study_id``, ``sop_instance_uid``, ``slice_index``, ``study_label``, ``provenance``) carry what COCO has no
field for; COCO readers ignore them.
"""
from __future__ import annotations

import io
import json
from datetime import datetime, UTC
from typing import Any

import numpy as np
from PIL import Image

from . import ExportContext, Sink, boxes_by_slice

CATEGORIES = [
    {"id": 1, "name": "covid_lesion", "supercategory": "lesion"},
    {"id": 2, "name": "cap_lesion", "supercategory": "lesion"},
    {"id": 3, "name": "other", "supercategory": "lesion"},
]
CATEGORY_IDS = {c["name"]: c["id"] for c in CATEGORIES}
WINDOW_LEVEL, WINDOW_WIDTH = -600.0, 1500.0


def lung_window_png(hu: np.ndarray) -> bytes:
    lo = WINDOW_LEVEL - WINDOW_WIDTH / 2
    grey = np.clip((hu.astype(np.float32) - lo) / WINDOW_WIDTH * 255.0, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(grey).save(out, format="PNG")
    return out.getvalue()


def write(items, sink: Sink, context: ExportContext) -> dict[str, Any]:
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for n, item in enumerate(items):
        study_id = context.study_id(item)
        context.progress(n / max(1, len(items)), f"study {n + 1} of {len(items)}")
        if not item.boxes:
            continue
        volume = context.load_volume(item, study_id)
        if volume is None:
            continue
        uids = list(volume.sop_instance_uids)
        for z, boxes in sorted(boxes_by_slice(item, uids).items()):
            image_id = len(images) + 1
            file_name = f"images/{study_id}/{z:04d}.png"
            sink.write_bytes(file_name, lung_window_png(volume.array[z]))
            height, width = volume.array.shape[1:]
            images.append({"id": image_id, "file_name": file_name, "width": int(width), "height": int(height),
                           "study_id": study_id, "sop_instance_uid": context.sop_uid(uids[z]), "slice_index": z,
                           "study_label": item.final_label})
            for box in boxes:
                w, h = box["x1"] - box["x0"] + 1, box["y1"] - box["y0"] + 1
                annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                    "category_id": CATEGORY_IDS[box["label"]], "bbox": [box["x0"], box["y0"], w, h],
                                    "area": w * h, "iscrowd": 0, "provenance": box["provenance"]})
    document = {
        "info": {"description": "lungscope curated lesion boxes", "version": "1.0",
                 "date_created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": CATEGORIES,
    }
    sink.write_bytes("annotations.json", json.dumps(document, indent=1).encode())
    return {"images": len(images), "annotations": len(annotations)}

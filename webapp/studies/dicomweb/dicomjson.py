"""Building DICOM JSON (PS3.18 F.2) from plain Python values, for responses not read from a stored file."""
from __future__ import annotations

from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

NUMERIC_VRS = {"IS", "US", "UL", "SS", "SL", "DS", "FL", "FD", "UV", "SV"}


def tag_hex(keyword: str) -> str:
    return f"{tag_for_keyword(keyword):08X}"


def keyword_of(key: str) -> str | None:
    """A query key given as keyword (``PatientID``) or tag (``00100020``) as the keyword, or None if unknown."""
    if len(key) == 8:
        try:
            return keyword_for_tag(int(key, 16)) or None
        except ValueError:
            pass
    return key if tag_for_keyword(key) is not None else None


def element(keyword: str, value: Any) -> tuple[str, dict]:
    """One ``"GGGGEEEE": {"vr": .., "Value": [..]}`` pair; None, '' and [] give the attribute without a value."""
    vr = dictionary_VR(keyword)
    entry: dict[str, Any] = {"vr": vr}
    values = value if isinstance(value, list | tuple) else [value]
    values = [v for v in values if v not in (None, "")]
    if values:
        if vr == "PN":
            entry["Value"] = [{"Alphabetic": str(v)} for v in values]
        elif vr in NUMERIC_VRS:
            entry["Value"] = [float(v) if vr in {"DS", "FL", "FD"} else int(v) for v in values]
        elif vr == "SQ":
            entry["Value"] = values
        else:
            entry["Value"] = [str(v) for v in values]
    return tag_hex(keyword), entry


def dataset(items: dict[str, Any]) -> dict[str, dict]:
    """A DICOM JSON object from ``{keyword: value}``, keys in tag order as the standard's examples show."""
    return dict(sorted(element(keyword, value) for keyword, value in items.items()))

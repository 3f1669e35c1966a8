"""Who sees whose scan: patient identity in DICOMweb answers is for clinicians (and admins) only.

Annotators draw boxes on pixels; they get the same studies with the identifying attributes emptied, in QIDO-RS
rows, WADO-RS metadata and the files themselves (rewritten on the fly, so never byte-equal for them). The rule is
the one the worklist applies: holding the clinician role.
"""
from __future__ import annotations

import io
from typing import BinaryIO

import pydicom
from pydicom.datadict import tag_for_keyword

from webapp.accounts.roles import CLINICIAN, has_role

IDENTITY_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDsSequence", "OtherPatientNames",
                     "PatientAddress", "PatientTelephoneNumbers", "PatientMotherBirthName", "MilitaryRank",
                     "MedicalRecordLocator", "IssuerOfPatientID")
IDENTITY_TAGS = {f"{tag_for_keyword(keyword):08X}" for keyword in IDENTITY_KEYWORDS}


def sees_identity(user) -> bool:
    return has_role(user, CLINICIAN)


def masked_json(item: dict) -> dict:
    """A DICOM JSON object with the identifying attributes present but empty."""
    return {tag: ({"vr": value["vr"]} if tag in IDENTITY_TAGS else value) for tag, value in item.items()}


def masked_file(file: BinaryIO) -> bytes:
    """A Part 10 file re-encoded with the identifying attributes emptied (same transfer syntax, pixels untouched)."""
    with file:
        ds = pydicom.dcmread(file)
    for keyword in IDENTITY_KEYWORDS:
        if keyword in ds:
            ds[keyword].value = [] if ds[keyword].VR == "SQ" else ""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()

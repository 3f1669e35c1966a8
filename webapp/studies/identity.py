"""Who sees whose scan: the one rule for patient identity, and every masked form of it.

Patient identity (id, name, birth date, ...) is for the clinicians (and admins) who diagnose; annotators draw boxes
on pixels. They get the same studies with identity masked everywhere it could show: worklist and study rows, the
viewer's page title, search (identity fields are not searchable for them, so a search cannot confirm a masked
value), QIDO-RS rows and matching, WADO-RS metadata and the DICOM files themselves (rewritten on the fly, so never
byte-equal for them). Everything that shows or matches identity asks ``sees_patient_identity``.
"""
from __future__ import annotations

import io
from typing import BinaryIO

import pydicom
from pydicom.datadict import tag_for_keyword

from webapp.accounts.roles import CLINICIAN, has_role

#: What stands in for a masked patient id or name.
MASK = "•••"

IDENTITY_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDsSequence", "OtherPatientNames",
                     "PatientAddress", "PatientTelephoneNumbers", "PatientMotherBirthName", "MilitaryRank",
                     "MedicalRecordLocator", "IssuerOfPatientID")
IDENTITY_TAGS = {f"{tag_for_keyword(keyword):08X}" for keyword in IDENTITY_KEYWORDS}


def sees_patient_identity(user) -> bool:
    """The rule: holding the clinician role (admins hold every role)."""
    return has_role(user, CLINICIAN)


def patient_label(user, patient) -> str:
    """The patient as ``user`` may see them: their id, or the mask."""
    return patient.patient_id if sees_patient_identity(user) else MASK


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

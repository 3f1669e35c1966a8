"""Sending result objects out: C-STORE to a DIMSE peer (pynetdicom SCU) or STOW-RS to a DICOMweb server.

Both raise ``SendError`` with a sentence for the job and the delivery row; the task decides about retrying.
"""
from __future__ import annotations

import pydicom
import requests
from dicomweb_client import DICOMwebClient
from django.conf import settings
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from .models import DicomPeer, WebDestination

#: C-STORE statuses that mean the peer keeps the object (success and the PS3.4 B.2.3 warnings).
STORED_STATUSES = {0x0000, 0xB000, 0xB006, 0xB007}


class SendError(RuntimeError):
    """The destination did not take every object."""


def send_dimse(peer: DicomPeer, datasets: list[pydicom.Dataset]) -> None:
    """One association to ``peer``, one C-STORE per object, every object must be stored."""
    ae = AE(ae_title=settings.LUNGSCOPE_DICOM_AE_TITLE)
    for sop_class in dict.fromkeys(ds.SOPClassUID for ds in datasets):
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate(peer.host, int(peer.port), ae_title=peer.ae_title)
    if not assoc.is_established:
        raise SendError(f"{peer}: association {'rejected' if assoc.is_rejected else 'failed'}")
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            code = int(status.Status) if status and "Status" in status else None
            if code not in STORED_STATUSES:
                comment = status.get("ErrorComment", "") if status else "no response"
                raise SendError(f"{peer}: C-STORE of {ds.SOPClassUID.name} answered "
                                f"{'none' if code is None else hex(code)} {comment}".rstrip())
    finally:
        if assoc.is_established:
            assoc.release()


def send_stow(destination: WebDestination, datasets: list[pydicom.Dataset]) -> None:
    """One STOW-RS request with every object; a FailedSOPSequence or an HTTP error is a failure."""
    headers = {"Authorization": destination.authorization} if destination.authorization else None
    client = DICOMwebClient(url=destination.url.rstrip("/"), headers=headers)
    try:
        answer = client.store_instances(datasets)
    except (requests.RequestException, ValueError) as exc:
        raise SendError(f"{destination}: STOW-RS failed: {exc}") from None
    failed = answer.get("FailedSOPSequence", []) if answer is not None else []
    if failed:
        reasons = ", ".join(f"{item.get('ReferencedSOPInstanceUID', '?')}: {item.get('FailureReason', '?')}"
                            for item in failed)
        raise SendError(f"{destination}: STOW-RS refused {len(failed)} object(s): {reasons}")

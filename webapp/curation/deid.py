"""De-identification for exports: DICOM PS3.15 Annex E, Basic Application Level Confidentiality Profile.

One ``Deidentifier`` per export. Its secret is random, so the pseudonyms and new UIDs it hands out are
consistent inside that export (an SR and its images still reference each other; a patient keeps one pseudonym)
but cannot be linked to another export or back to the originals.

What happens to a DICOM dataset, in order:
- the profile's table (the attributes a CT or SR carries) is applied: X remove, Z empty, D dummy, U remap;
- then, whatever the table missed: every UID that is not a registered DICOM UID (SOP classes, transfer syntaxes)
  is remapped, every person name emptied, every date/time replaced by a dummy, and private tags removed;
- Patient Identity Removed and the De-identification Method (code 113100) are recorded.
Non-DICOM outputs call ``patient`` and ``uid`` for ids they write to CSV/JSON/folder names.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID_dictionary

METHOD = "PS3.15 Basic Application Confidentiality Profile (lungscope)"  # LO: at most 64
DUMMY = {"DA": "19000101", "TM": "000000", "DT": "19000101000000"}

# Subset of PS3.15 Table E.1-1 that CT images and SR documents carry. D = dummy value, Z = empty, X = remove.
PATIENT_NAME, PATIENT_ID = "PatientName", "PatientID"
ZERO = (
    "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "ReferringPhysicianName", "StudyDate",
    "StudyTime", "ContentCreatorName", "FillerOrderNumberImagingServiceRequest",
    "PlacerOrderNumberImagingServiceRequest",
)
REMOVE = (
    "OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName",
    "PatientAge", "PatientSize", "PatientWeight", "PatientAddress", "PatientTelephoneNumbers", "MilitaryRank",
    "BranchOfService", "EthnicGroup", "Occupation", "AdditionalPatientHistory", "PatientComments",
    "MedicalRecordLocator", "MedicalAlerts", "Allergies", "CountryOfResidence", "RegionOfResidence",
    "PregnancyStatus", "SmokingStatus", "PatientReligiousPreference", "ResponsiblePerson",
    "ResponsibleOrganization", "PatientState", "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence",
    "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName", "InstitutionCodeSequence",
    "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers", "ReferringPhysicianIdentificationSequence",
    "PhysiciansOfRecord", "PhysiciansOfRecordIdentificationSequence", "PerformingPhysicianName",
    "PerformingPhysicianIdentificationSequence", "NameOfPhysiciansReadingStudy",
    "PhysiciansReadingStudyIdentificationSequence", "OperatorsName", "OperatorIdentificationSequence",
    "RequestingPhysician", "RequestingService", "ScheduledPerformingPhysicianName", "StationName",
    "DeviceSerialNumber", "PlateID", "DetectorID", "GantryID", "StudyDescription", "SeriesDescription",
    "ProtocolName", "ImageComments", "RequestedProcedureDescription", "PerformedProcedureStepDescription",
    "PerformedProcedureStepID", "ScheduledProcedureStepDescription", "RequestAttributesSequence",
    "AdmittingDiagnosesDescription", "AdmittingDiagnosesCodeSequence", "DerivationDescription",
    "ReasonForStudy", "RequestedContrastAgent", "StudyComments", "InterpretationText", "TextComments",
    "AcquisitionComments", "ContrastBolusAgent", "PatientInsurancePlanCodeSequence", "VisitComments",
    "AdmissionID", "ReferencedPatientSequence", "ReferencedStudySequence", "ReferencedPerformedProcedureStepSequence",
    "ConsultingPhysicianName", "CurrentPatientLocation", "PatientInstitutionResidence", "ServiceEpisodeID",
    "ServiceEpisodeDescription", "IssuerOfAdmissionID", "PersonAddress", "PersonTelephoneNumbers",
    "VerifyingObserverName", "VerifyingObserverIdentificationCodeSequence", "VerifyingOrganization",
    "ParticipantSequence", "ActualHumanPerformersSequence", "HumanPerformerName", "HumanPerformerOrganization",
    "OrderEnteredBy", "OrderEntererLocation", "OrderCallbackPhoneNumber", "DataSetTrailingPadding",
    "AcquisitionDeviceProcessingDescription", "CommentsOnThePerformedProcedureStep", "FrameComments",
    "ImagePresentationComments", "IdentifyingComments", "ModifiedAttributesSequence",
    "OriginalAttributesSequence", "DigitalSignaturesSequence",
)
# UIDs that name classes, not instances, stay: the registry check covers them; these are kept explicitly too.
KEEP_UIDS = {"SOPClassUID", "ReferencedSOPClassUID", "MediaStorageSOPClassUID", "TransferSyntaxUID",
             "ImplementationClassUID", "CodingSchemeUID", "MappingResourceUID", "ContextUID"}


class Deidentifier:
    """Consistent pseudonyms and UID remapping for one export."""

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)
        self.uids: dict[str, str] = {}

    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self._secret, f"{kind}\0{value}".encode(), hashlib.sha256).digest()

    def uid(self, value: str) -> str:
        """The replacement of an instance UID: a 2.25 UUID-derived UID, the same every time in this export."""
        value = str(value).strip()
        if not value or value in UID_dictionary:
            return value
        if value not in self.uids:
            self.uids[value] = "2.25." + str(int.from_bytes(self._digest("uid", value)[:16], "big"))
        return self.uids[value]

    def patient(self, patient_id: str) -> str:
        """A pseudonymous patient id, also used as the patient name."""
        return "ANON-" + self._digest("patient", patient_id).hex()[:12].upper()

    def dataset(self, ds: Dataset) -> Dataset:
        """De-identify ``ds`` in place (and its file meta) and return it."""
        original_pid = str(ds.get(PATIENT_ID, "") or "")
        self._apply(ds)
        pseudonym = self.patient(original_pid)
        ds.PatientID = pseudonym
        ds.PatientName = pseudonym
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = METHOD
        method_code = Dataset()
        method_code.CodeValue, method_code.CodingSchemeDesignator = "113100", "DCM"
        method_code.CodeMeaning = "Basic Application Confidentiality Profile"
        ds.DeidentificationMethodCodeSequence = Sequence([method_code])
        meta = getattr(ds, "file_meta", None)
        if meta is not None and "MediaStorageSOPInstanceUID" in meta:
            meta.MediaStorageSOPInstanceUID = self.uid(meta.MediaStorageSOPInstanceUID)
        return ds

    def _apply(self, ds: Dataset) -> None:
        ds.remove_private_tags()
        for keyword in REMOVE:
            if keyword in ds:
                delattr(ds, keyword)
        for keyword in ZERO:
            if keyword in ds:
                ds.data_element(keyword).value = ""
        for element in list(ds):
            if element.VR == "SQ":
                for item in element.value:
                    self._apply(item)
            elif element.VR == "UI" and element.keyword not in KEEP_UIDS and element.value:
                if element.VM > 1:
                    element.value = [self.uid(v) for v in element.value]
                else:
                    element.value = self.uid(element.value)
            elif element.VR == "PN" and element.value:
                element.value = ""
            elif element.VR in DUMMY and element.value:
                element.value = DUMMY[element.VR]

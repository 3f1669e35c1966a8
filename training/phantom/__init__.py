"""Synthetic chest CT phantoms with ground truth, for training and testing without patient data."""
from .dicom import write_dicom_series
from .profiles import PROFILES, ScannerProfile
from .study import LABELS, PhantomStudy, generate_dataset, generate_study, lesion_boxes

__all__ = ["LABELS", "PROFILES", "PhantomStudy", "ScannerProfile", "generate_dataset", "generate_study",
           "lesion_boxes", "write_dicom_series"]

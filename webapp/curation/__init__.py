"""Curation: freezing reviewed studies into immutable DatasetVersions and exporting them (training-ready arrays,
COCO, DICOM SR, CSV), de-identified by default. Admin only; exports run as Jobs on the ``default`` queue."""

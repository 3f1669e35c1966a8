"""DICOMweb: QIDO-RS search, WADO-RS / WADO-URI retrieval and STOW-RS storage over the ingest service."""

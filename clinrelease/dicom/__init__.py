"""DICOM and video input/output, and header de-identification."""

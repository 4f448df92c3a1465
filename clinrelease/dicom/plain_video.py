"""A DICOM header for a plain video (MP4, MKV) from its row of the metadata table."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from pydicom.dataset import Dataset


def container_header(meta: Mapping[str, str], file_digest: str) -> Dataset:
    """A DICOM header for a plain video from its metadata-table row.

    UIDs are derived from the file's digest ``file_digest`` (not random) so that re-running a release produces the
    same output; dates come from the table only.
    """
    from clinrelease.dicom.writer import new_video_header

    ds = new_video_header(
        patient_name=meta.get("PatientName", ""),
        patient_id=meta.get("PatientID", ""),
        patient_birth_date=meta.get("PatientBirthDate", ""),
        patient_sex=meta.get("PatientSex", ""),
        study_description=meta.get("StudyDescription", ""),
        series_description=meta.get("SeriesDescription", ""),
    )
    for n, keyword in enumerate(("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")):
        # a 128-bit value keeps the 2.25 UID within the 64 characters a UI may hold
        setattr(ds, keyword, "2.25." + str(int(hashlib.sha256(f"{file_digest}:{n}".encode()).hexdigest()[:32], 16)))
    study_date = meta.get("StudyDate", "")
    study_time = meta.get("StudyTime", "")
    for keyword in ("StudyDate", "SeriesDate", "ContentDate"):
        setattr(ds, keyword, study_date)
    for keyword in ("StudyTime", "SeriesTime", "ContentTime"):
        setattr(ds, keyword, study_time)
    ds.AcquisitionDateTime = study_date + study_time if study_date else ""
    for keyword, value in meta.items():
        if keyword not in ds:
            setattr(ds, keyword, value)
    return ds

"""The demo input set: real face video that ships with the installed packages, with planted PHI.

``clinrelease demo`` builds it and releases it with the ``pd_gait`` profile, so that a new user sees
the whole product work on a fresh machine without any data of their own and without a download.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from clinrelease.fixtures import Identity, build_dicom_fixture, build_mp4_fixture, carphone_path

#: frames of the demo clip used per item (the carphone clip has 120)
DEMO_FRAMES = 60


@dataclass(frozen=True)
class DemoInput:
    """Where the demo input was written."""

    folder: Path
    files: list[Path] = field(default_factory=list)
    metadata: Path | None = None
    clinical: Path | None = None
    identity: Identity = field(default_factory=Identity)


def build_demo_input(folder: Path, frames: int = DEMO_FRAMES) -> DemoInput:
    """Write a DICOM H.264 video, a plain MP4 with its metadata row, and a clinical table.

    Both videos are of the same (made-up) patient, so the release shows the same surrogate in both.
    PHI is planted in the header, private tags, nested sequences, container metadata and burned-in
    text. Existing demo files are rebuilt.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    identity = Identity()
    source = carphone_path()
    dicom = build_dicom_fixture(folder / "visit1.dcm", source, "h264", frames, identity=identity)
    mp4 = build_mp4_fixture(folder / "visit2.mp4", source, frames, identity=identity)
    sidecar = folder.parent / "metadata.csv"
    with open(sidecar, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "patient_id", "patient_name", "birth_date", "sex", "study_date", "study_description"])
        writer.writerow(["visit2.mp4", identity.patient_id, identity.patient_name, identity.birth_date, identity.sex, "20230912", "Gait exam, follow-up"])
    clinical = folder.parent / "clinical.csv"
    with open(clinical, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["patient_id", "visit_date", "birth_date", "age", "sex", "hoehn_yahr", "updrs_part3", "medication_state", "clinician_notes"])
        writer.writerow([identity.patient_id, "2023-04-11", "1952-03-17", "71", "F", "2", "24", "OFF", f"{identity.display_name} walked unaided"])
        writer.writerow([identity.patient_id, "2023-09-12", "1952-03-17", "71", "F", "2.5", "29", "ON", "freezing at turns"])
    return DemoInput(folder, [dicom.path, mp4.path], sidecar, clinical, identity)

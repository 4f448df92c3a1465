"""DICOM "Data Export" audit message (PS3.15 A.5.3.4, event 110106) for hospital audit repositories.

One message per patient (the standard allows only one patient per export message). It names the
patient and study UIDs, so it is for the site's audit repository (syslog/ATNA), never the release.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field

from clinrelease.audit.records import utc_now


@dataclass(frozen=True)
class ExportedStudy:
    """One study of the exported patient: its UID and (SOP Class UID, number of instances) pairs."""

    study_uid: str
    sop_classes: Sequence[tuple[str, int]] = field(default_factory=tuple)


def _code(parent: ET.Element, tag: str, code: str, system: str, text: str) -> ET.Element:
    return ET.SubElement(parent, tag, {"csd-code": code, "codeSystemName": system, "originalText": text})


def data_export_message(
    *,
    patient_id: str,
    studies: Sequence[ExportedStudy],
    exporting_process: str,
    destination: str,
    audit_source_id: str,
    user: str | None = None,
    patient_name: str | None = None,
    anonymized: bool = True,
    success: bool = True,
    event_time: str | None = None,
) -> str:
    """The XML of a DICOM Data Export audit message.

    Parameters
    ----------
    patient_id:
        The exported patient's (original) ID.
    studies:
        The exported studies with their SOP classes and instance counts.
    exporting_process:
        UserID of the exporting process (Source Role ID 110153), e.g. ``"clinrelease@host"``.
    destination:
        The release (Destination Role ID 110152, media type URI), e.g. its path or URL.
    audit_source_id:
        The audit source (the site's system id).
    user:
        The person who ran the export (requestor), when known.
    patient_name:
        Optional; included as ParticipantObjectName.
    anonymized:
        Whether the exported copies were de-identified (``Anonymized`` element).
    success:
        EventOutcomeIndicator 0 (success) or 4 (minor failure: some items quarantined).
    event_time:
        ISO 8601 UTC time; default now.
    """
    root = ET.Element("AuditMessage")
    event = ET.SubElement(
        root,
        "EventIdentification",
        {"EventActionCode": "R", "EventDateTime": event_time or utc_now(), "EventOutcomeIndicator": "0" if success else "4"},
    )
    _code(event, "EventID", "110106", "DCM", "Export")
    if user:
        ET.SubElement(root, "ActiveParticipant", {"UserID": user, "UserIsRequestor": "true"})
    source = ET.SubElement(root, "ActiveParticipant", {"UserID": exporting_process, "UserIsRequestor": "false"})
    _code(source, "RoleIDCode", "110153", "DCM", "Source Role ID")
    target = ET.SubElement(root, "ActiveParticipant", {"UserID": destination, "UserIsRequestor": "false"})
    _code(target, "RoleIDCode", "110152", "DCM", "Destination Role ID")
    media = ET.SubElement(target, "MediaIdentifier")
    _code(media, "MediaType", "110037", "DCM", "URI")
    ET.SubElement(root, "AuditSourceIdentification", {"AuditSourceID": audit_source_id})
    for study in studies:
        obj = ET.SubElement(
            root,
            "ParticipantObjectIdentification",
            {"ParticipantObjectID": study.study_uid, "ParticipantObjectTypeCode": "2", "ParticipantObjectTypeCodeRole": "3"},
        )
        _code(obj, "ParticipantObjectIDTypeCode", "110180", "DCM", "Study Instance UID")
        for sop_class, count in study.sop_classes:
            ET.SubElement(obj, "SOPClass", {"UID": sop_class, "NumberOfInstances": str(int(count))})
        ET.SubElement(obj, "Anonymized").text = "true" if anonymized else "false"
    patient = ET.SubElement(
        root,
        "ParticipantObjectIdentification",
        {"ParticipantObjectID": patient_id, "ParticipantObjectTypeCode": "1", "ParticipantObjectTypeCodeRole": "1"},
    )
    _code(patient, "ParticipantObjectIDTypeCode", "2", "RFC-3881", "Patient Number")
    if patient_name:
        ET.SubElement(patient, "ParticipantObjectName").text = patient_name
    return ET.tostring(root, encoding="unicode", xml_declaration=False)

"""The DICOM Data Export audit message (PS3.15 A.5.3.4)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from clinrelease.audit.export import ExportedStudy, data_export_message

VIDEO_PHOTOGRAPHIC = "1.2.840.10008.5.1.4.1.1.77.1.4.1"


def test_data_export_message_structure() -> None:
    xml = data_export_message(
        patient_id="MRN<123>&",
        studies=[ExportedStudy("1.2.3.4", [(VIDEO_PHOTOGRAPHIC, 2)]), ExportedStudy("1.2.3.5")],
        exporting_process="clinrelease@site",
        destination="file:///releases/r1",
        audit_source_id="SITE-A",
        user="dr.who",
        success=False,
        event_time="2024-05-01T10:00:00Z",
    )
    root = ET.fromstring(xml)  # escaping of <, & keeps it well-formed
    event = root.find("EventIdentification")
    assert event is not None and event.get("EventActionCode") == "R" and event.get("EventOutcomeIndicator") == "4"
    assert root.find("EventIdentification/EventID").get("csd-code") == "110106"
    roles = {p.find("RoleIDCode").get("csd-code"): p.get("UserID") for p in root.findall("ActiveParticipant") if p.find("RoleIDCode") is not None}
    assert roles == {"110153": "clinrelease@site", "110152": "file:///releases/r1"}
    assert root.find("AuditSourceIdentification").get("AuditSourceID") == "SITE-A"
    objects = root.findall("ParticipantObjectIdentification")
    studies = [o for o in objects if o.get("ParticipantObjectTypeCode") == "2"]
    [patient] = [o for o in objects if o.get("ParticipantObjectTypeCode") == "1"]
    assert [s.get("ParticipantObjectID") for s in studies] == ["1.2.3.4", "1.2.3.5"]
    assert studies[0].find("SOPClass").attrib == {"UID": VIDEO_PHOTOGRAPHIC, "NumberOfInstances": "2"}
    assert studies[0].find("Anonymized").text == "true"
    assert patient.get("ParticipantObjectID") == "MRN<123>&"
    assert patient.find("ParticipantObjectIDTypeCode").get("codeSystemName") == "RFC-3881"

"""No PHI in what a release signs: report, summary, audit records, clinical table (issue 20).

One mixed batch is released once per module under a ``basic`` child profile that keeps clinical
columns: header-only DICOM files (deid-data) whose names, headers and private creators carry a
planted identity, a file whose header cannot be read, a plain MP4 with identifying container
metadata, a corrupt MP4, and a clinical table with planted cells. Each route has its test; the last
one searches every byte of the release for every planted string.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pydicom
import pytest

from _release_helpers import deid_data_dir, invoke, json_result, make_keys, summary
from clinrelease.fixtures import carphone_path, source_frames, write_mp4

#: the planted identity: names, IDs, dates, a phone number (distinctive, so no chance hits)
NAMES = ["Quillfeather", "Zenobia", "Marchetti", "Ottoline"]
IDS = ["MRN55120987", "HX-4471-0923", "MRN-NOVIDEO-01"]
DATES = ["1961-07-23", "19610723", "1955-01-02", "19550102"]
PHONE = "555-201-7788"
PLANTED = [*NAMES, *IDS, "55120987", "4471-0923", *DATES, PHONE]

CT = "Quillfeather_Zenobia_1961-07-23.dcm"  # released (header only)
LEAKY = "HX-4471-0923_Marchetti.dcm"  # a kept attribute repeats the name: quarantined
UNREADABLE = "MRN55120987_unreadable.dcm"  # DICM magic, then garbage
MP4 = "Zenobia_walk.mp4"  # released; its container metadata carries the identity
BROKEN_MP4 = "Ottoline_19610723.mp4"  # not a video: the decoder's message quotes its path
CREATOR = "QUILLFEATHER NEURO LAB"
LEAKY_MANUFACTURER = 'Dr. MARCHETTI\'s "gait" lab'

PROFILE = """\
name: gait_exam_clinical
description: basic with clinical columns kept, for the released-text tests
extends: basic
clinical:
  columns: {visit_date: date_shift, updrs: keep, notes: keep, link: keep}
"""


def _plant(source: Path, target: Path, name: str, pid: str, birth: str, **extra: str) -> None:
    ds = pydicom.dcmread(source)
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = name, pid, birth
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    block = ds.private_block(0x0011, CREATOR, create=True)
    block.add_new(0x01, "LO", "protocol 7")
    ds.save_as(target)


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("phi-batch")
    folder = root / "in"
    folder.mkdir()
    _plant(deid_data_dir() / "humans" / "ctbrain1.dcm", folder / CT, "QUILLFEATHER^ZENOBIA", IDS[0], DATES[1],
           OtherPatientIDs=IDS[1])  # fmt: skip
    _plant(deid_data_dir() / "dicom-cookies" / "image1.dcm", folder / LEAKY, "MARCHETTI^OTTOLINE", IDS[1], DATES[3],
           Manufacturer=LEAKY_MANUFACTURER)  # fmt: skip
    (folder / UNREADABLE).write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage" * 20)
    write_mp4(folder / MP4, source_frames(carphone_path(), 6), 15.0,
              {"title": f"Quillfeather Zenobia {IDS[0]}", "comment": f"born {DATES[0]}, call {PHONE}"})  # fmt: skip
    (folder / BROKEN_MP4).write_bytes(b"not a video at all " * 50)
    metadata = root / "metadata.csv"
    with open(metadata, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        # a description is no identifying string: its words ("gait", in the profile's name too)
        # must neither stop the signing nor withhold the clinical notes that use them
        writer.writerow(["file", "patient_id", "patient_name", "birth_date", "study_date", "study_description"])
        writer.writerow([MP4, IDS[0], "Quillfeather^Zenobia", DATES[1], "20230411", "Gait exam"])
        writer.writerow([BROKEN_MP4, IDS[0], "Quillfeather^Zenobia", DATES[1], "20230411", "Gait exam"])
    clinical = root / "clinical.csv"
    with open(clinical, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["patient_id", "visit_date", "updrs", "notes", "link", "home_phone"])
        writer.writerow([IDS[0], "2023-04-11", "24", "gait exam: walked unaided", '=HYPERLINK("http://x.example/?q=1","open")', PHONE])
        writer.writerow([IDS[0], "2023-10-02", "-3", f"Zenobia Quillfeather called from {PHONE}", "@SUM(A1)", ""])
        writer.writerow([IDS[0], "2024-01-15", "+2", f"chart {IDS[0]}", "+cmd|' /C calc'!A0", ""])
        writer.writerow([IDS[1], "2023-05-02", "31", "freezing at turns", "", ""])
        writer.writerow([IDS[2], "2023-06-07", "18", "no video taken", "", ""])
    profile = root / "gait_exam_clinical.yaml"
    profile.write_text(PROFILE, encoding="utf-8")
    keys = make_keys(root / "keys")
    out = root / "release"
    result = invoke(["run", "-p", str(profile), "-i", str(folder), "-o", str(out), "-k", str(keys),
                     "--metadata", str(metadata), "--clinical", str(clinical), "--json"])  # fmt: skip
    assert result.exit_code != 0, result.output  # an unreadable file and a quarantined one
    doc = json_result(result)
    return {
        "out": out, "keys": keys, "doc": doc, "summary": summary(out), "folder": folder,
        "items": {i["input"]: i for i in doc["items"]},
        "records": {
            r["input"]: r for r in (json.loads(p.read_text()) for p in (root / "release.work" / "records").glob("*.json"))
        },
    }  # fmt: skip


def _released_texts(out: Path) -> str:
    parts = [(out / "report" / "index.html").read_text(), (out / "report" / "summary.json").read_text()]
    parts += [p.read_text() for p in sorted((out / "audit").glob("*")) if p.is_file()]
    parts.append((out / "clinical" / "clinical.csv").read_text())
    return "\n".join(parts)


def test_statuses_of_the_mixed_batch(batch: dict) -> None:
    items = batch["items"]
    assert items[CT]["status"] == "released" and items[MP4]["status"] == "released"
    assert items[LEAKY]["status"] == "quarantined"
    assert items[UNREADABLE]["status"] == "error" and items[BROKEN_MP4]["status"] == "error"
    verified = invoke(["audit", "verify", str(batch["out"]), "--key", str(batch["keys"] / "signing.pub")])
    assert verified.exit_code == 0, verified.output


def test_released_item_ids_are_keyed_not_a_hash_of_the_input_name(batch: dict) -> None:
    import hashlib

    ids = {i["item_id"] for i in batch["summary"]["items"]}
    guesses = {hashlib.sha256(name.encode()).hexdigest()[:16] for name in batch["items"]}
    assert len(ids) == len(batch["items"]) and not ids & guesses


def test_unreadable_header_releases_nothing_of_its_name(batch: dict) -> None:
    record = batch["records"][UNREADABLE]
    released = next(i for i in batch["summary"]["items"] if i["item_id"] == record["item_id"])
    assert released["status"] == "error" and released["reasons"] and "input" not in released
    assert "unreadable" not in _released_texts(batch["out"]).lower()  # no part of its name either
    # the site's copy of the report names it
    assert UNREADABLE in (batch["out"].with_name("release.work") / "report" / "index.html").read_text()


def test_reasons_are_phi_free_sentences_with_values_in_the_quarantine_copy(batch: dict) -> None:
    record = batch["records"][LEAKY]
    released = next(i for i in batch["summary"]["items"] if i["item_id"] == record["item_id"])
    # the value holds both quote characters (which bypassed the old quote-span redaction)
    assert any(r.startswith("PHI leak scan:") and "name" in r for r in released["reasons"])
    # the reason names the attribute the leaked value came from, never the value
    assert any(r.startswith("PHI leak scan:") and "the values of " in r and "PatientName" in r for r in released["reasons"]), released["reasons"]
    text = " ".join(released["reasons"])
    assert "marchetti" not in text.lower() and "Leak(" not in text and '"' not in text
    reasons = json.loads((batch["out"].with_name("release.quarantine") / record["item_id"] / "reasons.json").read_text())
    assert reasons["input"] == LEAKY and any("MARCHETTI" in d for d in reasons["details_with_phi"])
    internal = [json.loads(line) for line in (batch["out"].with_name("release.work") / "audit-internal.jsonl").read_text().splitlines()]
    full = next(r for r in internal if r.get("item_id") == record["item_id"])["reasons_full"]
    # the site's internal log keeps the finding, marked as the site's copy; the sentence says where, not what
    assert any(r.startswith("site copy only: ") and "MARCHETTI" in r for r in full)
    assert not any("MARCHETTI" in r for r in full if not r.startswith("site copy only: "))
    assert any("at byte offset(s) " in r for r in released["reasons"])


def test_a_library_message_quoting_the_input_path_stays_with_the_site(batch: dict) -> None:
    record = batch["records"][BROKEN_MP4]
    # the decoder's message names the file; our sentence is released, the message is a detail
    assert any(BROKEN_MP4 in d for d in record["reason_details"]) and not any(BROKEN_MP4 in r for r in record["reasons"])
    released = next(i for i in batch["summary"]["items"] if i["item_id"] == record["item_id"])
    assert released["reasons"] == ["input error: not a DICOM file and not a readable video file "
                                   "(the library's message is in the site's quarantine copy)"]  # fmt: skip
    log = [json.loads(line) for line in (batch["out"] / "audit" / "log.jsonl").read_text().splitlines()]
    assert next(r for r in log if r.get("item_id") == record["item_id"])["reasons"] == released["reasons"]
    internal = (batch["out"].with_name("release.work") / "audit-internal.jsonl").read_text()
    assert BROKEN_MP4 in internal


def test_private_creators_are_keyed_in_the_released_report(batch: dict) -> None:
    report = (batch["out"] / "report" / "index.html").read_text()
    assert CREATOR.lower() not in report.lower() and "Private block " in report
    site = (batch["out"].with_name("release.work") / "report" / "index.html").read_text()
    assert f"Private {CREATOR}" in site


def test_clinical_table_withholds_rows_cells_and_neutralizes_formulas(batch: dict) -> None:
    with open(batch["out"] / "clinical" / "clinical.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    # only the released patient's rows; the quarantined patient's and the video-less row are withheld
    assert len(rows) == 3
    report = batch["summary"]["clinical"]
    assert report["rows_withheld_no_video"] == 1 and report["rows_withheld_video_not_released"] == 1
    assert [r["updrs"] for r in rows] == ["24", "-3", "+2"]  # numbers are no formulas
    assert rows[0]["notes"] == "gait exam: walked unaided" and rows[1]["notes"] == rows[2]["notes"] == ""
    assert [c["line"] for c in report["cells_withheld"]] == [3, 4]
    assert set(report["cells_withheld"][0]["found"]) == {"name", "phone"} and report["cells_withheld"][1]["found"] == ["id"]
    assert all(r["link"].startswith("'") for r in rows) and report["formula_cells_neutralized"] == 3


def test_planted_identity_is_in_no_byte_of_the_release_but_in_the_site_copies(batch: dict) -> None:
    out = batch["out"]
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {"data", "clinical", "report", "audit"} <= {p.relative_to(out).parts[0] for p in files}
    for path in files:
        data = path.read_bytes().lower()
        for planted in PLANTED:
            assert planted.lower().encode() not in data, (planted, path.relative_to(out).as_posix())
    # what a reviewer needs stays with the site: names, findings and the original values
    work, quarantine = out.with_name("release.work"), out.with_name("release.quarantine")
    site = (work / "report" / "index.html").read_text()
    assert all(name in site for name in (CT, LEAKY, UNREADABLE, MP4, BROKEN_MP4))
    assert any("MARCHETTI" in p.read_text() for p in quarantine.glob("*/reasons.json"))
    assert (quarantine / batch["records"][LEAKY]["item_id"] / "anonymized.dcm").is_file()


def test_bad_clinical_table_stops_the_run_before_any_item(batch: dict, tmp_path: Path) -> None:
    bad = tmp_path / "visits.csv"
    bad.write_text("patient_id,visit_date\nA1,2023-04-11\nA2,11/04/2023\n", encoding="utf-8")
    profile = tmp_path / "gait_exam_clinical.yaml"
    profile.write_text(PROFILE, encoding="utf-8")
    shutil.copyfile(batch["folder"] / CT, tmp_path / "one.dcm")
    out = tmp_path / "release"
    result = invoke(["run", "-p", str(profile), "-i", str(tmp_path / "one.dcm"), "-o", str(out), "-k", str(batch["keys"]),
                     "--clinical", str(bad)])  # fmt: skip
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "visits.csv" in message and "line 3" in message and "visit_date" in message
    assert not out.exists() and not out.with_name("release.work").exists()  # no item ran


def test_identifying_text_left_in_a_released_document_stops_signing(batch: dict, tmp_path: Path) -> None:
    # an unknown column is dropped but listed by name in summary.json: here the name is the patient's
    table = tmp_path / "visits.csv"
    table.write_text(f"patient_id,updrs,Zenobia notes\n{IDS[0]},24,x\n", encoding="utf-8")
    profile = tmp_path / "gait_exam_clinical.yaml"
    profile.write_text(PROFILE, encoding="utf-8")
    shutil.copyfile(batch["folder"] / CT, tmp_path / "one.dcm")
    out = tmp_path / "release"
    result = invoke(["run", "-p", str(profile), "-i", str(tmp_path / "one.dcm"), "-o", str(out), "-k", str(batch["keys"]),
                     "--clinical", str(table)])  # fmt: skip
    message = " ".join(result.output.split())
    assert result.exit_code != 0 and "refusing to sign" in message and "report/summary.json: name" in message
    assert "zenobia" not in message.lower()
    assert not (out / "audit" / "statement.dsse.json").exists() and not (out / "report" / "summary.json").exists()


def test_report_lists_withheld_clinical_rows_and_cells_without_values(batch: dict) -> None:
    html = (batch["out"] / "report" / "index.html").read_text()
    section = html[html.index('<section id="clinical">'):]
    section = section[: section.index("</section>")]
    assert "rows withheld: no video of the patient in the input</th><td>1<" in section
    assert "rows withheld: the patient&#x27;s videos were not released</th><td>1<" in section
    assert "<td>3</td><td>notes</td><td>name, phone</td>" in section and PHONE not in section

"""Clinical table de-identification: rules, joins with DICOM, bad CSVs."""

from __future__ import annotations

import csv

import pytest

from _deid_helpers import KEY, PATIENT_ID, make_dataset
from clinrelease.clinical import deidentify_table, generalize_age, parse_rule, write_table
from clinrelease.dicom import keyed
from clinrelease.dicom.deid import Deidentifier
from clinrelease.errors import ConfigError, InputError

RULES = {
    "patient_id": "pseudonymize",
    "visit_date": "date_shift",
    "visit_dicom_date": "date_shift",
    "age": "generalize_age",
    "age_band": "generalize_age:10",
    "updrs_iii": "keep",
    "clinician_notes": "free_text_drop",
    "referring_doctor": "drop",
}


def _csv(tmp_path, text: str, name: str = "visits.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


TABLE = (
    "patient_id,visit_date,visit_dicom_date,age,age_band,updrs_iii,clinician_notes,referring_doctor,home_phone\n"
    f"{PATIENT_ID},2021-03-15,20210315,76,76,32,Tremor worse; lives alone,Dr Whitcombe,+44 20 7946 0958\n"
    f"{PATIENT_ID},2021-09-01T10:30,20210901,93,93,35,,Dr Whitcombe,+44 20 7946 0958\n"
    "MRN5550001,2020-01-31,,45,45,12,ok,Dr Patel,0161 496 0000\n"
)


def test_rules_applied_and_unknown_columns_dropped(tmp_path):
    result = deidentify_table(_csv(tmp_path, TABLE), RULES, KEY, "patient_id")
    shift = keyed.date_shift_days(KEY, PATIENT_ID)
    first, second, third = result.rows
    assert result.columns == ["patient_id", "visit_date", "visit_dicom_date", "age", "age_band",
                              "updrs_iii", "clinician_notes"]
    assert set(result.dropped_columns) == {"referring_doctor", "home_phone"}
    assert result.report["unknown_columns_dropped"] == ["home_phone"]
    assert result.report["rows"] == 3
    assert first["patient_id"] == second["patient_id"] == keyed.pseudonym(KEY, PATIENT_ID)
    assert third["patient_id"] == keyed.pseudonym(KEY, "MRN5550001") != first["patient_id"]
    assert first["visit_date"] == keyed.shift_iso_date("2021-03-15", shift)
    assert second["visit_date"] == keyed.shift_iso_date("2021-09-01", shift) + "T10:30"
    assert first["visit_dicom_date"] == keyed.shift_date("20210315", shift)
    assert third["visit_dicom_date"] == ""
    assert (first["age"], second["age"], third["age"]) == ("76", "90+", "45")
    assert (first["age_band"], second["age_band"], third["age_band"]) == ("70-79", "90+", "40-49")
    assert first["updrs_iii"] == "32" and first["clinician_notes"] == ""


def test_joins_released_dicom_by_pseudonym_and_shared_date_shift(tmp_path):
    dicom = Deidentifier(["retain_long_modified_dates"], KEY).deidentify(make_dataset())
    table = deidentify_table(_csv(tmp_path, TABLE), RULES, KEY, "patient_id")
    row = table.rows[0]
    assert row["patient_id"] == dicom.dataset.PatientID
    # the visit and the study were on the same day: still the same day after release
    assert row["visit_dicom_date"] == dicom.dataset.StudyDate


def test_custom_date_shift_and_written_csv(tmp_path):
    result = deidentify_table(_csv(tmp_path, TABLE), RULES, KEY, "patient_id", date_shift_for=lambda pid: -10)
    assert result.rows[0]["visit_date"] == "2021-03-05"
    out = write_table(result, tmp_path / "release" / "visits.csv")
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows == result.rows
    text = out.read_text()
    for secret in (PATIENT_ID, "Whitcombe", "7946", "lives alone", "2021-03-15"):
        assert secret not in text, secret


def test_generalize_age():
    assert generalize_age("89") == "89" and generalize_age("90") == "90+"
    assert generalize_age("047Y", 5) == "45-49" and generalize_age("88.5", 10) == "80-89"
    assert generalize_age("") == ""
    with pytest.raises(ValueError):
        generalize_age("old")


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty or has no header"),
        ("patient_id,age\nA1,40,extra\n", "line 2: 3 fields"),
        ("patient_id,age\nA1,forty\n", "line 2, column 'age'"),
        ("patient_id,visit_date\nA1,15/03/2021\n", "line 2, column 'visit_date'"),
        ("patient_id,age\n,40\n", "line 2: column 'patient_id'"),
        ("age,age\n1,2\n", "duplicate"),
        ("mrn,age\nA1,40\n", "no ID column 'patient_id'"),
    ],
)
def test_bad_csv_is_input_error_naming_file_and_place(tmp_path, text, message):
    path = _csv(tmp_path, text)
    with pytest.raises(InputError, match=message) as info:
        deidentify_table(path, {"age": "generalize_age", "visit_date": "date_shift"}, KEY, "patient_id")
    assert info.value.path == path


def test_unreadable_and_missing_files(tmp_path):
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"patient_id\n\xff\xfe\x00bad\n")
    with pytest.raises(InputError, match="not UTF-8"):
        deidentify_table(binary, {}, KEY, "patient_id")
    with pytest.raises(InputError, match="no such file"):
        deidentify_table(tmp_path / "none.csv", {}, KEY, "patient_id")


def test_bad_rules_are_config_errors(tmp_path):
    path = _csv(tmp_path, TABLE)
    with pytest.raises(ConfigError, match="unknown rule 'hash'"):
        deidentify_table(path, {"age": "hash"}, KEY, "patient_id")
    with pytest.raises(ConfigError, match="must be pseudonymize"):
        deidentify_table(path, {"patient_id": "keep"}, KEY, "patient_id")
    with pytest.raises(ConfigError, match="band width"):
        parse_rule("age", "keep:5")
    assert parse_rule("age", {"rule": "generalize_age", "band": 5}).band == 5


def test_formula_cells_are_neutralized_numbers_are_not(tmp_path):
    text = "patient_id,score,link\nPT-0001,-3,=1+2\nPT-0001,+2.5,@SUM(A1)\nPT-0001,1e3,-cmd|x\nPT-0001,7,\tx\n"
    result = deidentify_table(_csv(tmp_path, text), {"score": "keep", "link": "keep"}, KEY, "patient_id")
    assert [r["score"] for r in result.rows] == ["-3", "+2.5", "1e3", "7"]
    assert [r["link"] for r in result.rows] == ["'=1+2", "'@SUM(A1)", "'-cmd|x", "'\tx"]
    assert result.report["formula_cells_neutralized"] == 4
    out = write_table(result, tmp_path / "out.csv")
    with out.open(newline="") as fh:
        assert [r["link"] for r in csv.DictReader(fh)] == ["'=1+2", "'@SUM(A1)", "'-cmd|x", "'\tx"]


def test_keep_columns_withhold_names_phones_emails_and_the_raw_mrn(tmp_path):
    text = (
        "patient_id,notes\n"
        f"{PATIENT_ID},walked unaided\n"
        f"{PATIENT_ID},Hargreaves fell twice\n"
        f"{PATIENT_ID},call +44 20 7946 0958\n"
        f"{PATIENT_ID},mail e.h@example.org\n"
        f"MRN5550001,same as {PATIENT_ID}\n"
        "MRN5550001,UPDRS 31 on 2023-04-11\n"
    )
    result = deidentify_table(_csv(tmp_path, text), {"notes": "keep"}, KEY, "patient_id", phi=["HARGREAVES^ELEANOR"])
    assert [r["notes"] for r in result.rows] == ["walked unaided", "", "", "", "", "UPDRS 31 on 2023-04-11"]
    assert result.report["cells_withheld"] == [
        {"line": 3, "column": "notes", "found": ["name"]},
        {"line": 4, "column": "notes", "found": ["phone"]},
        {"line": 5, "column": "notes", "found": ["e-mail"]},
        {"line": 6, "column": "notes", "found": ["id"]},
    ]
    assert PATIENT_ID in result.identifying_strings and "MRN5550001" in result.identifying_strings


def test_rows_without_a_released_video_are_withheld_and_counted(tmp_path):
    released, quarantined = keyed.pseudonym(KEY, PATIENT_ID), keyed.pseudonym(KEY, "MRN5550001")
    result = deidentify_table(_csv(tmp_path, TABLE), RULES, KEY, "patient_id",
                              known_ids={released, quarantined}, released_ids={released})  # fmt: skip
    assert [r["patient_id"] for r in result.rows] == [released, released]
    assert result.report["rows_withheld_video_not_released"] == 1 and result.report["rows_withheld_no_video"] == 0
    nothing = deidentify_table(_csv(tmp_path, TABLE), RULES, KEY, "patient_id", known_ids=set(), released_ids=set())
    assert nothing.rows == [] and nothing.report["rows_withheld_no_video"] == 3


def test_short_subject_numbers_do_not_withhold_equal_scores(tmp_path):
    result = deidentify_table(_csv(tmp_path, "patient_id,score\n12,12\n7,31\n"), {"score": "keep"}, KEY, "patient_id")
    assert [r["score"] for r in result.rows] == ["12", "31"] and result.report["cells_withheld"] == []

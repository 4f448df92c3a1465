"""PHI leak scan over output bytes: every written form of a planted value is found, in any encoding."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pydicom
import pytest

from _verify_helpers import checks_only, write_clip
from clinrelease.errors import InputError
from clinrelease.verify.decision import ItemReports, judge
from clinrelease.verify.leaks import date_variants, name_variants, parse_date, phi_variants, scan_bytes

PHI = ["DOE^JOHN", "19500312", "MRN 123456", "221B Baker Street"]


def _file_with(tmp_path, pieces: list[bytes]) -> tuple[os.PathLike, list[int]]:
    rng = np.random.default_rng(1)
    data, offsets = b"", []
    for piece in pieces:
        data += rng.integers(0, 256, 5000, dtype=np.uint8).tobytes().replace(b"\x00", b"\x01")
        offsets.append(len(data))
        data += piece
    path = tmp_path / "out.bin"
    path.write_bytes(data + b"tail")
    return path, offsets


@pytest.mark.parametrize("chunk_size", [64, 1 << 20])
def test_planted_phi_is_found_in_every_form_and_encoding(tmp_path, chunk_size):
    pieces = [
        b"DOE^JOHN",
        "john doe".encode(),
        "Doe, John".encode("utf-16-le"),
        "JOHN DOE".encode("utf-16-be"),
        b"12/03/1950",
        b"03/12/1950",
        b"1950-03-12",
        b"12.03.1950",
        b"12 Mar 1950",
        b"mrn-123456",
        b"MRN123456",
        b"221B Baker Street",
    ]
    path, offsets = _file_with(tmp_path, pieces)
    leaks = scan_bytes(path, PHI, chunk_size=chunk_size)
    assert [leak.offset for leak in leaks] == offsets
    assert [leak.kind for leak in leaks] == ["name"] * 4 + ["date"] * 5 + ["id"] * 2 + ["text"]
    assert leaks[2].encoding == "utf-16-le" and leaks[3].encoding == "utf-16-be"
    assert leaks[4].string == "19500312" and leaks[4].variant == "12/03/1950"
    assert "12/03/1950" in leaks[4].context
    verdict = judge(ItemReports(leaks=leaks), checks_only(leak_scan=True))
    assert verdict.reasons and verdict.reasons[0].startswith("PHI leak scan: 12 occurrence(s)")


def test_bytes_about_to_be_written_are_scanned_like_the_file(tmp_path):
    path, offsets = _file_with(tmp_path, [b"DOE^JOHN", "Doe, John".encode("utf-16-le"), b"MRN123456"])
    leaks = scan_bytes(path.read_bytes(), PHI, chunk_size=64)
    assert [leak.offset for leak in leaks] == offsets
    assert leaks == scan_bytes(path, PHI, chunk_size=64)


def test_clean_file_has_no_leaks(tmp_path):
    path, _ = _file_with(tmp_path, [b"nothing to see"])
    assert scan_bytes(path, PHI) == []


def test_container_metadata_and_encoder_text_in_a_real_video(tmp_path):
    frames = [np.full((64, 64, 3), 40 * i, np.uint8) for i in range(4)]
    x264 = write_clip(tmp_path / "x264.mp4", frames, codec="libx264", metadata={"title": "DOE^JOHN", "comment": "MRN 123456"})
    leaks = scan_bytes(x264, PHI)
    assert {leak.string for leak in leaks if leak.kind != "encoder"} == {"DOE^JOHN", "MRN 123456"}
    assert {"x264 - core", "options: "} <= {leak.variant for leak in leaks if leak.kind == "encoder"}
    clean = write_clip(tmp_path / "clean.mp4", frames, codec="mpeg4")
    assert scan_bytes(clean, PHI) == []
    assert [leak.kind for leak in scan_bytes(x264, [], encoder_text=True)] == ["encoder", "encoder"]
    assert scan_bytes(x264, [], encoder_text=False) == []


def test_variants():
    assert parse_date("12 Mar 1950") == parse_date("1950-03-12") == parse_date("19500312")
    forms = date_variants(parse_date("19500305"))
    assert {"19500305", "1950-03-05", "05/03/1950", "03/05/1950", "5/3/1950", "05.03.1950", "5 Mar 1950", "March 5, 1950"} <= set(forms)
    names = name_variants("DOE^JOHN^^^")
    assert {"DOE^JOHN", "DOE JOHN", "JOHN DOE", "DOE, JOHN", "JOHN"} <= set(names)
    assert "Li" not in name_variants("LI^JOHN")  # too short to search alone
    assert {"123-456-78", "12345678", "123 456 78"} <= set(phi_variants(["123-456-78"]))


def test_unreadable_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot read the file"):
        scan_bytes(tmp_path / "missing.dcm", PHI)


#: common given names and surnames of several countries (a sample of the most frequent)
COMMON_NAMES = [
    "MARY", "JOHN", "JAMES", "PATRICIA", "ROBERT", "JENNIFER", "MICHAEL", "LINDA", "SMITH", "JOHNSON",
    "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS", "MARIA", "JOSE", "JUAN", "ANNA", "PETER",
    "THOMAS", "MULLER", "SCHMIDT", "SCHNEIDER", "FISCHER", "WEBER", "MEYER", "WAGNER", "MARTIN",
    "BERNARD", "DUBOIS", "THOMAS", "ROBERT", "RICHARD", "PETIT", "ROSSI", "RUSSO", "FERRARI", "ESPOSITO",
    "BIANCHI", "ROMANO", "GONZALEZ", "RODRIGUEZ", "FERNANDEZ", "LOPEZ", "MARTINEZ", "SANCHEZ", "PEREZ",
    "WANG", "CHEN", "ZHANG", "SINGH", "KUMAR", "SATO", "SUZUKI", "TANAKA", "NGUYEN", "KOWALSKI", "NOWAK",
    "IVANOV", "HANSEN", "JENSEN", "NIELSEN", "LARSEN", "ANDERSSON", "JOHANSSON", "SILVA", "SANTOS",
    "OLIVEIRA", "SOUZA", "EMMA", "OLIVIA", "NOAH", "LIAM", "SOPHIA", "LUCA", "LEON", "ELIAS", "HANNAH",
]


def test_names_match_as_names_not_inside_words(tmp_path):
    path, offsets = _file_with(tmp_path, [b"ORIGINAL\\PRIMARY\\RENAL", b" MARY ", "MARY^ROSE x".encode("utf-16-le"), b"SUMMARYMARY"])
    leaks = scan_bytes(path, ["MARY"], encoder_text=False, chunk_size=64)
    assert [leak.offset for leak in leaks] == [offsets[1] + 1, offsets[2]]  # PRIMARY, SUMMARYMARY are no names
    assert leaks[1].encoding == "utf-16-le"
    # a multi-word form of the name still matches anywhere, and IDs and dates need no boundary in bytes
    path, offsets = _file_with(tmp_path, [b"xDOE^JOHNx", b"ab123456cd"])
    assert [leak.offset for leak in scan_bytes(path, ["DOE^JOHN", "123456"], encoder_text=False)] == [offsets[0] + 1, offsets[1] + 2]


def test_a_name_at_a_chunk_border_keeps_its_neighbours(tmp_path):
    # whatever chunk size, a letter just before the match (read in the previous chunk) still counts
    data = b"\x01" * 61 + b"PRIMARY" + b"\x01" * 100 + b"MARY." + b"\x01" * 30
    path = tmp_path / "border.bin"
    path.write_bytes(data)
    for chunk in (8, 16, 61, 64, 65, 66, 1 << 20):
        assert [leak.offset for leak in scan_bytes(path, ["MARY"], encoder_text=False, chunk_size=chunk)] == [168], chunk


def test_dicom_vocabulary_is_never_a_leak_alone():
    from clinrelease.verify.leaks import DICOM_VOCABULARY

    assert {"PRIMARY", "ORIGINAL", "MONOCHROME2", "MODALITY"} <= DICOM_VOCABULARY
    assert "Primary" not in name_variants("PRIMARY^MARY") and "PRIMARY^MARY" in name_variants("PRIMARY^MARY")
    assert "MARY" in name_variants("PRIMARY^MARY")


def test_rgb_image_with_patient_mary_is_released_under_basic(tmp_path):
    from _release_helpers import deid_data_dir, invoke, json_result, make_keys

    source = deid_data_dir() / "ultrasounds" / "RGB_IMAGE.dcm"
    (tmp_path / "in").mkdir()
    shutil.copyfile(source, tmp_path / "in" / "RGB_IMAGE.dcm")
    keys = make_keys(tmp_path / "keys")
    result = invoke(["run", "-p", "basic", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-k", str(keys), "--json"])
    assert result.exit_code == 0, result.output
    assert json_result(result)["items"][0]["status"] == "released"
    # a real leak of the same name is still found: MARY planted into a kept attribute
    ds = pydicom.dcmread(source)
    ds.Manufacturer = "MARY ultrasound"
    ds.save_as(tmp_path / "planted.dcm")
    leaked = invoke(["run", "-p", "basic", "-i", str(tmp_path / "planted.dcm"), "-o", str(tmp_path / "out2"), "-k", str(keys), "--json"])
    assert leaked.exit_code == 1 and any(r.startswith("PHI leak scan:") for r in json_result(leaked)["items"][0]["reasons"])


def test_common_names_find_no_false_leak_in_the_corpora_and_every_planted_one(tmp_path):
    from _deid_helpers import KEY, deid_data_files, pydicom_image_files
    from clinrelease.dicom.deid import Deidentifier, write_deidentified

    corpus = [f for f in [*deid_data_files(), *pydicom_image_files()] if "multiframe" not in f.name and "cat" not in f.name][:30]
    deidentifier = Deidentifier([], KEY)
    checked = 0
    for n, item in enumerate(corpus):
        ds = item.read()
        if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
            continue  # basic refuses those before any scan
        if "PixelData" in ds:
            del ds.PixelData  # the header is where standard vocabulary lives (and the scan stays fast)
        given, family = COMMON_NAMES[n % len(COMMON_NAMES)], COMMON_NAMES[(3 * n + 7) % len(COMMON_NAMES)]
        ds.PatientName = f"{family}^{given}"
        ds.PatientID = f"ID{n:06d}"
        out = tmp_path / f"{n}.dcm"
        write_deidentified(deidentifier.deidentify(ds).dataset, out)
        assert scan_bytes(out, [*COMMON_NAMES, f"{family}^{given}"], encoder_text=False) == [], item.name
        # the same names planted where the profile keeps text are found
        ds.Manufacturer = f"{given.title()} {family.title()} Imaging"
        write_deidentified(deidentifier.deidentify(ds).dataset, out)
        found = {leak.string for leak in scan_bytes(out, [f"{family}^{given}"], encoder_text=False)}
        assert found == {f"{family}^{given}"}, item.name
        checked += 1
    assert checked >= 10


def test_released_text_scan_matches_tokens_only():
    from clinrelease.verify.leaks import scan_text

    assert scan_text("digest 0a123456ff and 0.81234567", ["123456"]) == []
    assert [leak.kind for leak in scan_text("seen as MRN 123456; born 1950-03-12, Doe, John", ["MRN 123456", "19500312", "DOE^JOHN"])] == ["id", "date", "name"]
    assert scan_text("PRIMARY summary", ["MARY"]) == []


def test_short_one_word_names_are_searched_only_within_the_whole_name():
    assert "NEW" not in name_variants("NEW") and "MAY" not in name_variants("MAY")
    assert "ZZZ TEST PATIENTFIVE^NEW^P" in name_variants("ZZZ TEST PATIENTFIVE^NEW^P")


def test_names_keep_their_letter_boundaries_in_utf16_both_ways(tmp_path):
    for enc in ("utf-16-le", "utf-16-be"):
        pieces = [w.encode(enc) for w in (" PRIMARY\\SUMMARY ", " Mary ", " MARYx ", "(MARY)")]
        path, offsets = _file_with(tmp_path, pieces)
        leaks = scan_bytes(path, ["MARY"], encoder_text=False, chunk_size=97)
        # UTF-16 read one byte off is the other byte order: one leak either way, at the name
        assert len(leaks) == 2, enc
        assert offsets[1] + 1 <= leaks[0].offset <= offsets[1] + 2 and offsets[3] + 1 <= leaks[1].offset <= offsets[3] + 2, enc


def test_released_text_scan_of_ascii_text_finds_what_the_general_scan_finds():
    from clinrelease.verify.leaks import text_scanner

    phi = ["DOE^JOHN", "19500312", "MRN 123456", "221B Baker Street", "(ALIAS) SMITH", "O'NEIL"]
    scan = text_scanner(phi)
    texts = [
        "seen as MRN 123456; born 1950-03-12 and 12/03/1950, Doe, John (DOE^JOHN) at 221B Baker Street",
        "xMRN 123456 MRN-123456 MRN123456y 0a123456ff doe john.John Doe",
        "(alias) smith said O'Neil; o'neil",
        "nothing here: 2.25.123456789 data/P000000123456/x.dcm",
    ]
    for text in texts:
        # a non-ASCII character at the end sends the same text through the general, per-character scan
        fast, general = scan(text), scan(text + " é")
        assert [(k.offset, k.variant, k.kind) for k in fast] == [(k.offset, k.variant, k.kind) for k in general], text
    assert [k.kind for k in scan(texts[0])].count("id") == 1 and scan(texts[3]) == []
    assert {k.kind for k in scan(texts[2])} == {"name"}


def test_a_leak_records_the_attribute_its_value_came_from_and_the_reason_names_it_never_the_value(tmp_path):
    from clinrelease.dicom.phi_strings import identifying_sources
    from clinrelease.verify.leaks import describe_leaks

    original = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    original.PatientName, original.PatientID = "MARCHETTI^OTTOLINE", "HX-4471-0923"
    sources = identifying_sources(original)
    assert sources["MARCHETTI"] == "PatientName" and sources["HX-4471-0923"] == "PatientID"
    # a kept attribute repeats the patient's name in the output
    released = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    released.PatientName, released.PatientID = "PSEUDO^ONE", "P-000001"
    released.Manufacturer = "Marchetti gait lab"
    out = tmp_path / "released.dcm"
    released.save_as(out)
    leaks = scan_bytes(out, sources)
    # (CT_small's other patient attributes, kept in this copy, leak too, each named)
    assert {leak.attribute for leak in leaks if leak.kind == "name"} == {"PatientName"} and all(leak.attribute for leak in leaks)
    reason = describe_leaks(leaks, "the output bytes")
    assert "the values of PatientID, PatientName;" in reason and "MARCHETTI" not in reason.upper()
    # strings given without their sources are still found, with no attribute to name
    assert [leak.attribute for leak in scan_bytes(out, list(sources))] == ["" for _ in leaks]


def test_utf16_names_of_any_script_are_found_in_both_byte_orders_across_chunk_borders(tmp_path):
    # an ASCII or Cyrillic name's two byte orders share all but one byte and are searched as one;
    # a name mixing scripts (Greek and Latin high bytes) is searched in each byte order on its own
    names = ["Ivanova^Olga", "Иванова^Ольга", "Ωmega^Zoë"]
    pieces = [name.encode(enc) for name in names for enc in ("utf-16-le", "utf-16-be")]
    path, offsets = _file_with(tmp_path, pieces)
    for chunk in (8, 31, 64, 97, 1 << 20):
        leaks = scan_bytes(path, names, encoder_text=False, chunk_size=chunk)
        assert [(leak.offset, leak.encoding) for leak in leaks] == [
            (offset, enc) for offset, enc in zip(offsets, ["utf-16-le", "utf-16-be"] * 3)
        ], chunk
        assert [leak.string for leak in leaks] == [name for name in names for _ in range(2)], chunk


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_scan_finds_every_written_form_a_plain_search_finds(tmp_path, seed):
    # the scan searches a shared anchor (a date's year, an ID's digits) and compares each form around
    # it; a plain case-insensitive search of every form in every encoding is the reference
    rng = np.random.default_rng(seed)
    phi = ["19500312", "MRN 123456", "221B Baker Street", "ACC-7781"]
    forms = list(phi_variants(phi))
    data = b""
    for _ in range(40):
        data += rng.integers(0, 256, int(rng.integers(0, 80)), dtype=np.uint8).tobytes()
        form = forms[int(rng.integers(len(forms)))]
        piece = form.encode(["utf-8", "utf-16-le", "utf-16-be"][int(rng.integers(3))])
        data += piece.upper() if rng.random() < 0.5 else piece
    path = tmp_path / "out.bin"
    path.write_bytes(data)
    folded = data.lower()
    expected = []
    for form in forms:
        for enc in ("utf-8", "utf-16-le", "utf-16-be"):
            needle = form.encode(enc).lower()
            at = folded.find(needle)
            while at != -1:
                expected.append((at, at + len(needle)))
                at = folded.find(needle, at + 1)
    for chunk in (16, 37, 1 << 20):
        leaks = scan_bytes(path, phi, encoder_text=False, chunk_size=chunk)
        spans = [(leak.offset, leak.offset + len(leak.variant.encode(leak.encoding))) for leak in leaks]
        # every occurrence is reported (overlapping ones as one leak), and every leak is an occurrence
        assert all(any(a < e and s < b for a, b in spans) for s, e in expected), chunk
        assert all(folded[a:b] == leak.variant.encode(leak.encoding).lower() for (a, b), leak in zip(spans, leaks)), chunk
        assert len(leaks) >= 40 // 4

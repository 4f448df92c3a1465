"""Header de-identification on hand-built datasets: actions, options, nesting, keys, markers."""

from __future__ import annotations

import io
import re

import pydicom
import pytest
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from _deid_helpers import (
    BIRTH_DATE,
    KEY,
    OTHER_KEY,
    PATIENT_ID,
    PATIENT_NAME,
    make_dataset,
    nest,
    sample_value,
)
from clinrelease.dicom import keyed
from clinrelease.dicom.annex_e import load_table
from clinrelease.dicom.deid import (
    BURNED_IN_REASON,
    DUMMY_VALUES,
    Deidentifier,
    deidentify_file,
    patient_sources,
    output_relpath,
    read_dataset,
    write_deidentified,
)
from clinrelease.dicom.deid_options import OPTION_CODES
from clinrelease.dicom.residual import identifying_strings, residual_phi
from clinrelease.errors import ConfigError, InputError, VerificationError

BASIC = Deidentifier([], KEY)


def _bytes(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _rows_by_code() -> dict[str, list]:
    """For each Basic Profile code, table rows whose tag is a plain dictionary attribute."""
    rows: dict[str, list] = {}
    for row in load_table().rows:
        if row.is_pattern:
            continue
        tag = int(row.tag.strip("()").replace(",", ""), 16)
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            continue
        if keyword_for_tag(tag) and " or " not in vr and tag >> 16 != 0x0002 and tag not in (
            0x00100020, 0x00100010  # Patient ID and Name: the pseudonym, tested below
        ):
            rows.setdefault(row.basic, []).append((tag, vr))
    return rows


ROWS = _rows_by_code()


@pytest.mark.parametrize("code", sorted(ROWS))
def test_every_basic_action_code(code):
    """Every row of each code gets that code's treatment (all of them, not one example)."""
    ds = make_dataset()
    planted = {}
    for n, (tag, vr) in enumerate(ROWS[code]):
        if tag in ds:
            continue
        if vr == "SQ":
            item = Dataset()
            item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
            item.ReferencedSOPInstanceUID = f"1.2.826.0.1.77.{n}"
            item.PatientComments = "secret comment"
            ds.add_new(tag, "SQ", Sequence([item]))
        else:
            ds.add_new(tag, vr, sample_value(vr, n))
        planted[tag] = vr
    out = BASIC.deidentify(ds).dataset
    for tag, vr in planted.items():
        name = keyword_for_tag(tag)
        original = ds[tag].value
        if code == "X":
            assert tag not in out, name
        elif vr == "SQ" and code != "Z" and code != "X":
            # combined codes on sequences and X/Z/U*: items kept, UIDs replaced, free text gone
            item = out[tag].value[0]
            assert item.ReferencedSOPInstanceUID == keyed.keyed_uid(KEY, original[0].ReferencedSOPInstanceUID)
            assert "PatientComments" not in item, name
        elif code == "Z" or code == "X/Z":
            assert tag in out, name
            assert len(out[tag].value) == 0 if vr == "SQ" else out[tag].VM == 0, name
        elif code == "U":
            assert out[tag].value == keyed.keyed_uid(KEY, original), name
        else:  # D, Z/D, X/D, X/Z/D: a non-empty dummy valid for the VR
            value = out[tag].value
            assert value not in (None, "", b""), name
            assert value != original, name
            if vr == "UI":
                assert str(value).startswith("2.25."), name
            else:
                assert value == DUMMY_VALUES[vr] or str(value) == str(DUMMY_VALUES[vr]), name


def test_input_dataset_is_never_modified():
    ds = make_dataset()
    before = _bytes(ds)
    BASIC.deidentify(ds)
    Deidentifier(["retain_long_modified_dates", "clean_descriptors"], KEY).deidentify(ds)
    assert _bytes(ds) == before


def test_patient_identity_becomes_the_keyed_pseudonym():
    result = BASIC.deidentify(make_dataset())
    out = result.dataset
    assert result.pseudonym == keyed.pseudonym(KEY, PATIENT_ID)
    assert re.fullmatch(r"P[A-Z2-7]{12}", result.pseudonym)
    assert out.PatientID == result.pseudonym and str(out.PatientName) == result.pseudonym
    for gone in ("PatientAddress", "PatientTelephoneNumbers", "OtherPatientIDs", "PatientAge",
                 "StudyDescription"):
        assert gone not in out, gone
    for dummy in ("InstitutionName", "DeviceSerialNumber"):  # X/Z/D: kept with a dummy
        assert out[dummy].value == DUMMY_VALUES["LO"], dummy
    assert out["PatientBirthDate"].VM == 0 and out["PatientSex"].VM == 0
    assert out.Manufacturer == "Acme Imaging" and out.Modality == "OT" and out.Rows == 4
    assert out.PixelData == bytes(range(16))


def test_markers_and_code_sequence():
    d = Deidentifier(["clean_pixel_data", "clean_recognizable_visual_features",
                      "retain_long_modified_dates", "clean_descriptors"], KEY)
    out = d.deidentify(make_dataset(), pixels_cleaned=True, faces_anonymized=True).dataset
    assert out.PatientIdentityRemoved == "YES"
    codes = [i.CodeValue for i in out.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113101", "113102", "113105", "113107"]
    assert all(i.CodingSchemeDesignator == "DCM" for i in out.DeidentificationMethodCodeSequence)
    assert "2024b" in out.DeidentificationMethod[0]
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    assert out.BurnedInAnnotation == "NO" and out.RecognizableVisualFeatures == "NO"
    # without the pixel stages: no claim about pixels, no pixel option codes
    plain = d.deidentify(make_dataset()).dataset
    assert "RecognizableVisualFeatures" not in plain
    assert [i.CodeValue for i in plain.DeidentificationMethodCodeSequence] == ["113100", "113105", "113107"]
    assert BASIC.deidentify(make_dataset()).dataset.LongitudinalTemporalInformationModified == "REMOVED"
    full = Deidentifier(["retain_long_full_dates"], KEY).deidentify(make_dataset()).dataset
    assert full.LongitudinalTemporalInformationModified == "UNMODIFIED"


def test_original_attributes_icons_and_signatures_are_removed():
    ds = make_dataset()
    original = Dataset()
    original.PatientName = PATIENT_NAME
    ds.OriginalAttributesSequence = Sequence([Dataset()])
    ds.OriginalAttributesSequence[0].ModifiedAttributesSequence = Sequence([original])
    icon = Dataset()
    icon.Rows = icon.Columns = 1
    icon.PixelData = b"\x01\x02"
    ds.IconImageSequence = Sequence([icon])
    ds.EncryptedAttributesSequence = Sequence([Dataset()])
    out = BASIC.deidentify(ds).dataset
    for gone in ("OriginalAttributesSequence", "IconImageSequence", "EncryptedAttributesSequence"):
        assert gone not in out


@pytest.mark.parametrize(
    "option, keyword, expected",
    [
        ("retain_uids", "StudyInstanceUID", "1.2.826.0.1.3680043.8.498.1"),
        ("retain_device_identity", "DeviceSerialNumber", "SN-88412"),
        ("retain_device_identity", "StationName", "GAITLAB2"),
        ("retain_institution_identity", "InstitutionName", "St Swithin Movement Clinic"),
        ("retain_patient_characteristics", "PatientAge", "076Y"),
        ("retain_patient_characteristics", "PatientSex", "F"),
        ("retain_long_full_dates", "StudyDate", "20210315"),
        ("retain_long_full_dates", "AcquisitionDateTime", "20210315101702.250000"),
    ],
)
def test_retain_options_keep_their_attributes(option, keyword, expected):
    basic = BASIC.deidentify(make_dataset()).dataset
    kept = Deidentifier([option], KEY).deidentify(make_dataset()).dataset
    assert str(kept.get(keyword)) == expected
    assert str(basic.get(keyword, "")) != expected


def test_retain_long_modified_dates_shifts_every_date_consistently():
    d = Deidentifier(["retain_long_modified_dates"], KEY)
    result = d.deidentify(nest(3))
    out, shift = result.dataset, result.date_shift_days
    assert -365 <= shift <= -1 and shift == keyed.date_shift_days(KEY, PATIENT_ID)
    assert out.StudyDate == keyed.shift_date("20210315", shift)
    assert out.ContentDate == keyed.shift_date("20210316", shift)
    assert out.AcquisitionDateTime == keyed.shift_date("20210315", shift) + "101702.250000"
    assert out.StudyTime == "101500"  # whole-day shifts keep times
    deep = out.ReferencedImageSequence[0].ReferencedImageSequence[0].SourceImageSequence[0]
    assert deep.AcquisitionDate == out.StudyDate  # same original day -> same shifted day
    # the birth date is Z in every option set: never shifted into the release
    assert out["PatientBirthDate"].VM == 0


def test_clean_descriptors_scrubs_identifying_text():
    d = Deidentifier(["clean_descriptors"], KEY)
    out = d.deidentify(make_dataset()).dataset
    assert out.SeriesDescription == "Walking 10m"
    assert out.StudyDescription == "Gait exam of"  # name and MRN scrubbed, meaning kept
    assert "StudyDescription" not in BASIC.deidentify(make_dataset()).dataset


def test_clean_structured_content_keeps_cleaned_text_in_content_sequence():
    ds = make_dataset()
    item = Dataset()
    item.ValueType = "TEXT"
    item.TextValue = f"Tremor seen; patient {PATIENT_NAME.split('^')[0]} called on 07946 0958123"
    ds.ContentSequence = Sequence([item])
    basic = BASIC.deidentify(ds).dataset
    cleaned = Deidentifier(["clean_structured_content"], KEY).deidentify(ds).dataset
    assert basic.ContentSequence[0]["TextValue"].VM == 0
    assert cleaned.ContentSequence[0].TextValue == "Tremor seen; patient called on"
    assert cleaned.ContentSequence[0].ValueType == "TEXT"


def test_clean_graphics_overlays_and_curves():
    ds = make_dataset()
    ds.add_new(0x60000010, "US", 4)
    ds.add_new(0x60000011, "US", 4)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60003000, "OW", b"\xff\x00")
    ds.add_new(0x60004000, "LT", f"marked by {PATIENT_NAME}")
    ds.add_new(0x50003000, "OW", b"\x01\x02")
    basic = BASIC.deidentify(ds).dataset
    assert not any(t >> 16 in (0x6000, 0x5000) for t in basic.keys())  # whole overlay group goes
    graphics = Deidentifier(["clean_graphics"], KEY)
    kept = graphics.deidentify(ds, pixels_cleaned=True).dataset
    assert kept[0x60003000].value == b"\xff\x00" and kept[0x60000010].value == 4
    assert kept[0x60004000].value == "marked by"
    assert 0x50003000 in kept
    unclean = graphics.deidentify(ds).dataset  # bitmaps not cleaned by a pixel stage: removed
    assert not any(t >> 16 == 0x6000 for t in unclean.keys()) and 0x50003000 not in unclean


def test_private_blocks_removed_and_retain_safe_private():
    ds = make_dataset()
    siemens = ds.private_block(0x0019, "SIEMENS MR HEADER", create=True)
    siemens.add_new(0x0C, "IS", "1000")  # B_value: in the shipped safe list
    siemens.add_new(0x20, "LO", "operator Smith")  # not in the list
    basic = BASIC.deidentify(ds)
    assert not any(t >> 16 & 1 for t in basic.dataset.keys())
    assert {c.name for c in basic.changes if c.tag.startswith("(0029")} >= {"Private ACME SECRET"}
    safe = Deidentifier(["retain_safe_private"], KEY).deidentify(ds).dataset
    odd = {int(t) for t in safe.keys() if t >> 16 & 1}
    creator_tag = next(t for t in ds.keys() if t >> 16 == 0x0019 and ds[t].value == "SIEMENS MR HEADER")
    assert odd == {int(creator_tag), (int(creator_tag) & 0xFF) << 8 | 0x0019000C}
    # a profile may add entries
    extra = Deidentifier(["retain_safe_private"], KEY,
                         safe_private_extra=[{"creator": "ACME SECRET", "group": "0029", "element": "11"}])
    out = extra.deidentify(ds).dataset
    assert out.private_block(0x0029, "ACME SECRET")[0x11].value.startswith(b"MRN")


def test_private_tags_in_nested_sequences_are_removed():
    out = BASIC.deidentify(nest(3)).dataset
    for elem in out.iterall():
        assert not elem.tag.is_private, elem


def test_nested_three_deep_every_level_deidentified():
    ds = nest(3)
    result = BASIC.deidentify(ds)
    deep_in = ds.ReferencedImageSequence[0].ReferencedImageSequence[0].SourceImageSequence[0]
    deep = result.dataset.ReferencedImageSequence[0].ReferencedImageSequence[0].SourceImageSequence[0]
    assert deep.ReferencedSOPInstanceUID == keyed.keyed_uid(KEY, deep_in.ReferencedSOPInstanceUID)
    assert deep.ReferencedSOPClassUID == deep_in.ReferencedSOPClassUID  # registered UID kept
    assert str(deep.PersonName) == DUMMY_VALUES["PN"]
    assert deep["AcquisitionDate"].VM == 0
    paths = {c.path for c in result.changes}
    assert "(0008,1140)[0].(0008,1140)[0].(0008,2112)[0].(0008,1155)" in paths


def test_keep_unlisted_attribute_and_refuse_listed_one():
    ds = make_dataset()
    ds.PixelSpacingCalibrationDescription = "ruler"  # LO, not listed in Table E.1-1
    assert BASIC.deidentify(ds).dataset["PixelSpacingCalibrationDescription"].VM == 0
    kept = Deidentifier([], KEY, keep=["PixelSpacingCalibrationDescription"]).deidentify(ds).dataset
    assert kept.PixelSpacingCalibrationDescription == "ruler"
    with pytest.raises(ConfigError, match="Table E.1-1 governs"):
        Deidentifier([], KEY, keep=["PatientAge"])


def test_same_key_byte_identical_different_key_different(tmp_path):
    paths = []
    for n, key in enumerate((KEY, KEY, OTHER_KEY)):
        result = Deidentifier(["retain_long_modified_dates"], key).deidentify(make_dataset())
        paths.append(write_deidentified(result.dataset, tmp_path / str(n) / output_relpath(result.dataset)))
    a, b, c = (p.read_bytes() for p in paths)
    assert a == b
    assert a != c
    assert paths[0].relative_to(tmp_path / "0") == paths[1].relative_to(tmp_path / "1")
    assert paths[0].relative_to(tmp_path / "0") != paths[2].relative_to(tmp_path / "2")
    assert a[:132] == b"\x00" * 128 + b"DICM"
    meta = pydicom.dcmread(paths[0]).file_meta
    assert "SourceApplicationEntityTitle" not in meta
    assert meta.MediaStorageSOPInstanceUID == pydicom.dcmread(paths[0]).SOPInstanceUID


def test_uid_references_follow_across_files():
    target = make_dataset(sop_uid="1.2.826.0.1.3680043.8.498.500")
    referrer = make_dataset(sop_uid="1.2.826.0.1.3680043.8.498.501")
    ref = Dataset()
    ref.ReferencedSOPClassUID = target.SOPClassUID
    ref.ReferencedSOPInstanceUID = target.SOPInstanceUID
    referrer.SourceImageSequence = Sequence([ref])
    t_out = BASIC.deidentify(target).dataset
    r_out = BASIC.deidentify(referrer).dataset
    assert r_out.SourceImageSequence[0].ReferencedSOPInstanceUID == t_out.SOPInstanceUID
    assert r_out.StudyInstanceUID == t_out.StudyInstanceUID
    assert r_out.SOPInstanceUID != t_out.SOPInstanceUID
    assert len(t_out.SOPInstanceUID) <= 64 and t_out.SOPInstanceUID.startswith("2.25.")


def test_output_paths_never_derive_from_input_names(tmp_path):
    src = tmp_path / "Hargreaves_Eleanor_MRN4471923.dcm"
    pydicom.dcmwrite(src, make_dataset(), enforce_file_format=True)
    result, out = deidentify_file(BASIC, src, tmp_path / "release")
    rel = out.relative_to(tmp_path / "release").as_posix()
    assert rel == output_relpath(result.dataset)
    assert rel.startswith(result.pseudonym + "/2.25.")
    assert "Hargreaves" not in rel and PATIENT_ID not in rel


def test_residual_check_is_clean_and_catches_a_leak():
    ds = make_dataset()
    result = BASIC.deidentify(ds)
    assert residual_phi(ds, result.dataset, result) == []
    leaked = result.dataset
    leaked.ImageComments = f"see {PATIENT_NAME.split('^')[0]}"  # an identifying string planted
    leaked.add_new(0x00091010, "LO", "LEAK")
    leaked.add_new(0x00091011, "UN", b"x" + PATIENT_ID.encode() + b"\x00")
    leaked.StationName = "GAITLAB2"  # a removed value back in place
    findings = residual_phi(ds, leaked, result)
    kinds = {(f.kind, f.path) for f in findings}
    assert ("identifying-string", "(0020,4000)") in kinds
    assert "(0009,1011)" in {f.path for f in findings}  # the MRN inside a private binary value
    assert ("residual-value", "(0008,1010)") in kinds
    assert "(0009,1010)" not in {f.path for f in findings}
    assert all(PATIENT_ID not in repr(f) and "Hargreaves" not in repr(f) for f in findings)


def test_identifying_strings_cover_names_ids_dates_addresses():
    strings = identifying_strings(make_dataset())
    for expected in ("Hargreaves", "Eleanor", "Eleanor Hargreaves", PATIENT_ID, BIRTH_DATE,
                     "1948-09-23", "23/09/1948", "17 Larkspur Lane, Dunmore", "+44 20 7946 0958",
                     "NHS9434765919"):
        assert expected in strings, expected
    assert "Mae" in strings and "F" not in strings  # short values would match everywhere


def test_burned_in_annotation_needs_clean_pixel_data():
    ds = make_dataset()
    ds.BurnedInAnnotation = "YES"
    with pytest.raises(VerificationError, match=BURNED_IN_REASON) as info:
        BASIC.deidentify(ds)
    assert info.value.exit_code == 1
    out = Deidentifier(["clean_pixel_data"], KEY).deidentify(ds, pixels_cleaned=True).dataset
    assert out.BurnedInAnnotation == "NO"


def test_missing_patient_id_uses_stable_fallback():
    a = BASIC.deidentify(make_dataset(patient_id="", sop_uid="1.2.3.4.1"))
    b = BASIC.deidentify(make_dataset(patient_id="", sop_uid="1.2.3.4.2"))
    assert a.pseudonym == b.pseudonym == keyed.pseudonym(KEY, f"name:{PATIENT_NAME}|{BIRTH_DATE}")
    bare = Dataset()
    bare.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    bare.StudyInstanceUID = "1.2.3.9"
    assert BASIC.deidentify(bare).pseudonym == keyed.pseudonym(KEY, "StudyInstanceUID:1.2.3.9")
    with pytest.raises(InputError, match="cannot derive a pseudonym"):
        BASIC.deidentify(Dataset())


def test_bad_input_files(tmp_path):
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"this is not dicom at all" * 10)
    with pytest.raises(InputError, match="not a readable DICOM file") as info:
        read_dataset(garbage)
    assert info.value.path == garbage and info.value.exit_code == 2
    with pytest.raises(InputError, match="no such file"):
        read_dataset(tmp_path / "missing.dcm")
    dicomdir = pydicom.data.get_testdata_file("DICOMDIR")
    with pytest.raises(InputError, match="DICOMDIR"):
        read_dataset(dicomdir)
    with pytest.raises(InputError, match="DICOMDIR"):
        BASIC.deidentify(pydicom.dcmread(dicomdir))


def test_bad_configuration():
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        Deidentifier([], b"short")
    with pytest.raises(ConfigError, match="creator, group"):
        Deidentifier(["retain_safe_private"], KEY, safe_private_extra=[{"creator": "X"}])
    every = [o for o in OPTION_CODES if o != "retain_long_full_dates"]
    assert set(Deidentifier(every, KEY).options) == set(every)


def test_a_profile_can_keep_siemens_csa_headers_under_retain_safe_private(tmp_path):
    """Conversion tools (dcm2niix) read the CSA headers; the shipped list leaves them out, and a site
    that needs them names them in its profile."""
    from clinrelease.profiles import load_profile

    profile = tmp_path / "keeps_csa.yaml"
    profile.write_text(
        "name: keeps_csa\nextends: basic\ndeid:\n  options: [retain_safe_private]\n"
        "  safe_private_extra: ['(0029,xx10) SIEMENS CSA HEADER', '(0029,xx20) SIEMENS CSA HEADER']\n"
    )
    deid = load_profile(profile).deid
    ds = make_dataset()
    csa = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
    csa.add_new(0x10, "OB", b"SV10\x04\x03\x02\x01image")
    csa.add_new(0x20, "OB", b"SV10\x04\x03\x02\x01series")
    kept = Deidentifier(deid.options, KEY, safe_private_extra=deid.safe_private_extra).deidentify(ds).dataset
    block = kept.private_block(0x0029, "SIEMENS CSA HEADER")
    assert block[0x10].value.endswith(b"image") and block[0x20].value.endswith(b"series")
    assert "ACME SECRET" not in {e.value for e in kept if e.tag.is_private_creator}  # the rest still goes
    assert not [e for e in Deidentifier(deid.options, KEY).deidentify(ds).dataset if e.tag.group == 0x0029 and not e.tag.is_private_creator]
    with pytest.raises(ConfigError, match="followed by its private creator"):
        Deidentifier(["retain_safe_private"], KEY, safe_private_extra=["(0029,xx10)"])


def test_a_removed_value_inside_another_text_is_found_with_its_source():
    ds = make_dataset()
    result = BASIC.deidentify(ds)
    leaked = result.dataset
    leaked.add_new(0x00091012, "LO", "moved from GAITLAB2 today")  # the removed Station Name inside a text
    findings = residual_phi(ds, leaked, result)
    assert ("residual-value", "(0009,1012)", "(0008,1010)") in {(f.kind, f.path, f.source) for f in findings}


def test_sources_found_by_the_caller_are_not_searched_for_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from clinrelease.dicom import deid

    ds = make_dataset()
    expected = BASIC.deidentify(ds)
    sources = patient_sources(ds)
    monkeypatch.setattr(deid, "identifying_sources", lambda *a, **k: pytest.fail("searched again"))
    result = BASIC.deidentify(ds, sources=sources)
    assert result.original_phi_sources == expected.original_phi_sources == sources.strings
    assert result.changes == expected.changes
    assert _bytes(result.dataset) == _bytes(expected.dataset)


def test_a_file_meta_pydicom_refuses_is_refused_by_the_encoder_too() -> None:
    from clinrelease.dicom.deid import encode_deidentified

    ds = make_dataset()
    del ds.SOPClassUID
    del ds.file_meta.MediaStorageSOPClassUID
    out = BASIC.deidentify(ds).dataset
    with pytest.raises(AttributeError, match="Media Storage SOP Class UID"):  # as pydicom.dcmwrite
        encode_deidentified(out)


def test_a_removed_value_planted_in_a_nested_item_is_found_at_its_path():
    ds = make_dataset()
    result = BASIC.deidentify(ds)
    inner = Dataset()
    inner.StationName = "GAITLAB2"  # the removed Station Name, two sequences down
    outer = Dataset()
    outer.ReferencedSeriesSequence = Sequence([Dataset(), inner])
    result.dataset.ReferencedStudySequence = Sequence([outer])
    findings = residual_phi(ds, result.dataset, result)
    assert ("residual-value", "(0008,1110)[0].(0008,1115)[1].(0008,1010)") in {(f.kind, f.path) for f in findings}

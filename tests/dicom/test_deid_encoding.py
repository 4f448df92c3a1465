"""The de-identified dataset in every encoding a file can have.

The engine shares unchanged raw elements with the input and writes its own values (pseudonym,
keyed UIDs, empty and dummy values, markers) pre-encoded, so these tests read files in each
transfer syntax and character set, de-identify, write and read back.
"""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from _deid_helpers import KEY, PATIENT_ID, make_dataset
from clinrelease.dicom import keyed
from clinrelease.dicom.deid import DUMMY_VALUES, Deidentifier
from clinrelease.dicom.residual import residual_phi

DEID = Deidentifier(["clean_pixel_data", "clean_descriptors"], KEY)


def _as_read(ds: pydicom.Dataset, syntax: str) -> pydicom.Dataset:
    """``ds`` written in ``syntax`` and read back (raw elements, as from a real file)."""
    ds.file_meta.TransferSyntaxUID = syntax
    buf = io.BytesIO()
    ds.save_as(buf, implicit_vr=syntax == ImplicitVRLittleEndian,
               little_endian=syntax != ExplicitVRBigEndian, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buf.getvalue()))


def _written(ds: pydicom.Dataset) -> pydicom.Dataset:
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(buf.getvalue()))


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian])
def test_every_transfer_syntax_round_trips(syntax):
    src = _as_read(make_dataset(), syntax)
    original_sop = src.SOPInstanceUID
    result = DEID.deidentify(src, pixels_cleaned=True)
    back = _written(result.dataset)
    assert back.file_meta.TransferSyntaxUID == syntax
    assert back.PatientID == str(back.PatientName) == keyed.pseudonym(KEY, PATIENT_ID)
    assert back.SOPInstanceUID == keyed.keyed_uid(KEY, original_sop)
    assert back.file_meta.MediaStorageSOPInstanceUID == back.SOPInstanceUID
    assert back.PatientBirthDate == "" and back.ReferringPhysicianName == ""  # Z
    assert back.InstitutionName == DUMMY_VALUES["LO"]  # D
    assert back.Rows == 4 and back.PixelData == bytes(range(16))  # kept as read
    assert [i.CodeValue for i in back.DeidentificationMethodCodeSequence] == ["113100", "113101", "113105"]
    assert back.DeidentificationMethodCodeSequence[2].CodeMeaning == "Clean Descriptors Option"
    assert back.BurnedInAnnotation == "NO" and back.PatientIdentityRemoved == "YES"
    assert residual_phi(src, back, result) == []


def test_a_non_ascii_character_set_survives():
    ds = make_dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.Manufacturer = "Médicaux Ærø"  # kept (safe attribute), must stay decodable
    ds.SeriesDescription = "Marche de Zoë 10 m"  # cleaned under Clean Descriptors
    src = _as_read(ds, ExplicitVRLittleEndian)
    back = _written(DEID.deidentify(src).dataset)
    assert back.SpecificCharacterSet == "ISO_IR 192"
    assert back.Manufacturer == "Médicaux Ærø"
    assert back.SeriesDescription == "Marche de Zoë 10 m"
    assert back.PatientID == keyed.pseudonym(KEY, PATIENT_ID)


def test_editing_the_output_never_reaches_the_input():
    src = _as_read(make_dataset(), ExplicitVRLittleEndian)
    before = src.Manufacturer, src.Rows, bytes(src.PixelData)
    out = DEID.deidentify(src).dataset
    out.Manufacturer = "Changed"
    out.Rows = 99
    out.PixelData = b"\x00" * 16
    out.ReferencedImageSequence = pydicom.Sequence()
    assert (src.Manufacturer, src.Rows, bytes(src.PixelData)) == before


def test_repeated_runs_are_byte_identical_with_a_warm_cache():
    """Decisions are cached across instances: the 2nd, 3rd... file must not come out different."""
    src = _as_read(make_dataset(), ImplicitVRLittleEndian)
    first = io.BytesIO()
    pydicom.dcmwrite(first, Deidentifier(["clean_descriptors"], KEY).deidentify(src).dataset)
    for _ in range(3):
        again = io.BytesIO()
        pydicom.dcmwrite(again, Deidentifier(["clean_descriptors"], KEY).deidentify(src).dataset)
        assert again.getvalue() == first.getvalue()

"""Attributes Table E.1-1 removes (X) but an IOD requires: kept empty (Z) or with a dummy (D).

PS3.15 E.1.1 lets a de-identifier keep such attributes present so the result stays a valid
instance of its IOD; clinrelease does it where PS3.3 makes a plain X break the IOD, and records
what it applied (and why) in :class:`HeaderChange`.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pydicom
import pytest
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from _deid_helpers import KEY, dciodvfy_errors, deid_data_files, make_dataset
from clinrelease.dicom import keyed
from clinrelease.dicom.deid import Deidentifier, output_relpath, write_deidentified
from clinrelease.dicom.deid_options import (
    ENHANCED_PET_SOP_CLASSES,
    IOD_REQUIREMENTS,
    OPTIONS,
    PRESENTATION_SOP_CLASSES,
    TIMEZONE_SOP_CLASSES,
)
from clinrelease.dicom.residual import residual_phi

BASIC = Deidentifier([], KEY)
OWNER = "Pemberton^Rosalind"
GSPS = "1.2.840.10008.5.1.4.1.1.11.1"  # Grayscale Softcopy Presentation State
ADULT_ECHO_SR = "1.2.840.10008.5.1.4.1.1.88.72"


def _animal(**extra) -> Dataset:
    ds = make_dataset()
    ds.PatientSpeciesDescription = "Feline"
    ds.PatientBreedDescription = "Maine Coon"
    ds.ResponsiblePerson = OWNER
    ds.ResponsiblePersonRole = "OWNER"
    ds.ResponsibleOrganization = "Larkspur Cattery"
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    return ds


def _change(result, keyword: str, path: str | None = None):
    tag = tag_for_keyword(keyword)
    text = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    found = [c for c in result.changes if c.tag == text and (path is None or c.path == path)]
    assert len(found) == 1, (keyword, found)
    return found[0]


def test_animal_responsible_person_and_organization_are_kept_empty(tmp_path):
    ds = _animal()
    result = BASIC.deidentify(ds)
    out = result.dataset
    for keyword in ("ResponsiblePerson", "ResponsibleOrganization"):
        assert keyword in out and out[keyword].VM == 0, keyword
        change = _change(result, keyword)
        assert change.action == "Z" and change.path == change.tag
        assert "Type 2C" in change.reason and "animal" in change.reason
    # emptied, so their values are gone everywhere (the owner's name is identifying too)
    assert residual_phi(ds, out, result) == []
    written = pydicom.dcmread(write_deidentified(out, tmp_path / "a.dcm"))
    assert "Pemberton" not in str(written) and "Cattery" not in str(written)
    assert written.ResponsiblePerson == "" and written.ResponsibleOrganization == ""


def test_a_species_code_sequence_also_makes_the_patient_an_animal():
    ds = make_dataset()
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "448169003", "SCT", "Cat"
    ds.PatientSpeciesCodeSequence = Sequence([code])
    ds.ResponsibleOrganization = "Larkspur Cattery"
    result = BASIC.deidentify(ds)
    assert result.dataset.ResponsibleOrganization == ""
    assert _change(result, "ResponsibleOrganization").action == "Z"
    assert "ResponsiblePerson" not in result.dataset  # absent in the input: not invented


def test_human_patients_lose_responsible_person_as_the_table_says():
    ds = make_dataset()
    ds.ResponsiblePerson = OWNER
    ds.ResponsibleOrganization = "Larkspur Cattery"
    result = BASIC.deidentify(ds)
    for keyword in ("ResponsiblePerson", "ResponsibleOrganization"):
        assert keyword not in result.dataset
        change = _change(result, keyword)
        assert change.action == "X" and change.reason == ""


def test_only_the_top_level_patient_module_counts():
    """A Responsible Person inside a sequence item belongs to no Patient module: removed."""
    ds = _animal()
    item = Dataset()
    item.PatientSpeciesDescription = "Canine"
    item.ResponsiblePerson = "Nested^Owner"
    item.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.5"
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.ReferencedImageSequence = Sequence([item])
    result = BASIC.deidentify(ds)
    nested = result.dataset.ReferencedImageSequence[0]
    assert "ResponsiblePerson" not in nested
    assert _change(result, "ResponsiblePerson", "(0008,1140)[0].(0010,2297)").action == "X"
    assert _change(result, "ResponsiblePerson", "(0010,2297)").action == "Z"


@pytest.mark.parametrize("options", [[], ["clean_descriptors"], ["retain_long_modified_dates"]])
def test_every_option_set_keeps_the_animal_module_valid(options):
    result = Deidentifier(options, KEY).deidentify(_animal())
    assert result.dataset.ResponsiblePerson == "" and result.dataset.ResponsibleOrganization == ""


def test_presentation_states_keep_creation_date_and_time_as_dummies():
    ds = make_dataset()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = GSPS
    ds.PresentationCreationDate = "20210317"
    ds.PresentationCreationTime = "093000"
    result = BASIC.deidentify(ds)
    assert result.dataset.PresentationCreationDate == "19000101"
    assert result.dataset.PresentationCreationTime == "000000"
    assert _change(result, "PresentationCreationDate").action == "D"
    assert "Presentation State" in _change(result, "PresentationCreationTime").reason
    # the modified-dates option shifts it instead (C), as the table's option column says
    shifted = Deidentifier(["retain_long_modified_dates"], KEY).deidentify(ds)
    assert shifted.dataset.PresentationCreationDate == keyed.shift_date("20210317", shifted.date_shift_days)
    assert _change(shifted, "PresentationCreationDate").action == "C"
    # an image is no presentation state: the attribute goes
    image = make_dataset()
    image.PresentationCreationDate = "20210317"
    assert "PresentationCreationDate" not in BASIC.deidentify(image).dataset


def test_simplified_adult_echo_sr_keeps_a_valid_timezone_offset():
    ds = make_dataset()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = ADULT_ECHO_SR
    ds.TimezoneOffsetFromUTC = "+0100"
    result = BASIC.deidentify(ds)
    assert result.dataset.TimezoneOffsetFromUTC == "+0000"
    assert _change(result, "TimezoneOffsetFromUTC").action == "D"
    other = make_dataset()
    other.TimezoneOffsetFromUTC = "+0100"
    assert "TimezoneOffsetFromUTC" not in BASIC.deidentify(other).dataset


def test_inside_kept_sequences_required_attributes_stay():
    """Requested Procedure ID is Type 2 in Referenced Request Sequence items (KO, SR)."""
    ds = make_dataset()
    request = Dataset()
    request.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    request.AccessionNumber = "ACC20210315"
    request.RequestedProcedureID = "RP-77123"
    request.RequestedProcedureDescription = "Gait video"
    ds.ReferencedRequestSequence = Sequence([request])
    ds.RequestedProcedureID = "RP-77123"  # top level: no IOD needs it, so it goes
    result = BASIC.deidentify(ds)
    item = result.dataset.ReferencedRequestSequence[0]
    assert "RequestedProcedureID" in item and item.RequestedProcedureID == ""
    change = _change(result, "RequestedProcedureID", "(0040,A370)[0].(0040,1001)")
    assert change.action == "Z" and "Referenced Request Sequence" in change.reason
    assert "RequestedProcedureID" not in result.dataset
    assert _change(result, "RequestedProcedureID", "(0040,1001)").action == "X"
    assert residual_phi(ds, result.dataset, result) == []


def test_enhanced_pet_keeps_a_dummy_radiopharmaceutical_start():
    def pet(sop_class: str) -> Dataset:
        ds = make_dataset()
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
        info = Dataset()
        info.RadiopharmaceuticalStartDateTime = "20210315093000"
        info.RadionuclideTotalDose = "370000000"
        ds.RadiopharmaceuticalInformationSequence = Sequence([info])
        return ds

    enhanced = BASIC.deidentify(pet("1.2.840.10008.5.1.4.1.1.130"))
    item = enhanced.dataset.RadiopharmaceuticalInformationSequence[0]
    assert item.RadiopharmaceuticalStartDateTime == "19000101000000"
    assert _change(enhanced, "RadiopharmaceuticalStartDateTime").action == "D"
    plain = BASIC.deidentify(pet("1.2.840.10008.5.1.4.1.1.128"))  # PET Image: Type 3 there
    assert "RadiopharmaceuticalStartDateTime" not in plain.dataset.RadiopharmaceuticalInformationSequence[0]


def test_original_mac_sequences_are_removed():
    ds = make_dataset()
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ref.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.9"
    mac = Dataset()
    mac.MACAlgorithm = "SHA256"
    mac.MAC = b"\x01\x02\x03\x04"
    ref.ReferencedSOPInstanceMACSequence = Sequence([mac])
    ds.ReferencedImageSequence = Sequence([ref])
    out = BASIC.deidentify(ds).dataset
    assert "ReferencedSOPInstanceMACSequence" not in out.ReferencedImageSequence[0]


# ---------------------------------------------------------------------- against PS3.3 itself


def _highdicom_standard() -> Path | None:
    spec = importlib.util.find_spec("highdicom")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "_standard"
    return folder if (folder / "module_attribute_map.json").exists() else None


def _kept(d: Deidentifier, keyword: str) -> bool:
    """Whether the engine keeps a sequence (and walks its items) under ``d``'s options."""
    tag = tag_for_keyword(keyword)
    row = d.table.lookup(tag)
    if row is None:
        return True  # unlisted sequences are kept and their items de-identified
    action = d.action_for(tag)
    return action != "X" and not (action == "Z" and "/" not in row.basic)


def test_requirements_cover_every_x_row_that_an_iod_requires():
    """Check every X row against PS3.3's modules (highdicom's machine-readable copy).

    Any attribute that some IOD's mandatory module requires (top level: Type 1, 1C, 2 or 2C;
    inside sequences the engine keeps: Type 1 or 2) and that Table E.1-1 removes under any single
    option must have a rule, and the rules' SOP classes must be exactly those whose IOD has the
    module.
    """
    folder = _highdicom_standard()
    if folder is None:
        pytest.skip("highdicom's copy of PS3.3 (highdicom/_standard) is not installed")
    modules = json.loads((folder / "module_attribute_map.json").read_text())
    iods = json.loads((folder / "iod_module_map.json").read_text())
    sop_iod = json.loads((folder / "sop_class_iod_map.json").read_text())
    mandatory = {m["key"] for mods in iods.values() for m in mods if m["usage"] == "M"}
    required: dict[str, set[str]] = {}
    places: set[tuple[str, tuple[str, ...]]] = set()
    for module in mandatory:
        for attr in modules.get(module, ()):
            types = ("1", "2") if attr["path"] else ("1", "1C", "2", "2C")
            if attr["type"] in types and tag_for_keyword(attr["keyword"]) is not None:
                required.setdefault(attr["keyword"], set()).add(module)
                places.add((attr["keyword"], tuple(attr["path"])))
    removed = set()
    for options in [[]] + [[o] for o in OPTIONS]:
        d = Deidentifier(options, KEY)
        for keyword, path in places:
            tag = tag_for_keyword(keyword)
            if d.action_for(tag) == "X" and all(_kept(d, p) for p in path):
                removed.add((tag, tag_for_keyword(path[-1]) if path else None))
    assert removed == set(IOD_REQUIREMENTS)

    def sop_classes(module_keys: set[str]) -> set[str]:
        with_module = {iod for iod, mods in iods.items()
                       if any(m["key"] in module_keys and m["usage"] == "M" for m in mods)}
        return {uid for uid, iod in sop_iod.items() if iod in with_module}

    assert sop_classes(required["PresentationCreationDate"]) == PRESENTATION_SOP_CLASSES
    assert sop_classes(required["TimezoneOffsetFromUTC"]) == TIMEZONE_SOP_CLASSES
    assert sop_classes({"enhanced-pet-isotope"}) == ENHANCED_PET_SOP_CLASSES


def test_deid_data_cat_passes_dciodvfy(tmp_path):
    cat = [f for f in deid_data_files() if f.name.endswith("animals/cat.dcm")]
    if not cat:
        pytest.skip("deid-data is not installed")
    if dciodvfy_errors(cat[0].path) is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    ds = cat[0].read()
    result = BASIC.deidentify(ds)
    out = write_deidentified(result.dataset, tmp_path / output_relpath(result.dataset))
    assert dciodvfy_errors(out) - dciodvfy_errors(cat[0].path) == set()
    assert _change(result, "ResponsiblePerson").action == "Z"
    assert _change(result, "ResponsibleOrganization").action == "Z"

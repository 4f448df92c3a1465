"""The shipped PS3.15 Table E.1-1 and its lookups."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from clinrelease.dicom.annex_e import (
    ACTION_CODES,
    EDITION,
    OPTION_COLUMNS,
    PRIVATE_PATTERN,
    convert_innolitics,
    load_table,
)
from clinrelease.dicom.deid_options import OPTIONS, effective_action, resolve_combined, validate_options
from clinrelease.errors import ConfigError

STANDARD = Path(__file__).resolve().parents[2].parent / "shared" / "standard"


def test_table_is_2024b_with_621_rows_and_provenance():
    table = load_table()
    assert EDITION == "2024b" and table.edition == "2024b"
    assert len(table) == 621
    assert "innolitics" in table.source and "MIT" in table.licence
    assert set(Counter(r.basic for r in table.rows)) == set(ACTION_CODES) - {"K", "C"}


def test_lookup_exact_repeating_groups_and_private():
    table = load_table()
    assert table.lookup(0x00100010).name == "Patient's Name"
    assert table.lookup(0x00100010).basic == "Z"
    # (60xx,3000) Overlay Data matches every even overlay group, (50xx,xxxx) every curve element
    assert table.lookup(0x60003000).name == "Overlay Data"
    assert table.lookup(0x601E3000).name == "Overlay Data"
    assert table.lookup(0x60024000).name == "Overlay Comments"
    assert table.lookup(0x60000010) is None  # Overlay Rows is not listed
    assert table.lookup(0x50021234).name == "Curve Data"
    assert table.lookup(0x00291010).tag == PRIVATE_PATTERN
    assert table.lookup(0x00280010) is None  # Rows


def test_options_resolve_per_row():
    table = load_table()
    study_date = table.lookup(0x00080020)
    assert effective_action(study_date, ()) == "Z"
    assert effective_action(study_date, ("retain_long_full_dates",)) == "K"
    assert effective_action(study_date, ("retain_long_modified_dates",)) == "C"
    assert effective_action(table.lookup(0x0020000D), ("retain_uids",)) == "K"
    assert resolve_combined("X/Z") == "Z" and resolve_combined("X/Z/D") == "D"
    assert resolve_combined("Z/D") == "D" and resolve_combined("X/Z/U*") == "U*"
    assert set(OPTION_COLUMNS) < set(OPTIONS) and len(OPTIONS) == 12


def test_contradictory_or_unknown_options_are_config_errors():
    with pytest.raises(ConfigError, match="exclude each other"):
        validate_options(["retain_long_full_dates", "retain_long_modified_dates"])
    with pytest.raises(ConfigError, match="unknown de-identification option"):
        validate_options(["retain_everything"])


@pytest.mark.skipif(not STANDARD.is_dir(), reason="../shared/standard (the table's source) is absent")
def test_shipped_file_is_the_conversion_of_the_source(tmp_path):
    table = load_table()
    out = tmp_path / "t.json"
    n = convert_innolitics(STANDARD / "confidentiality_profile_attributes.json", out,
                           source=table.source, licence=table.licence)
    shipped = Path(__file__).resolve().parents[2] / "clinrelease" / "data" / "annex_e_2024b.json"
    assert n == 621
    assert json.loads(out.read_text()) == json.loads(shipped.read_text())

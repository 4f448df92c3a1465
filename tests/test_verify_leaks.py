"""PHI leak scan over output bytes: every written form of a planted value is found, in any encoding."""

from __future__ import annotations

import os

import numpy as np
import pytest

from _verify_helpers import write_clip
from clinrelease.errors import InputError
from clinrelease.verify.checks import ItemReports, Thresholds, decide
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
    verdict = decide(ItemReports(leaks=leaks), Thresholds(recognizers={}, body_ap_min=None, face_nme_max=None, text_max_boxes=None))
    assert verdict.reasons and verdict.reasons[0].startswith("PHI leak scan: 12 occurrence(s)")


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

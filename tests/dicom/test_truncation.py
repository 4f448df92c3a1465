"""A DICOM file cut short is reported as truncated, wherever the cut falls."""

from __future__ import annotations

from pathlib import Path

import pytest

from _release_helpers import deid_data_dir
from clinrelease.dicom.deid import read_dataset
from clinrelease.dicom.video import read_dicom_header
from clinrelease.errors import InputError


def test_every_cut_of_a_real_ct_is_reported_truncated(tmp_path: Path) -> None:
    import pydicom

    source = deid_data_dir() / "humans" / "ctbrain1.dcm"
    data = source.read_bytes()
    pixels = pydicom.dcmread(source)["PixelData"].file_tell
    cut = tmp_path / "cut.dcm"
    # every 7th byte of the header (file meta included), every 101st of the pixel data; the last 4
    # bytes are the sequence delimiter's length, which no reader needs: the pixels are whole without them
    for size in [*range(132, pixels, 7), *range(pixels, len(data) - 4, 101)]:
        cut.write_bytes(data[:size])
        with pytest.raises(InputError) as raised:
            read_dataset(cut)
        assert "truncated" in str(raised.value), (size, str(raised.value))
    cut.write_bytes(data)
    assert read_dataset(cut).PatientID


def test_a_header_cut_is_reported_by_the_header_reader(tmp_path: Path) -> None:
    import pydicom

    source = deid_data_dir() / "humans" / "ctbrain1.dcm"
    data = source.read_bytes()
    ds = pydicom.dcmread(source)
    cut = tmp_path / "cut.dcm"
    for size, where in ((ds["SOPInstanceUID"].file_tell - 8, "SOP Instance UID"), (ds["PatientID"].file_tell + 2, "declares")):
        cut.write_bytes(data[:size])
        with pytest.raises(InputError, match=f"truncated.*{where}"):
            read_dicom_header(cut)

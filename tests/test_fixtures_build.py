"""The fixture builder plants PHI everywhere a real file carries it, in every syntax."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from clinrelease.dicom.video import open_video
from clinrelease.fixtures import (
    FIXTURE_SYNTAXES,
    Identity,
    build_dicom_fixture,
    build_fixture_set,
    carphone_path,
    synthetic_frames,
)
from _video_helpers import FIXTURE_FRAMES, first_frames, psnr


@pytest.fixture(scope="module")
def fixture_set(tmp_path_factory):
    return build_fixture_set(tmp_path_factory.mktemp("fx"), max_frames=FIXTURE_FRAMES)


def test_every_syntax_and_an_mp4_are_built(fixture_set):
    kinds = [p.syntax for p in fixture_set]
    assert kinds == [*FIXTURE_SYNTAXES, "mp4"]
    for planted in fixture_set:
        assert planted.path.is_file() and planted.frames == FIXTURE_FRAMES


def test_header_strings_are_in_the_file_bytes(fixture_set):
    identity = Identity()
    data = fixture_set[0].path.read_bytes()
    for text in (identity.patient_name, identity.patient_id, identity.address, identity.phone,
                 identity.referring_physician, identity.institution, identity.device_serial, identity.comment):  # fmt: skip
        assert text.encode() in data, text
    for uid in fixture_set[0].uids:
        assert uid.encode() in data


def test_nested_sequences_private_tags_and_csa(fixture_set):
    identity = Identity()
    ds = pydicom.dcmread(fixture_set[0].path, stop_before_pixels=True)
    request = ds.RequestAttributesSequence[0]
    assert request.AccessionNumber == identity.accession
    assert request.ReferencedStudySequence[0].ReferencedSOPInstanceUID == ds.StudyInstanceUID
    deep = request.ScheduledProtocolCodeSequence[0].ProtocolContextSequence[0]
    assert identity.patient_id in deep.TextValue  # three sequences deep
    csa = ds.private_block(0x0029, "SIEMENS CSA HEADER")
    assert csa[0x10].VR == "OB" and csa[0x10].value.startswith(b"SV10")
    assert identity.patient_name.encode() in csa[0x10].value
    vendor = ds.private_block(0x0011, "ACME CAMERA 1.0")
    assert vendor[0x01].value == identity.patient_id
    assert ds.BurnedInAnnotation == "YES"
    assert ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID in fixture_set[0].uids


def test_burned_in_text_is_drawn_into_the_corner(tmp_path):
    clean = build_dicom_fixture(tmp_path / "clean.dcm", syntax="native", max_frames=2, burn_text=False)
    burned = build_dicom_fixture(tmp_path / "burned.dcm", syntax="native", max_frames=2)
    a = next(open_video(clean.path).frames()).astype(int)
    b = next(open_video(burned.path).frames()).astype(int)
    corner = np.abs(a[:30, :100] - b[:30, :100]).mean()
    rest = np.abs(a[60:, :] - b[60:, :]).mean()
    assert corner > 20 and rest == 0
    assert burned.burned_in == [burned.patient_name, f"MRN {burned.patient_id}"]
    assert clean.burned_in == []


def test_mp4_container_metadata_carries_phi(fixture_set):
    mp4 = fixture_set[-1]
    metadata = open_video(mp4.path).info.container_metadata
    assert Identity().patient_name in metadata["title"]
    assert Identity().patient_id in metadata["comment"]
    assert "location" in metadata
    for key in ("title", "comment", "artist"):
        assert metadata[key] in mp4.strings


def test_mp4_stored_as_pixel_data_keeps_its_metadata(fixture_set):
    fixture = next(p for p in fixture_set if p.syntax == "h264-mp4")
    ds = pydicom.dcmread(fixture.path)
    assert b"ftyp" in ds.PixelData[:64]
    assert Identity().patient_id.encode() in ds.PixelData


def test_fixture_frames_follow_the_source(fixture_set):
    source = first_frames(carphone_path(), FIXTURE_FRAMES)
    decoded = list(open_video(fixture_set[0].path).frames())
    assert len(decoded) == len(source)
    # below the burned-in text the pixels are the source's (carphone is noisy: ~34 dB at CRF 18)
    assert min(psnr(s[40:], d[40:]) for s, d in zip(source, decoded)) > 32


def test_synthetic_frames_are_generated_lazily():
    frames = synthetic_frames(3, 64, 96)
    first = next(frames)
    assert first.shape == (64, 96, 3) and first.dtype == np.uint8
    assert not np.array_equal(first, next(frames))


def test_unknown_fixture_syntax_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="unknown fixture syntax"):
        build_dicom_fixture(tmp_path / "x.dcm", syntax="jpeg2000")

"""Every bad input is an InputError whose message names the file and the problem."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from _video_helpers import PYDICOM_FILES

from clinrelease.dicom.video import open_video, read_dicom_header
from clinrelease.errors import InputError
from clinrelease.fixtures import build_dicom_fixture, build_mp4_fixture


@pytest.fixture(scope="module")
def h264(tmp_path_factory) -> Path:
    return build_dicom_fixture(tmp_path_factory.mktemp("bad") / "h264.dcm", syntax="h264", max_frames=40).path


def _expect(path: Path, pattern: str, decode: bool = False) -> InputError:
    with pytest.raises(InputError, match=pattern) as caught:
        video = open_video(path)
        if decode:
            for _ in video.frames():
                pass
    assert caught.value.path == Path(path)
    assert str(path) in str(caught.value)
    return caught.value


def _corrupt(src: Path, dst: Path, start_fraction: float, length: int, seed: int = 0) -> Path:
    video = open_video(src)
    frag = video.location.fragments[0]
    data = bytearray(src.read_bytes())
    at = frag.offset + int(frag.length * start_fraction)
    length = min(length, frag.offset + frag.length - at)  # stay inside the fragment
    data[at : at + length] = np.random.default_rng(seed).integers(0, 256, length, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return dst


def test_missing_file(tmp_path):
    _expect(tmp_path / "nope.dcm", "no such file")
    with pytest.raises(InputError, match="no such file"):
        read_dicom_header(tmp_path / "nope.dcm")


def test_empty_file(tmp_path):
    (tmp_path / "empty.dcm").write_bytes(b"")
    _expect(tmp_path / "empty.dcm", "the file is empty")


def test_neither_dicom_nor_video(tmp_path):
    (tmp_path / "notes.dcm").write_text("Patient notes, not an image\n" * 20)
    _expect(tmp_path / "notes.dcm", "not a DICOM file and not a readable video file")


def test_truncated_in_pixel_data(h264, tmp_path):
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(h264.read_bytes()[: h264.stat().st_size // 2])
    _expect(cut, r"the file is truncated: Pixel Data item 1 declares \d+ bytes but only \d+ remain")


def test_truncated_in_header(h264, tmp_path):
    cut = tmp_path / "cut_header.dcm"
    cut.write_bytes(h264.read_bytes()[:700])
    _expect(cut, "truncated or corrupt|truncated")


def test_truncated_native(tmp_path):
    _expect(PYDICOM_FILES / "MR_truncated.dcm", r"the file is truncated: Pixel Data declares 8192 bytes but only 8130 remain")


def _slice_fraction(src: Path, nth: int) -> float:
    """Where the ``nth`` non-IDR slice NAL unit starts, as a fraction of the H.264 fragment."""
    frag = open_video(src).location.fragments[0]
    stream = src.read_bytes()[frag.offset : frag.offset + frag.length]
    starts = [m.start() for m in re.finditer(rb"\x00\x00\x01", stream) if m.end() < len(stream) and stream[m.end()] & 0x1F == 1]
    return starts[nth] / len(stream)


def test_corrupt_bitstream_mid_stream(h264, tmp_path):
    # the damage starts at the 10th inter-coded picture, whatever the encoder's frame sizes
    bad = _corrupt(h264, tmp_path / "corrupt.dcm", _slice_fraction(h264, 10), 3000)
    error = _expect(bad, r"corrupt video bitstream near frame \d+: h264: ", decode=True)
    assert "frame 1:" not in error.message  # frames before the damage were delivered


def test_an_earlier_files_repeated_error_is_not_reported_as_this_streams(h264, tmp_path):
    """PyAV holds back a message identical to the one before and delivers it with the next one: a cut
    MP4 opened twice left its "moov atom not found" to be reported as the next file's damage."""
    import av
    import av.logging

    mp4 = build_mp4_fixture(tmp_path / "clip.mp4", max_frames=20).path
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(mp4.read_bytes()[:2000])
    previous, skipped = av.logging.get_level(), av.logging.get_skip_repeated()
    av.logging.set_level(av.logging.ERROR)  # as a decode left suspended leaves it
    av.logging.set_skip_repeated(True)  # PyAV's default
    with pytest.raises(InputError):  # a decode of ours ran earlier in this process
        list(open_video(_corrupt(h264, tmp_path / "first.dcm", _slice_fraction(h264, 10), 3000)).frames())
    try:
        for _ in range(2):
            with pytest.raises(av.error.FFmpegError):
                av.open(str(cut))
        bad = _corrupt(h264, tmp_path / "corrupt.dcm", _slice_fraction(h264, 10), 3000)
        error = _expect(bad, r"corrupt video bitstream near frame \d+: h264: ", decode=True)
        assert "moov" not in error.message
    finally:
        av.logging.set_level(previous)
        av.logging.set_skip_repeated(skipped)


def test_corrupt_bitstream_from_the_start(h264, tmp_path):
    bad = _corrupt(h264, tmp_path / "garbage.dcm", 0.0, 400_000)
    _expect(bad, "corrupt (video bitstream|or empty video bitstream)", decode=True)


def test_corrupt_encapsulation(h264, tmp_path):
    video = open_video(h264)
    data = bytearray(h264.read_bytes())
    end = video.location.fragments[0].offset + video.location.fragments[0].length
    data[end : end + 4] = b"\x12\x34\x56\x78"  # the Sequence Delimitation Item's tag
    (tmp_path / "enc.dcm").write_bytes(bytes(data))
    _expect(tmp_path / "enc.dcm", r"corrupt encapsulated Pixel Data: expected an item at byte \d+, found \(3412,7856\)")


def test_corrupt_jpeg_frame(tmp_path):
    path = build_dicom_fixture(tmp_path / "jpeg.dcm", syntax="jpeg", max_frames=3).path
    video = open_video(path)
    frag = video.location.fragments[1]
    data = bytearray(path.read_bytes())
    data[frag.offset : frag.offset + frag.length] = b"\x00" * frag.length
    path.write_bytes(bytes(data))
    _expect(path, "corrupt JPEG data in frame 2 of 3", decode=True)


def test_zero_frames(h264, tmp_path):
    ds = pydicom.dcmread(h264)
    ds.NumberOfFrames = 0
    ds.save_as(tmp_path / "zero.dcm", enforce_file_format=True)
    _expect(tmp_path / "zero.dcm", r"zero frames \(Number of Frames is 0\)")


def test_fewer_frames_than_declared(h264, tmp_path):
    ds = pydicom.dcmread(h264)
    ds.NumberOfFrames = 400
    ds.save_as(tmp_path / "short.dcm", enforce_file_format=True)
    _expect(tmp_path / "short.dcm", "40 frames decoded but Number of Frames is 400", decode=True)


def test_zero_frame_container(tmp_path):
    import av

    path = tmp_path / "empty.avi"
    container = av.open(str(path), "w", format="avi")
    stream = container.add_stream("mpeg4", rate=30)
    stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    container.start_encoding()  # header with a video stream, then no packets
    container.close()
    _expect(path, "the video stream holds zero frames")


def test_truncated_container(tmp_path):
    mp4 = build_mp4_fixture(tmp_path / "clip.mp4", max_frames=20).path
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(mp4.read_bytes()[:2000])
    _expect(cut, "not a DICOM file and not a readable video file|corrupt|zero frames", decode=True)


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("test-SR.dcm", "Comprehensive SR Storage object with no Pixel Data: not an image"),
        ("rtplan.dcm", "RT Plan Storage object with no Pixel Data: not an image"),
        ("dicomdirtests/DICOMDIR", r"a DICOMDIR \(Media Storage Directory\), not an image"),
    ],
)
def test_non_image_dicom(name, pattern):
    _expect(PYDICOM_FILES / name, pattern)


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("JPEG2000.dcm", r"1\.2\.840\.10008\.1\.2\.4\.91 \(JPEG 2000 Image Compression\) cannot be decoded"),
        ("image_dfl.dcm", r"Deflated Explicit VR Little Endian\) cannot be decoded: the whole data set is deflated"),
        ("MR_small_RLE.dcm", r"RLE Lossless\) cannot be decoded"),
        ("ExplVR_BigEnd.dcm", "big endian pixel data is retired"),
        ("JPGExtended.dcm", r"JPEG Extended .* cannot be decoded"),
    ],
)
def test_undecodable_transfer_syntax_is_named(name, pattern):
    _expect(PYDICOM_FILES / name, pattern)

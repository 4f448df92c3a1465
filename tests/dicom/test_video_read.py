"""Reading every supported syntax: frame count, size, fps, content close to the source."""

from __future__ import annotations

import itertools

import numpy as np
import pydicom
import pytest
from _video_helpers import FIXTURE_FRAMES, PYDICOM_FILES, first_frames, psnr, pydicom_data_file, shared_clips

from clinrelease.dicom.bitstream import nal_types, strip_user_data
from clinrelease.dicom.video import open_video, read_dicom_header
from clinrelease.errors import InputError
from clinrelease.fixtures import FIXTURE_SYNTAXES, build_fixture_set, burn_in, carphone_path, write_mp4

EXPECTED_SYNTAX = {
    "h264": "1.2.840.10008.1.2.4.102",
    "h264-fragmented": "1.2.840.10008.1.2.4.102.1",
    "h264-mp4": "1.2.840.10008.1.2.4.102",
    "hevc": "1.2.840.10008.1.2.4.107",
    "mpeg2": "1.2.840.10008.1.2.4.100",
    "jpeg": "1.2.840.10008.1.2.4.50",
    "jpeg-grey": "1.2.840.10008.1.2.4.50",
    "native": "1.2.840.10008.1.2.1",
    "native-grey": "1.2.840.10008.1.2.1",
    "native-implicit": "1.2.840.10008.1.2",
}
#: PSNR the decoded fixture keeps against the (burned-in) source frames; lossless ones are exact
MIN_PSNR = {"native": np.inf, "native-implicit": np.inf, "jpeg": 33, "hevc": 31}


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    built = build_fixture_set(tmp_path_factory.mktemp("read"), max_frames=FIXTURE_FRAMES)
    return {p.syntax: p for p in built}


@pytest.fixture(scope="module")
def source_frames():
    lines = ["Whitmore^Eleanor^June", "MRN MRN4815162342"]
    return [burn_in(f, lines) for f in first_frames(carphone_path(), FIXTURE_FRAMES)]


@pytest.mark.parametrize("syntax", FIXTURE_SYNTAXES)
def test_every_syntax_reads_back(fixtures, source_frames, syntax):
    video = open_video(fixtures[syntax].path)
    info = video.info
    assert info.kind == "dicom"
    assert info.transfer_syntax_uid == EXPECTED_SYNTAX[syntax]
    assert (info.frames, info.rows, info.columns) == (FIXTURE_FRAMES, 144, 176)
    assert info.fps == pytest.approx(30000 / 1001)
    assert info.duration_s == pytest.approx(FIXTURE_FRAMES * 1001 / 30000)
    decoded = list(video.frames())
    assert len(decoded) == FIXTURE_FRAMES
    assert all(f.shape == (144, 176, 3) and f.dtype == np.uint8 for f in decoded)
    if syntax.endswith("-grey"):
        assert info.photometric_interpretation == "MONOCHROME2"
        assert all(np.array_equal(f[..., 0], f[..., 2]) for f in decoded)  # grey returned as RGB
        reference = [np.repeat(_grey(f)[..., None], 3, axis=2) for f in source_frames]
    else:
        reference = source_frames
    floor = MIN_PSNR.get(syntax.removesuffix("-grey"), 32)
    scores = [psnr(r, d) for r, d in zip(reference, decoded)]
    assert min(scores) >= floor, scores
    # order preserved: each frame is nearer its own source frame than the next one
    assert all(psnr(reference[i], decoded[i]) > psnr(reference[i + 1], decoded[i]) for i in range(len(decoded) - 1))


def _grey(frame):
    import cv2

    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def test_mpeg_photometric_is_ybr_partial_420(fixtures):
    for syntax in ("h264", "hevc", "mpeg2"):
        assert open_video(fixtures[syntax].path).info.photometric_interpretation == "YBR_PARTIAL_420"


def test_fragmented_h264_spans_many_fragments(fixtures):
    video = open_video(fixtures["h264-fragmented"].path)
    assert len(video.location.fragments) > 2
    same = list(open_video(fixtures["h264"].path).frames())
    assert all(np.array_equal(a, b) for a, b in zip(same, video.frames()))


def test_frames_restart_from_the_first_on_each_call(fixtures):
    video = open_video(fixtures["h264"].path)
    a = next(video.frames())
    b = next(iter(video))
    assert np.array_equal(a, b)


def test_read_dicom_header_has_no_pixels(fixtures):
    ds = read_dicom_header(fixtures["h264"].path)
    assert "PixelData" not in ds
    assert ds.file_meta.TransferSyntaxUID == EXPECTED_SYNTAX["h264"]
    assert ds.PatientID == fixtures["h264"].patient_id


def test_third_party_jpeg_multiframe_matches_pydicom():
    """pydicom-data's 120-frame 640x480 JPEG colour file decodes exactly as pydicom does."""
    path = pydicom_data_file("color3d_jpeg_baseline.dcm")
    video = open_video(path)
    assert (video.info.frames, video.info.rows, video.info.columns) == (120, 480, 640)
    from pydicom.pixels import pixel_array

    frames = list(video.frames())
    assert len(frames) == 120
    for index in (0, 59, 119):
        assert np.array_equal(frames[index], pixel_array(path, index=index))


@pytest.mark.parametrize("name", ["SC_jpeg_no_color_transform.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_dcmtk_+eb+cy+np.dcm"])
def test_third_party_jpeg_colour_models_match_pydicom(name):
    """RGB-coded JPEG without an Adobe marker, and YBR_FULL / YBR_FULL_422, decode as pydicom does."""
    path = PYDICOM_FILES / name
    frame = next(open_video(path).frames())
    assert np.array_equal(frame, pydicom.dcmread(path).pixel_array)


def test_third_party_native_grey_multiframe():
    """pydicom-data's emri_small: 10 frames of 16-bit MONOCHROME2, returned as 8-bit RGB."""
    path = pydicom_data_file("emri_small.dcm")
    ds = pydicom.dcmread(path)
    frames = list(open_video(path).frames())
    assert len(frames) == 10 and frames[0].shape == (64, 64, 3)
    expected = (ds.pixel_array[3] >> (ds.BitsStored - 8)).astype(np.uint8)
    assert np.array_equal(frames[3][..., 1], expected)


def test_third_party_implicit_vr_native():
    path = PYDICOM_FILES / "MR_small_implicit.dcm"
    frame = next(open_video(path).frames())
    ds = pydicom.dcmread(path)
    assert frame.shape == (ds.Rows, ds.Columns, 3)
    assert np.array_equal(frame[..., 0], (np.clip(ds.pixel_array, 0, None) >> 8).astype(np.uint8))


def test_container_files_keep_metadata_and_count_frames():
    mp4 = open_video(carphone_path())
    assert mp4.info.kind == "container" and mp4.info.frames == 120
    assert mp4.info.container_metadata["encoder"].startswith("Lavf")
    clips = shared_clips()
    if clips:  # MKV carries no frame count; it is counted by demuxing
        video = open_video(clips[0])
        assert video.info.frames == sum(1 for _ in video.frames())


def test_sei_and_user_data_are_stripped_by_unit():
    sps, sei, idr = b"\x00\x00\x00\x01\x67\x64\x1f", b"\x00\x00\x01\x06\x05x264 options:", b"\x00\x00\x01\x65\x88\x84"
    stream = sps + sei + idr
    assert strip_user_data(stream, "h264") == sps + idr
    assert nal_types(stream, "h264") == [7, 6, 5]
    hevc_sei = b"\x00\x00\x01\x4e\x01\x05x265"  # type 39, prefix SEI
    assert strip_user_data(b"\x00\x00\x01\x40\x01" + hevc_sei, "hevc") == b"\x00\x00\x01\x40\x01"
    mpeg2 = b"\x00\x00\x01\xb3\x10" + b"\x00\x00\x01\xb2Lavc" + b"\x00\x00\x01\x00\x01"
    assert strip_user_data(mpeg2, "mpeg2") == b"\x00\x00\x01\xb3\x10\x00\x00\x01\x00\x01"


@pytest.mark.parametrize(("rotation", "mirrored"), [(r, m) for r in (0, 90, 180, 270) for m in (False, True) if r or m])
def test_a_phone_video_is_turned_upright_by_its_display_matrix(tmp_path, rotation, mirrored):
    import av

    upright = first_frames(carphone_path(), 3)
    path = tmp_path / "phone.mp4"
    write_mp4(path, upright, 30, {}, rotation=rotation, mirrored=mirrored)
    with av.open(str(path)) as container:
        stored = next(container.decode(video=0))
    # the file really lies on its side, and FFmpeg reads the matrix as the counter-clockwise turn back
    assert (stored.height, stored.width) == (upright[0].shape[:2] if rotation % 180 == 0 else upright[0].shape[1::-1])
    if not mirrored:
        assert stored.rotation % 360 == -rotation % 360
    video = open_video(path)
    orientation = video.info.orientation
    assert (orientation.rotation, orientation.mirrored, orientation.source) == (rotation, mirrored, "display matrix")
    assert (video.info.rows, video.info.columns) == upright[0].shape[:2]
    frames = list(video.frames())
    assert len(frames) == 3 and all(psnr(f, u) > 30 for f, u in zip(frames, upright)), [psnr(f, u) for f, u in zip(frames, upright)]


def test_the_legacy_rotate_tag_turns_a_video_without_a_display_matrix(tmp_path):
    import av

    upright = first_frames(carphone_path(), 3)
    path = tmp_path / "old-phone.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.metadata["rotate"] = "90"  # clockwise, as older muxers wrote it
        stream.height, stream.width = upright[0].shape[1], upright[0].shape[0]
        stream.pix_fmt = "yuv420p"
        for frame in upright:
            stored = np.ascontiguousarray(np.rot90(frame))  # on its side: a quarter turn counter-clockwise
            for packet in stream.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    video = open_video(path)
    assert (video.info.orientation.rotation, video.info.orientation.source) == (90, "rotate tag")
    assert (video.info.rows, video.info.columns) == upright[0].shape[:2]
    assert all(psnr(f, u) > 30 for f, u in zip(video.frames(), upright))


def test_a_turn_that_is_not_a_quarter_turn_is_a_clear_error(tmp_path):
    import av

    upright = first_frames(carphone_path(), 2)
    path = tmp_path / "tilted.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.set_display_rotation(45)
        stream.height, stream.width = upright[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for frame in upright:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    with pytest.raises(InputError, match="only quarter turns") as error:
        open_video(path)
    assert "tilted.mp4" in str(error.value) and "45 degrees counter-clockwise" in str(error.value)


def test_decoded_frames_have_their_rows_packed():
    # carphone is 176 px wide: the decoder pads each row, and PyAV 18.1.1 hands back a view of the
    # padded buffer, which dlib refuses ("incompatible function arguments") and a buffer copy misreads
    frames = list(itertools.islice(open_video(carphone_path()).frames(), 5))
    assert len(frames) == 5
    assert all(f.flags["C_CONTIGUOUS"] and f.shape == (144, 176, 3) and f.dtype == np.uint8 for f in frames)

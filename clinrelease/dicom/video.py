"""Video sources: DICOM video objects and plain container files, decoded lazily to RGB frames.

Every later stage streams frames through :func:`open_video`. Frames are ``numpy.uint8`` arrays of
shape ``(rows, columns, 3)`` in RGB order (grey images are replicated to three channels), yielded one
at a time so that a long video never has to fit in memory.

DICOM routes (see :mod:`clinrelease.dicom.syntaxes`):

* MPEG-2 / H.264 / HEVC: the header is read with ``stop_before_pixels``; the fragments are joined by
  a seekable view over the file (:class:`~clinrelease.dicom.pixeldata.FragmentStream`) and PyAV
  decodes them on demand.
* JPEG Baseline multi-frame: one JPEG per frame, each decoded when its turn comes.
* Native (explicit or implicit VR little endian): frames read by offset through a memory map.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from clinrelease.dicom.pixeldata import (
    Fragment,
    FragmentStream,
    PixelDataLocation,
    locate_pixel_data,
)
from clinrelease.dicom.truncation import read_checked
from clinrelease.dicom.syntaxes import NON_IMAGE_HINTS, SyntaxInfo, syntax_info, unsupported_reason
from clinrelease.errors import InputError


#: container metadata keys that describe the encoding, not the patient
TECHNICAL_METADATA_KEYS = frozenset({
    "major_brand", "minor_version", "compatible_brands", "encoder", "handler_name", "vendor_id",
    "language", "duration", "bps", "number_of_frames", "number_of_bytes", "rotate",
})  # fmt: skip


def is_technical_metadata(key: str) -> bool:
    """True for container tags written by muxers and encoders (``stream:language``, ``encoder``, ...)."""
    bare = key.split(":", 1)[-1].lower()
    return bare in TECHNICAL_METADATA_KEYS or bare.startswith("_statistics")


@dataclass(frozen=True)
class Orientation:
    """How a player turns a container's stored picture to show it upright (phones store it on its side).

    Read from the stream's display matrix, or from the legacy ``rotate`` tag where there is none;
    :class:`ContainerVideo` yields frames already turned, so every later stage sees them upright.
    """

    #: clockwise turn in degrees: 0, 90, 180 or 270
    rotation: int = 0
    #: mirrored left-right after the turn
    mirrored: bool = False
    #: "display matrix" or "rotate tag"; None when the container says nothing
    source: str | None = None

    @property
    def turned(self) -> bool:
        return bool(self.rotation or self.mirrored)

    def upright(self, frame: np.ndarray) -> np.ndarray:
        """``frame`` as a player shows it."""
        frame = np.rot90(frame, k=-self.rotation // 90)
        if self.mirrored:
            frame = frame[:, ::-1]
        return np.ascontiguousarray(frame)

    def describe(self) -> str:
        if not self.turned:
            return "none"
        mirror = ", mirrored" if self.mirrored else ""
        return f"{self.rotation} degrees clockwise{mirror} ({self.source}); frames are turned upright on reading"


#: display matrix (a, b, c, d) -> (clockwise turn, mirrored); FFmpeg maps a stored pixel (x, y) to
#: (a*x + c*y, b*x + d*y) on screen, and mirroring after the turn negates a and c
_DISPLAY_MATRICES = {
    (1, 0, 0, 1): (0, False), (0, 1, -1, 0): (90, False), (-1, 0, 0, -1): (180, False), (0, -1, 1, 0): (270, False),
    (-1, 0, 0, 1): (0, True), (0, 1, 1, 0): (90, True), (1, 0, 0, -1): (180, True), (0, -1, -1, 0): (270, True),
}  # fmt: skip


@dataclass(frozen=True)
class VideoInfo:
    """What a video source holds, read from its header or container without decoding frames."""

    path: Path
    #: "dicom" for a DICOM object, "container" for MP4/MKV/AVI and other plain video files
    kind: str
    frames: int
    fps: float
    rows: int
    columns: int
    photometric_interpretation: str = "RGB"
    sop_class_uid: str | None = None
    transfer_syntax_uid: str | None = None
    codec: str | None = None
    #: container-level metadata (title, comment, creation_time, location, ...) that may carry PHI
    container_metadata: dict[str, str] = field(default_factory=dict)
    #: the container's display rotation; ``rows`` and ``columns`` are those of the upright picture
    orientation: Orientation = field(default_factory=Orientation)
    #: audio streams beside the video; never decoded, so never released (a voice identifies a patient)
    audio_streams: int = 0

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps if self.fps else 0.0

    @property
    def descriptive_metadata(self) -> dict[str, str]:
        """Container tags a person or camera may have filled in (title, comment, location, ...)."""
        return {k: v for k, v in self.container_metadata.items() if not is_technical_metadata(k) and str(v).strip()}


#: decodes started per file (resolved path) in this process: how many times a video was read,
#: which the one-pass verification keeps at one per check pass (its tests read this count)
DECODES: Counter[str] = Counter()


def _decode_started(path: Path) -> None:
    DECODES[str(Path(path).resolve())] += 1


class VideoSource:
    """A lazily decoded video. Use :func:`open_video` to make one."""

    def __init__(self, info: VideoInfo) -> None:
        self.info = info

    def frames(self) -> Iterator[np.ndarray]:
        """Yield every frame, in order, as an RGB ``uint8`` array; each call starts from frame 0."""
        raise NotImplementedError  # pragma: no cover - abstract

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.frames()


# --------------------------------------------------------------------------------------------------
# plain container files


class ContainerVideo(VideoSource):
    """A plain video file (MP4, MKV, AVI, ...) decoded with PyAV."""

    def frames(self) -> Iterator[np.ndarray]:
        import av

        _decode_started(self.info.path)
        frames = _decode_with_pyav(lambda: av.open(str(self.info.path)), self.info, declared=None)
        orientation = self.info.orientation
        if not orientation.turned:
            yield from frames
            return
        # turned before anything else sees them: a face lying on its side is one the detectors miss
        for frame in frames:
            yield orientation.upright(frame)


def read_container_info(path: Path) -> VideoInfo:
    """Read a plain video file's stream parameters and container metadata without decoding."""
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(f"not a DICOM file and not a readable video file ({exc})", path) from exc
    with container:
        if not container.streams.video:
            raise InputError("the file holds no video stream", path)
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or Fraction(0)
        fps = float(rate)
        frames = stream.frames
        if not frames:
            # MKV/WebM and raw streams carry no frame count: count packets (demux only, no decode)
            try:
                frames = sum(1 for packet in container.demux(stream) if packet.size)
            except av.error.FFmpegError as exc:
                raise InputError(f"corrupt video container ({exc})", path) from exc
        if not frames:
            raise InputError("the video stream holds zero frames", path)
        stream_tags = {str(k): str(v) for k, v in stream.metadata.items()}
        metadata = {str(k): str(v) for k, v in container.metadata.items()}
        metadata.update({f"stream:{k}": v for k, v in stream_tags.items()})
        rows, columns, codec = stream.codec_context.height, stream.codec_context.width, stream.codec_context.name
        audio_streams = len(container.streams.audio)
    orientation = read_orientation(path, stream_tags)
    if orientation.rotation in (90, 270):
        rows, columns = columns, rows
    return VideoInfo(
        path=path,
        kind="container",
        frames=int(frames),
        fps=fps,
        rows=rows,
        columns=columns,
        codec=codec,
        container_metadata=metadata,
        orientation=orientation,
        audio_streams=audio_streams,
    )


def read_orientation(path: Path, stream_metadata: dict[str, str]) -> Orientation:
    """The display rotation of a plain video file's first video stream.

    FFmpeg hands the display matrix to the decoder, so the first frame is decoded to read it; a file
    whose first frame does not decode is left to the full decode to report. Without a matrix, the
    ``rotate`` tag older muxers wrote (clockwise degrees) is used.

    Raises
    ------
    InputError
        When the container asks for a turn that is not a quarter turn (the picture cannot be made
        upright without resampling it).
    """
    import av

    matrix, counter_clockwise = None, 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            # one thread, as in _decode_with_pyav: closing a threaded decoder after one frame can hang
            stream.thread_type = "NONE"
            stream.codec_context.thread_count = 1
            for frame in container.decode(stream):
                # looked up by type: iterating the side data gives the entries in PyAV 18.1.0 and
                # their types from 18.1.1 on
                side = frame.side_data.get(av.sidedata.sidedata.Type.DISPLAYMATRIX)
                if side is not None:
                    matrix, counter_clockwise = np.frombuffer(bytes(side), dtype="<i4"), frame.rotation
                break
    except av.error.FFmpegError:
        return Orientation()
    if matrix is not None:
        # a, b, c, d are 16.16 fixed point
        key = tuple(int(round(v / 65536)) for v in matrix[[0, 1, 3, 4]])
        if key not in _DISPLAY_MATRICES or not np.allclose(matrix[[0, 1, 3, 4]] / 65536, key, atol=1e-3):
            raise InputError(
                f"the display matrix turns the picture {counter_clockwise} degrees counter-clockwise; "
                "only quarter turns can be made upright",
                path,
            )
        rotation, mirrored = _DISPLAY_MATRICES[key]
        return Orientation(rotation, mirrored, "display matrix") if rotation or mirrored else Orientation()
    tag = next((v for k, v in stream_metadata.items() if k.lower() == "rotate"), None)
    if tag is None:
        return Orientation()
    try:
        degrees = int(float(tag)) % 360
    except ValueError:
        raise InputError(f"the stream's rotate tag {tag!r} is not a number of degrees", path) from None
    if degrees % 90:
        raise InputError(f"the stream's rotate tag asks for {degrees} degrees; only quarter turns can be made upright", path)
    return Orientation(degrees, False, "rotate tag") if degrees else Orientation()


def _decode_with_pyav(open_container, info: VideoInfo, declared: int | None) -> Iterator[np.ndarray]:
    """Decode the first video stream of the container ``open_container()`` returns, frame by frame.

    FFmpeg's decoders conceal damage rather than fail, so its error-level log is captured: an error
    logged while decoding, a decoder exception, a stream that yields nothing, or fewer frames than
    the header ``declared`` all become an :class:`InputError` naming where it happened.
    """
    import av
    import av.logging

    count = 0
    previous = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    # PyAV holds a repeated message back and delivers it with the next different one, into whatever
    # capture is open then: another file's error (a cut MP4's "moov atom not found") was reported as
    # this stream's
    av.logging.set_skip_repeated(False)
    try:
        with av.logging.Capture(local=False) as logs, open_container() as container:
            stream = container.streams.video[0]
            # One decoding thread: with FFmpeg's frame/slice threads, closing the decoder early (a
            # consumer that stops after a few frames) while the global log capture holds its lock can
            # deadlock (PyAV #1849/#1861, seen here with torch loaded). Decoding is not the bottleneck:
            # 640x480 H.264 decodes at 250+ frames/s on one core.
            stream.thread_type = "NONE"
            stream.codec_context.thread_count = 1
            for frame in container.decode(stream):
                if logs:
                    raise InputError(
                        f"corrupt video bitstream near frame {count + 1}: {_log_text(logs)}", info.path
                    )
                count += 1
                # PyAV 18.1.1 hands back a view of the decoder's padded rows; dlib (and whatever
                # copies a frame by its buffer) needs the rows packed
                yield np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
            if logs:
                raise InputError(f"corrupt video bitstream after frame {count}: {_log_text(logs)}", info.path)
    except av.error.FFmpegError as exc:
        raise InputError(f"corrupt video bitstream: decoding failed after {count} frames ({exc})", info.path) from exc
    finally:
        av.logging.set_level(previous)
    if count == 0:
        raise InputError("corrupt or empty video bitstream: no frame could be decoded", info.path)
    if declared is not None and count < declared:
        raise InputError(
            f"truncated or corrupt video bitstream: {count} frames decoded but Number of Frames is {declared}",
            info.path,
        )


def _log_text(logs: list[tuple[int, str, str]]) -> str:
    """The first FFmpeg error message, e.g. ``h264: error while decoding MB 22 16``."""
    _, name, message = logs[0]
    return f"{name}: {message.strip()}"


# --------------------------------------------------------------------------------------------------
# DICOM


def is_dicom_file(path: Path) -> bool:
    """Whether ``path`` starts with a DICOM Part 10 preamble (``DICM`` at byte 128)."""
    with open(path, "rb") as handle:
        handle.seek(128)
        return handle.read(4) == b"DICM"


def read_dicom_header(path: str | Path, *, whole: bool = False) -> Dataset:
    """Read a DICOM file's header (file meta included) without its pixel data (``whole``: with
    it, so that a caller that carries the pixels over needs no second read).

    Raises
    ------
    InputError
        When the file is missing, not DICOM, or its header cannot be parsed (e.g. truncated).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", path)
    with open(path, "rb") as handle:
        return _read_header(handle, path, whole=whole)


def _read_header(handle, path: Path, *, whole: bool = False) -> Dataset:
    try:
        ds = read_checked(handle, path, stop_before_pixels=not whole)
    except InputError:
        raise
    except InvalidDicomError as exc:
        raise InputError(f"not a DICOM file ({exc})", path) from exc
    except Exception as exc:  # pydicom raises many types on a cut or garbled header
        raise InputError(f"the DICOM header cannot be read, the file is truncated or corrupt ({exc})", path) from exc
    if "TransferSyntaxUID" not in ds.file_meta:
        raise InputError("the DICOM file meta has no Transfer Syntax UID (0002,0010)", path)
    return ds


def _fps_from_header(ds: Dataset) -> float:
    """Frame rate from Frame Time, Cine Rate or Recommended Display Frame Rate, in that order."""
    frame_time = ds.get("FrameTime")
    if frame_time not in (None, "") and float(frame_time) > 0:
        # Frame Time is a rounded decimal: snap 33.3333 ms back to 30 and 33.3667 ms to 30000/1001
        return float(Fraction(1000.0 / float(frame_time)).limit_denominator(1001))
    for keyword in ("CineRate", "RecommendedDisplayFrameRate"):
        value = ds.get(keyword)
        if value not in (None, "") and float(value) > 0:
            return float(value)
    return 0.0


def _int(ds: Dataset, keyword: str, default: int | None, path: Path) -> int:
    value = ds.get(keyword)
    if value in (None, ""):
        if default is None:
            raise InputError(f"the image has no {keyword}", path)
        return default
    return int(value)


class DicomVideo(VideoSource):
    """Base of the DICOM routes: holds the header and where the pixel data lies."""

    def __init__(self, info: VideoInfo, header: Dataset, location: PixelDataLocation, syntax: SyntaxInfo) -> None:
        super().__init__(info)
        self.header = header
        self.location = location
        self.syntax = syntax


class MpegDicomVideo(DicomVideo):
    """MPEG-2, H.264 or HEVC pixel data: all fragments joined into one stream, decoded by PyAV."""

    def stream_format(self) -> str:
        """The PyAV demuxer for the joined fragments, sniffed from their first bytes."""
        with FragmentStream(self.info.path, self.location.fragments) as view:
            head = view.read_at(0, 1024)
        return sniff_stream_format(head, self.syntax.raw_format or "h264")

    def frames(self) -> Iterator[np.ndarray]:
        import av

        _decode_started(self.info.path)
        fmt = self.stream_format()
        view = FragmentStream(self.info.path, self.location.fragments)
        try:
            yield from _decode_with_pyav(lambda: av.open(view, format=fmt), self.info, declared=self.info.frames)
        finally:
            view.close()


def sniff_stream_format(head: bytes, default: str) -> str:
    """Guess the PyAV demuxer of an encapsulated video stream from its first bytes.

    MP4 (``ftyp`` box), MPEG-2 program (pack start code) and transport (0x47 sync) streams are
    recognised; anything else is taken as the elementary stream the transfer syntax names.
    """
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:4] == b"\x00\x00\x01\xba":
        return "mpeg"
    if len(head) > 376 and head[0] == 0x47 and head[188] == 0x47 and head[376] == 0x47:
        return "mpegts"
    return default


class JpegDicomVideo(DicomVideo):
    """JPEG Baseline multi-frame: each frame is one JPEG (possibly split over several fragments)."""

    def frame_fragments(self) -> list[list[Fragment]]:
        """Group the fragments by frame (one per frame, or by the Basic Offset Table)."""
        frags = self.location.fragments
        n = self.info.frames
        if len(frags) == n:
            return [[f] for f in frags]
        offsets = self.location.offsets
        if len(offsets) == n and n > 0:
            base = frags[0].offset - 8
            starts = [base + o for o in offsets] + [frags[-1].offset + frags[-1].length + 8]
            return [[f for f in frags if starts[i] <= f.offset - 8 < starts[i + 1]] for i in range(n)]
        raise InputError(
            f"cannot tell the frames apart: {len(frags)} JPEG fragments for {n} frames and no usable "
            "Basic Offset Table",
            self.info.path,
        )

    def frames(self) -> Iterator[np.ndarray]:
        import cv2

        _decode_started(self.info.path)
        groups = self.frame_fragments()
        rgb_stored = self.info.photometric_interpretation == "RGB"
        with open(self.info.path, "rb") as handle:
            for index, group in enumerate(groups):
                data = b"".join(_read(handle, f) for f in group)
                if rgb_stored:
                    data = mark_jpeg_untransformed(data)
                image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
                if image is None:
                    raise InputError(f"corrupt JPEG data in frame {index + 1} of {len(groups)}", self.info.path)
                if image.ndim == 2:
                    yield np.repeat(image[:, :, None], 3, axis=2)
                else:
                    yield cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


#: an Adobe APP14 segment with colour transform 0: "components are stored as RGB"
_ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"


def mark_jpeg_untransformed(data: bytes) -> bytes:
    """Tell libjpeg that a JPEG holds RGB components, unless it already says how it is coded.

    DICOM's Photometric Interpretation RGB means no colour transform was applied, but libjpeg
    assumes YCbCr for three-component data without an Adobe (APP14) marker, which would garble the
    colours; inserting an APP14 segment with transform 0 right after SOI fixes that losslessly.
    """
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xEE:  # APP14 already says what the transform is
            return data
        if marker == 0xDA:  # start of scan: header ended without APP14
            break
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return data[:2] + _ADOBE_RGB + data[2:]


def _read(handle, fragment: Fragment) -> bytes:
    handle.seek(fragment.offset)
    return handle.read(fragment.length)


class NativeDicomVideo(DicomVideo):
    """Uncompressed pixel data, read frame by frame through a read-only memory map."""

    def frames(self) -> Iterator[np.ndarray]:
        _decode_started(self.info.path)
        ds = self.header
        rows, cols, n = self.info.rows, self.info.columns, self.info.frames
        spp = _int(ds, "SamplesPerPixel", 1, self.info.path)
        bits = _int(ds, "BitsAllocated", 8, self.info.path)
        stored = _int(ds, "BitsStored", bits, self.info.path)
        planar = _int(ds, "PlanarConfiguration", 0, self.info.path)
        signed = _int(ds, "PixelRepresentation", 0, self.info.path) == 1
        dtype = np.dtype("<u1" if bits == 8 else ("<i2" if signed else "<u2"))
        frame_len = rows * cols * spp
        data = np.memmap(self.info.path, dtype=dtype, mode="r", offset=self.location.value_offset, shape=(n * frame_len,))
        photometric = self.info.photometric_interpretation
        for index in range(n):
            flat = np.asarray(data[index * frame_len : (index + 1) * frame_len])
            if spp == 1:
                frame = flat.reshape(rows, cols)
            elif planar == 1:
                frame = flat.reshape(spp, rows, cols).transpose(1, 2, 0)
            else:
                frame = flat.reshape(rows, cols, spp)
            if bits == 16:
                # video stages work on 8-bit frames: keep the top 8 of the stored bits
                frame = (np.clip(frame, 0, None) >> max(stored - 8, 0)).astype(np.uint8)
            if spp == 1:
                frame = np.repeat(frame[:, :, None], 3, axis=2)
                if photometric == "MONOCHROME1":
                    frame = 255 - frame
            elif photometric == "YBR_FULL":
                from pydicom.pixels.processing import convert_color_space

                frame = convert_color_space(np.ascontiguousarray(frame), "YBR_FULL", "RGB")
            yield np.ascontiguousarray(frame)
        del data


_NATIVE_PHOTOMETRICS = {"MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL"}


def read_dicom_video(path: Path) -> DicomVideo:
    """Open a DICOM file's pixel data for lazy decoding; see :func:`open_video`."""
    with open(path, "rb") as handle:
        header = _read_header(handle, path)
        ts = str(header.file_meta.TransferSyntaxUID)
        sop_class = str(header.get("SOPClassUID", header.file_meta.get("MediaStorageSOPClassUID", "")))
        if sop_class in NON_IMAGE_HINTS:
            raise InputError(f"the file is {NON_IMAGE_HINTS[sop_class]}, not an image", path)
        syntax = syntax_info(ts)
        if syntax is None:
            raise InputError(unsupported_reason(ts), path)
        try:
            location = locate_pixel_data(handle, path, syntax.explicit_vr)
        except InputError as exc:
            if "not an image" in exc.message and sop_class:
                name = pydicom.uid.UID(sop_class).name
                raise InputError(f"the file is a {name} object with no Pixel Data: not an image", path) from exc
            raise
    rows = _int(header, "Rows", None, path)
    cols = _int(header, "Columns", None, path)
    frames = _int(header, "NumberOfFrames", 1, path)
    if frames <= 0:
        raise InputError("the image holds zero frames (Number of Frames is 0)", path)
    photometric = str(header.get("PhotometricInterpretation", "RGB"))
    info = VideoInfo(
        path=path,
        kind="dicom",
        frames=frames,
        fps=_fps_from_header(header),
        rows=rows,
        columns=cols,
        photometric_interpretation=photometric,
        sop_class_uid=sop_class or None,
        transfer_syntax_uid=ts,
        codec=syntax.raw_format or syntax.route,
    )
    if syntax.route == "mpeg":
        if not location.encapsulated or not location.fragments:
            raise InputError("MPEG-family Pixel Data must be encapsulated with at least one fragment", path)
        video: DicomVideo = MpegDicomVideo(info, header, location, syntax)
        if not info.fps:
            video = MpegDicomVideo(_with_stream_fps(info, video), header, location, syntax)
        if video.stream_format() in _MULTIPLEXED_FORMATS:
            video = MpegDicomVideo(_with_audio_count(video.info, video), header, location, syntax)
        return video
    if syntax.route == "jpeg":
        if not location.encapsulated or not location.fragments:
            raise InputError("JPEG Pixel Data must be encapsulated with at least one fragment", path)
        video = JpegDicomVideo(info, header, location, syntax)
        video.frame_fragments()  # fail now, not mid-stream, when frames cannot be told apart
        return video
    _check_native(header, info, location, path)
    return NativeDicomVideo(info, header, location, syntax)


def _check_native(header: Dataset, info: VideoInfo, location: PixelDataLocation, path: Path) -> None:
    bits = _int(header, "BitsAllocated", 8, path)
    spp = _int(header, "SamplesPerPixel", 1, path)
    if bits not in (8, 16):
        raise InputError(f"native pixel data with {bits} bits allocated is not supported (8 or 16)", path)
    if spp not in (1, 3):
        raise InputError(f"native pixel data with {spp} samples per pixel is not supported (1 or 3)", path)
    if info.photometric_interpretation not in _NATIVE_PHOTOMETRICS:
        raise InputError(
            f"native photometric interpretation {info.photometric_interpretation} is not supported "
            f"({', '.join(sorted(_NATIVE_PHOTOMETRICS))})",
            path,
        )
    needed = info.frames * info.rows * info.columns * spp * bits // 8
    if location.value_length < needed:
        raise InputError(
            f"the Pixel Data holds {location.value_length} bytes but {info.frames} frames of "
            f"{info.rows}x{info.columns}x{spp} need {needed}: truncated",
            path,
        )


def _with_stream_fps(info: VideoInfo, video: MpegDicomVideo) -> VideoInfo:
    """Fill in the frame rate from the bitstream when the header gives none."""
    import dataclasses

    import av

    fmt = video.stream_format()
    with FragmentStream(info.path, video.location.fragments) as view:
        try:
            with av.open(view, format=fmt) as container:
                rate = container.streams.video[0].average_rate or container.streams.video[0].guessed_rate
        except av.error.FFmpegError as exc:
            raise InputError(f"corrupt video bitstream ({exc})", info.path) from exc
    return dataclasses.replace(info, fps=float(rate or 0))


#: demuxers of pixel data that is a whole container (MP4, MPEG-2 program or transport stream),
#: which can carry sound beside the pictures; elementary streams cannot
_MULTIPLEXED_FORMATS = frozenset({"mp4", "mpeg", "mpegts"})


def _with_audio_count(info: VideoInfo, video: MpegDicomVideo) -> VideoInfo:
    """Count the audio streams multiplexed into the pixel data."""
    import dataclasses

    import av

    with FragmentStream(info.path, video.location.fragments) as view:
        try:
            with av.open(view, format=video.stream_format()) as container:
                count = len(container.streams.audio)
        except av.error.FFmpegError as exc:
            raise InputError(f"corrupt video bitstream ({exc})", info.path) from exc
    return dataclasses.replace(info, audio_streams=count)


def open_video(path: str | Path) -> VideoSource:
    """Open a DICOM video object or a plain video file for lazy decoding.

    Parameters
    ----------
    path:
        A DICOM Part 10 file (video IODs, multi-frame native or JPEG Baseline images) or a plain
        video file (MP4, MKV, AVI, ...).

    Returns
    -------
    VideoSource
        ``info`` describes the video; ``frames()`` yields RGB ``uint8`` frames one at a time.

    Raises
    ------
    InputError
        When the file is missing, unreadable, truncated, holds no image or zero frames, or uses a
        transfer syntax that cannot be decoded. A decode failure later, while iterating, is an
        :class:`InputError` too.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", path)
    if os.path.getsize(path) == 0:
        raise InputError("the file is empty", path)
    if is_dicom_file(path):
        return read_dicom_video(path)
    return ContainerVideo(read_container_info(path))

"""Write DICOM video objects from a stream of RGB frames.

The caller hands over an (already de-identified) header; the writer only adds or overwrites what
the pixels decide (Image Pixel, Multi-frame, Cine, lossy-compression attributes, SOP Class, the
file meta with an empty preamble) and fills type 2 containers a video IOD requires when absent.

Frames are consumed one at a time: the encoded payload goes to a temporary file beside the output,
then the header is written and the payload appended as Pixel Data, so memory stays bounded however
long the video is. The output appears atomically (written under a temporary name, then renamed).
"""

from __future__ import annotations

import copy
import io
import math
import os
import struct
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, generate_uid

from clinrelease import __version__
from clinrelease.crypto.digest import sha256_file
from clinrelease.dicom.bitstream import strip_user_data
from clinrelease.dicom.syntaxes import (
    VIDEO_MODALITY,
    VIDEO_PHOTOGRAPHIC,
    VIDEO_SOP_CLASSES,
    WRITE_SYNTAXES,
    WriteSyntax,
)
from clinrelease.errors import ConfigError, InputError

#: default quality per syntax: x264/x265 CRF, MPEG-2 qscale, JPEG quality (ignored for native)
DEFAULT_QUALITY = {"h264": 18, "hevc": 20, "mpeg2": 3, "mpeg2-hl": 3, "jpeg": 92, "native": 0}
#: frame rates MPEG-2 can signal (ISO/IEC 13818-2 frame_rate_code)
_MPEG2_RATES = [Fraction(24000, 1001), Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(30),
                Fraction(50), Fraction(60000, 1001), Fraction(60)]  # fmt: skip
_FRAME_TIME_TAG = 0x00181063
_PIXEL_DATA_TAG = 0x7FE00010


@dataclass(frozen=True)
class WrittenVideo:
    """What :func:`write_dicom_video` wrote."""

    path: Path
    frames: int
    sha256: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    rows: int
    columns: int
    fps: float
    size_bytes: int


def write_dicom_video(
    path: str | Path,
    header: Dataset,
    frames: Iterable[np.ndarray],
    fps: float,
    syntax: str = "h264",
    quality: int | None = None,
    *,
    sop_class_uid: str | None = None,
    preset: str = "veryfast",
    threads: int = 1,
) -> WrittenVideo:
    """Encode ``frames`` and write them with ``header`` as one DICOM file.

    Parameters
    ----------
    path:
        Output file; written atomically (temporary name in the same folder, then renamed).
    header:
        The data set to carry (not modified; a copy is written). Pixel, multi-frame and cine
        attributes, SOP Class and file meta are set here; everything else is kept as given.
    frames:
        RGB ``uint8`` arrays of one shape ``(rows, columns, 3)``, consumed one at a time. Grey
        ``(rows, columns)`` frames are accepted for ``native`` and ``jpeg`` (MONOCHROME2).
    fps:
        Frames per second; sets Frame Time, Cine Rate and Recommended Display Frame Rate.
    syntax:
        ``"h264"`` (H.264 High Profile level 4.1, .102, default), ``"hevc"`` (HEVC Main 5.1, .107),
        ``"mpeg2"`` (MP@ML .100), ``"mpeg2-hl"`` (MP@HL .101), ``"jpeg"`` (JPEG Baseline, one
        fragment per frame) or ``"native"`` (explicit VR little endian).
    quality:
        Codec-specific: CRF for h264/hevc (lower is better), qscale for MPEG-2, JPEG quality 1-100.
        ``None`` takes :data:`DEFAULT_QUALITY`.
    sop_class_uid:
        SOP Class to write. ``None`` keeps the header's when it is a video IOD, else Video
        Photographic Image Storage (or Multi-frame Grayscale Byte SC for grey frames).
    preset, threads:
        x264/x265 speed preset and encoder threads. One thread (the default) makes the bytes a pure
        function of the frames: with two slice threads the same frames gave different bytes in 2 of
        40 loaded re-runs, and 0 (automatic) also follows the machine's core count. Parallelism
        comes from encoding several items at once (``--workers``) instead.

    Returns
    -------
    WrittenVideo

    Raises
    ------
    ConfigError
        When the syntax is unknown, its encoder is missing from this PyAV build, or the frame size
        or rate is outside what the transfer syntax allows.
    InputError
        When there are no frames or a frame has a different shape or type than the first.
    """
    path = Path(path)
    if syntax not in WRITE_SYNTAXES:
        raise ConfigError(f"unknown syntax {syntax!r}; choose one of {', '.join(WRITE_SYNTAXES)}", path)
    spec = WRITE_SYNTAXES[syntax]
    q = DEFAULT_QUALITY[syntax] if quality is None else int(quality)
    iterator = iter(frames)
    first = next(iterator, None)
    if first is None:
        raise InputError("no frames to write", path)
    grey = first.ndim == 2
    if grey and syntax not in ("native", "jpeg"):
        raise InputError(f"grey frames can be written as native or jpeg, not {syntax}", path)
    rows, cols = first.shape[:2]
    if fps <= 0 or not math.isfinite(fps):
        raise ConfigError(f"frame rate must be positive, got {fps}", path)
    rate = Fraction(fps).limit_denominator(1001)
    _check_limits(spec, rows, cols, rate, path)
    checked = _checked_frames(first, iterator, path)

    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as tmp:
        payload = Path(tmp) / "pixels"
        if spec.encoder is not None:
            count, item_lengths = _encode_pyav(spec, checked, payload, rows, cols, rate, q, preset, threads, path)
        elif syntax == "jpeg":
            count, item_lengths = _encode_jpeg(checked, payload, q)
        else:
            count, item_lengths = _write_native(checked, payload)
        ds = _prepared_header(header, spec, sop_class_uid, rows, cols, grey, count, rate, payload, q)
        staged = Path(tmp) / "out.dcm"
        _assemble(staged, ds, payload, item_lengths, encapsulated=spec.name != "native")
        digest = sha256_file(staged)
        os.replace(staged, path)
    return WrittenVideo(
        path=path,
        frames=count,
        sha256=digest,
        sop_instance_uid=str(ds.SOPInstanceUID),
        sop_class_uid=str(ds.SOPClassUID),
        transfer_syntax_uid=str(spec.uid),
        rows=rows,
        columns=cols,
        fps=float(rate),
        size_bytes=path.stat().st_size,
    )


def _checked_frames(first: np.ndarray, rest: Iterator[np.ndarray], path: Path) -> Iterator[np.ndarray]:
    """Yield frames, refusing one whose shape or dtype differs from the first."""
    if first.dtype != np.uint8 or first.ndim not in (2, 3) or (first.ndim == 3 and first.shape[2] != 3):
        raise InputError(f"frames must be uint8 (rows, columns, 3) RGB arrays, got {first.dtype} {first.shape}", path)
    yield first
    for index, frame in enumerate(rest, start=2):
        if frame.shape != first.shape or frame.dtype != first.dtype:
            raise InputError(f"frame {index} is {frame.dtype} {frame.shape}, the first was {first.dtype} {first.shape}", path)
        yield frame


def _check_limits(spec: WriteSyntax, rows: int, cols: int, rate: Fraction, path: Path) -> None:
    """Refuse sizes and rates the transfer syntax's profile/level cannot carry (PS3.5 8.2.5-8.2.8)."""
    if spec.encoder is None:
        return
    if rows % 2 or cols % 2:
        raise ConfigError(f"{spec.name} needs an even frame size (4:2:0 chroma), got {cols}x{rows}; use jpeg or native", path)
    mbs = math.ceil(cols / 16) * math.ceil(rows / 16)
    problem = None
    if spec.name == "h264" and (mbs > 8192 or mbs * rate > 245760 or max(rows, cols) > 1920):
        problem = "H.264 High Profile level 4.1 allows up to 1920x1080 at 30 frames/s"
    elif spec.name == "hevc" and (rows * cols > 8_912_896 or rows * cols * rate > 534_773_760):
        problem = "HEVC Main Profile level 5.1 allows up to 4096x2176 at 60 frames/s"
    elif spec.name.startswith("mpeg2"):
        if rate not in _MPEG2_RATES:
            problem = "MPEG-2 can only signal 23.976, 24, 25, 29.97, 30, 50, 59.94 or 60 frames/s"
        elif spec.name == "mpeg2" and (cols > 720 or rows > 576 or rate > 30 or (rate > 25 and rows > 480)):
            problem = "MPEG-2 Main Profile at Main Level allows up to 720x480 at 30 or 720x576 at 25 frames/s; try mpeg2-hl"
        elif spec.name == "mpeg2-hl" and (cols > 1920 or rows > 1152 or rate > 60):
            problem = "MPEG-2 Main Profile at High Level allows up to 1920x1152 at 60 frames/s"
    if problem:
        raise ConfigError(f"cannot write {cols}x{rows} at {float(rate):.3f} frames/s as {spec.name}: {problem}", path)


def _encoder_options(spec: WriteSyntax, q: int, preset: str) -> dict[str, str]:
    # Tag BT.601 limited range: what YBR_PARTIAL_420 means, and what the decoder assumes anyway.
    # mbtree=0: x264's macroblock-tree pass reads an uninitialised stack value (valgrind: "use of
    # uninitialised value" under x264_encoder_encode, none with mbtree=0), so the same frames gave
    # different bytes depending on what the process had run before. A release must be reproducible.
    if spec.name == "h264":
        return {
            "preset": preset,
            "crf": str(q),
            "profile": "high",
            "level": "4.1",
            "x264-params": "mbtree=0:vbv-maxrate=50000:vbv-bufsize=62500:colormatrix=smpte170m:range=tv",
        }
    if spec.name == "hevc":
        return {
            "preset": preset,
            "crf": str(q),
            "profile": "main",
            "x265-params": "info=0:log-level=error:level-idc=51:colormatrix=smpte170m:range=limited",
        }
    # MPEG-2: fixed quantiser; bitexact keeps the encoder's name out of the stream
    return {"flags": "+qscale+bitexact", "global_quality": str(q * 118), "g": "15", "bf": "2"}


def _encode_pyav(
    spec: WriteSyntax,
    frames: Iterator[np.ndarray],
    payload: Path,
    rows: int,
    cols: int,
    rate: Fraction,
    q: int,
    preset: str,
    threads: int,
    path: Path,
) -> tuple[int, list[int]]:
    """Encode with a bare PyAV codec context (no muxer): packets are raw Annex-B/ES bytes."""
    import av

    if spec.encoder not in av.codecs_available:
        raise ConfigError(f"this PyAV build has no {spec.encoder} encoder, so {spec.name} cannot be written", path)
    ctx = av.CodecContext.create(spec.encoder, "w")
    ctx.width, ctx.height = cols, rows
    ctx.pix_fmt = "yuv420p"
    ctx.framerate = rate
    ctx.time_base = 1 / rate
    ctx.thread_count = threads
    ctx.options = _encoder_options(spec, q, preset)
    codec = "mpeg2" if spec.name.startswith("mpeg2") else spec.name
    count = 0
    size = 0
    with open(payload, "wb") as out:

        def drain(packets) -> None:
            nonlocal size
            for packet in packets:
                data = strip_user_data(bytes(packet), codec)
                out.write(data)
                size += len(data)

        try:
            for frame in frames:
                vf = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p")
                vf.pts = count
                count += 1
                drain(ctx.encode(vf))
            drain(ctx.encode(None))
        except av.error.FFmpegError as exc:
            raise ConfigError(f"the {spec.encoder} encoder refused the stream: {exc}", path) from exc
        if size % 2:  # DICOM values have even length; a trailing zero byte is valid stream padding
            out.write(b"\x00")
            size += 1
    return count, [size]


def _encode_jpeg(frames: Iterator[np.ndarray], payload: Path, q: int) -> tuple[int, list[int]]:
    """One JPEG Baseline (4:2:2 YCbCr, or grey) per frame, one fragment per frame."""
    import cv2

    params = [cv2.IMWRITE_JPEG_QUALITY, q, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422]
    lengths = []
    with open(payload, "wb") as out:
        for frame in frames:
            image = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
            ok, buf = cv2.imencode(".jpg", image, params)
            if not ok:  # pragma: no cover - cv2 only fails on invalid arrays, checked above
                raise InputError("JPEG encoding failed")
            data = buf.tobytes()
            if len(data) % 2:
                data += b"\x00"  # padding after EOI, allowed by PS3.5 A.4
            out.write(data)
            lengths.append(len(data))
    return len(lengths), lengths


def _write_native(frames: Iterator[np.ndarray], payload: Path) -> tuple[int, list[int]]:
    count = 0
    size = 0
    with open(payload, "wb") as out:
        for frame in frames:
            data = np.ascontiguousarray(frame).tobytes()
            out.write(data)
            size += len(data)
            count += 1
        if size % 2:
            out.write(b"\x00")
            size += 1
    return count, [size]


def _prepared_header(
    header: Dataset,
    spec: WriteSyntax,
    sop_class_uid: str | None,
    rows: int,
    cols: int,
    grey: bool,
    count: int,
    rate: Fraction,
    payload: Path,
    q: int,
) -> Dataset:
    """A copy of ``header`` with the pixel-dependent attributes and file meta set."""
    from clinrelease.dicom.syntaxes import MULTIFRAME_GRAYSCALE_BYTE_SC

    ds = copy.deepcopy(header)
    for elem in list(ds):
        if elem.tag >= _PIXEL_DATA_TAG or elem.tag.group == 0x0002:
            del ds[elem.tag]  # pixel data and what follows it (trailing padding, signatures)
    for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths", "FrameTimeVector"):
        if keyword in ds:
            delattr(ds, keyword)
    if sop_class_uid is None:
        current = str(ds.get("SOPClassUID", ""))
        sop_class_uid = MULTIFRAME_GRAYSCALE_BYTE_SC if grey else (current if current in VIDEO_SOP_CLASSES else VIDEO_PHOTOGRAPHIC)
    ds.SOPClassUID = sop_class_uid
    if not ds.get("SOPInstanceUID"):
        ds.SOPInstanceUID = generate_uid()
    if sop_class_uid in VIDEO_MODALITY and not ds.get("Modality"):
        ds.Modality = VIDEO_MODALITY[sop_class_uid]
    _fill_type2(ds)

    ds.SamplesPerPixel = 1 if grey else 3
    ds.PhotometricInterpretation = "MONOCHROME2" if grey else spec.photometric
    if grey:
        if "PlanarConfiguration" in ds:
            del ds.PlanarConfiguration
        if sop_class_uid == MULTIFRAME_GRAYSCALE_BYTE_SC:
            # SC Equipment and the byte SC pseudo-module's fixed values (PS3.3 C.8.6.1, A.8.3)
            ds.ConversionType = ds.get("ConversionType") or "WSD"
            ds.PresentationLUTShape = "IDENTITY"
            ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    else:
        ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.NumberOfFrames = count
    ds.FrameIncrementPointer = _FRAME_TIME_TAG
    ds.FrameTime = _ds_value(1000.0 / float(rate))
    ds.CineRate = max(1, round(float(rate)))
    ds.RecommendedDisplayFrameRate = max(1, round(float(rate)))

    if spec.lossy_method is not None:
        raw = rows * cols * ds.SamplesPerPixel * count
        ratio = raw / max(payload.stat().st_size, 1)
        ratios = [str(v) for v in _as_list(ds.get("LossyImageCompressionRatio"))] if ds.get("LossyImageCompression") == "01" else []
        methods = [str(v) for v in _as_list(ds.get("LossyImageCompressionMethod"))] if ratios else []
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = ratios + [_ds_value(ratio)]
        ds.LossyImageCompressionMethod = methods + [spec.lossy_method]
    elif not ds.get("LossyImageCompression"):
        ds.LossyImageCompression = "00"

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = spec.uid
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"CLINREL_{__version__}"[:16]
    ds.file_meta = meta
    ds.preamble = b"\x00" * 128
    return ds


def _as_list(value) -> list:
    if value in (None, ""):
        return []
    return list(value) if isinstance(value, (list, pydicom.multival.MultiValue)) else [value]


def _ds_value(value: float) -> str:
    """A Decimal String of at most 16 characters, as precise as that allows."""
    for digits in range(15, 0, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    raise ValueError(value)  # pragma: no cover - every float fits in 16 characters at 1 digit


#: type 2 attributes of the video IODs' modules that must be present, empty if unknown
_TYPE2 = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex",  # Patient
    "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",  # General Study
    "SeriesNumber", "Manufacturer", "InstanceNumber", "PatientOrientation",  # Series, Equipment, Image
    "ContentDate", "ContentTime", "AcquisitionDateTime",
)  # fmt: skip


def _fill_type2(ds: Dataset) -> None:
    """Add the required containers a de-identified header may have lost (present, empty)."""
    for keyword in _TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, "" if keyword not in ("SeriesNumber", "InstanceNumber") else None)
    if "StudyInstanceUID" not in ds:
        ds.StudyInstanceUID = generate_uid()
    if "SeriesInstanceUID" not in ds:
        ds.SeriesInstanceUID = generate_uid()
    if "AcquisitionContextSequence" not in ds:
        ds.AcquisitionContextSequence = Sequence()
    if "ImageType" not in ds:
        ds.ImageType = ["ORIGINAL", "PRIMARY"]


def _assemble(out_path: Path, ds: Dataset, payload: Path, item_lengths: list[int], encapsulated: bool) -> None:
    """Write the header, then the Pixel Data element around the payload, copying it in chunks."""
    with open(out_path, "wb") as out:
        pydicom.dcmwrite(out, ds, enforce_file_format=True)
        if encapsulated:
            out.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF))
            # Basic Offset Table: empty for one fragment, else each frame's item offset
            offsets = [] if len(item_lengths) == 1 else list(np.cumsum([0] + [n + 8 for n in item_lengths[:-1]]))
            out.write(struct.pack("<HHI", 0xFFFE, 0xE000, 4 * len(offsets)))
            out.write(struct.pack(f"<{len(offsets)}I", *offsets))
            with open(payload, "rb") as src:
                for length in item_lengths:
                    out.write(struct.pack("<HHI", 0xFFFE, 0xE000, length))
                    _copy(src, out, length)
            out.write(struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
        else:
            (length,) = item_lengths
            out.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, length))
            with open(payload, "rb") as src:
                _copy(src, out, length)


def _copy(src: io.BufferedReader, dst: io.BufferedWriter, length: int, chunk: int = 1 << 20) -> None:
    remaining = length
    while remaining:
        data = src.read(min(chunk, remaining))
        if not data:  # pragma: no cover - payload shorter than counted is a bug
            raise RuntimeError("payload ended early")
        dst.write(data)
        remaining -= len(data)


def new_video_header(
    *,
    patient_name: str = "",
    patient_id: str = "",
    patient_birth_date: str = "",
    patient_sex: str = "",
    study_description: str = "",
    series_description: str = "",
    sop_class_uid: str = VIDEO_PHOTOGRAPHIC,
    anatomic_region: tuple[str, str, str] = ("38266002", "SCT", "Entire body"),
    when: datetime | None = None,
) -> Dataset:
    """A minimal header that makes a valid video IOD once :func:`write_dicom_video` adds the pixels.

    Parameters
    ----------
    patient_name, patient_id, patient_birth_date, patient_sex:
        Patient module values (empty strings are valid: type 2).
    study_description, series_description:
        Optional descriptions.
    sop_class_uid:
        One of the video SOP classes (Video Photographic by default).
    anatomic_region:
        ``(code value, coding scheme, meaning)`` of the Anatomic Region Sequence item.
    when:
        Study/series/content date and time (now by default).

    Returns
    -------
    pydicom.dataset.Dataset
    """
    when = when or datetime.now()
    date, time = when.strftime("%Y%m%d"), when.strftime("%H%M%S")
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = generate_uid()
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = patient_birth_date
    ds.PatientSex = patient_sex
    ds.StudyInstanceUID = generate_uid()
    ds.StudyDate, ds.StudyTime = date, time
    ds.ReferringPhysicianName = ""
    ds.StudyID = ""
    ds.AccessionNumber = ""
    if study_description:
        ds.StudyDescription = study_description
    ds.Modality = VIDEO_MODALITY.get(sop_class_uid, "XC")
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 1
    ds.SeriesDate, ds.SeriesTime = date, time
    if series_description:
        ds.SeriesDescription = series_description
    ds.Manufacturer = ""
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.ContentDate, ds.ContentTime = date, time
    ds.AcquisitionDateTime = when.strftime("%Y%m%d%H%M%S")
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.AcquisitionContextSequence = Sequence()
    region = Dataset()
    region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning = anatomic_region
    ds.AnatomicRegionSequence = Sequence([region])
    ds.BurnedInAnnotation = "NO"
    return ds

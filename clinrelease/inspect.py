"""Describe one input item and list every place it carries potential PHI, without changing it.

:func:`inspect_file` reads the header (never the pixel data, except the first bytes of an MPEG
stream to see whether it is an MP4 with its own metadata) and returns an :class:`InspectReport`:
video parameters plus :class:`PhiLocation` entries for

* header attributes that PS3.15 Annex E Table E.1-1 governs, at any sequence depth, with their
  Basic Profile action;
* private attributes (with their private creator);
* container metadata of plain video files, and of an MP4 stored as DICOM pixel data;
* audio streams beside the pictures (a voice identifies a patient);
* the Burned In Annotation and Recognizable Visual Features flags when they are YES or absent.

Values are never copied into the report, so printing it does not spread the PHI it points at.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import UID

from clinrelease.dicom.video import MpegDicomVideo, Orientation, VideoSource, is_technical_metadata, open_video



#: value representations that hold person names or free text
_FREE_TEXT_VRS = {"PN", "LT", "ST", "UT", "UC"}
#: the action reported for a name or free-text attribute that Table E.1-1 does not list
NOT_IN_TABLE = "review"


@dataclass(frozen=True)
class PhiLocation:
    """One place that may carry PHI.

    Attributes
    ----------
    where:
        ``"header"``, ``"private"``, ``"file meta"``, ``"container"``, ``"pixel data container"``
        or ``"pixels"``.
    tag:
        The attribute's tag path (``"(0040,0275)[0].(0008,0050)"``) or the metadata key.
    name:
        Attribute name (private ones prefixed with their creator) or metadata key.
    action:
        PS3.15 Basic Profile action code for header attributes, ``X`` for private attributes and
        container metadata (removed), :data:`NOT_IN_TABLE` for names and free text the table does
        not list, and for flags what the value means (``YES``/``absent``).
    vr:
        The attribute's value representation, when it is one.
    """

    where: str
    tag: str
    name: str
    action: str
    vr: str | None = None


@dataclass(frozen=True)
class InspectReport:
    """What :func:`inspect_file` found."""

    path: Path
    kind: str
    sop_class: str | None
    sop_class_name: str | None
    transfer_syntax: str | None
    transfer_syntax_name: str | None
    frames: int
    fps: float
    rows: int
    columns: int
    duration_s: float
    photometric_interpretation: str
    codec: str | None
    burned_in_annotation: str | None
    annex_e_edition: str
    #: non-identifying header facts (modality, manufacturer model, attribute counts)
    summary: dict[str, str | int] = field(default_factory=dict)
    phi: list[PhiLocation] = field(default_factory=list)
    #: a plain video's display rotation (``rows`` and ``columns`` are those of the upright picture)
    orientation: Orientation = field(default_factory=Orientation)

    def to_dict(self) -> dict:
        """A JSON-ready dict (the ``--json`` output of ``clinrelease inspect``)."""
        data = asdict(self)
        data["path"] = str(self.path)
        data["phi_counts"] = _counts(self.phi)
        return data


def _counts(phi: list[PhiLocation]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for loc in phi:
        counts[loc.where] = counts.get(loc.where, 0) + 1
    return counts


def inspect_file(path: str | Path) -> InspectReport:
    """Inspect a DICOM video or plain video file.

    Parameters
    ----------
    path:
        The file to describe; it is only read.

    Returns
    -------
    InspectReport

    Raises
    ------
    InputError
        When the file is missing or is not a readable video (same checks as
        :func:`clinrelease.dicom.video.open_video`).
    """
    from clinrelease.dicom.annex_e import load_table

    video = open_video(path)
    info = video.info
    table = load_table()
    phi: list[PhiLocation] = []
    summary: dict[str, str | int] = {}
    burned: str | None = None
    header: Dataset | None = getattr(video, "header", None)
    if header is not None:
        phi.extend(header_phi(header, table))
        burned = str(header.get("BurnedInAnnotation", "")) or None
        phi.extend(_flag_phi(header))
        summary = _summary(header)
        phi.extend(_embedded_container_phi(video))
    else:
        phi.extend(container_phi(info.container_metadata, "container"))
    where = "container" if header is None else "pixel data container"
    # a voice identifies a patient; the release never writes sound (action X)
    phi.extend(PhiLocation(where, f"audio:{n}", "audio stream", "X") for n in range(info.audio_streams))
    ts = info.transfer_syntax_uid
    return InspectReport(
        path=info.path,
        kind=info.kind,
        sop_class=info.sop_class_uid,
        sop_class_name=UID(info.sop_class_uid).name if info.sop_class_uid else None,
        transfer_syntax=ts,
        transfer_syntax_name=UID(ts).name if ts else None,
        frames=info.frames,
        fps=info.fps,
        rows=info.rows,
        columns=info.columns,
        duration_s=round(info.duration_s, 3),
        photometric_interpretation=info.photometric_interpretation,
        codec=info.codec,
        burned_in_annotation=burned,
        annex_e_edition=table.edition,
        summary=summary,
        phi=phi,
        orientation=info.orientation,
    )


def header_phi(ds: Dataset, table, prefix: str = "") -> list[PhiLocation]:
    """Every Annex E-governed or private attribute with a value, at any sequence depth.

    Parameters
    ----------
    ds:
        The data set (file meta, if attached, is walked too).
    table:
        An :class:`clinrelease.dicom.annex_e.AnnexETable`.
    prefix:
        Tag path of the enclosing sequence item (used when recursing).
    """
    found: list[PhiLocation] = []
    if not prefix and getattr(ds, "file_meta", None) is not None:
        for elem in ds.file_meta:
            row = table.lookup(int(elem.tag))
            if row is not None and not elem.is_empty:
                found.append(PhiLocation("file meta", _tag(elem.tag), elem.name, row.basic, elem.VR))
    for elem in ds:
        tag = int(elem.tag)
        path = f"{prefix}{_tag(elem.tag)}"
        if elem.tag.is_private:
            if elem.tag.is_private_creator:
                continue  # the creator's name identifies a vendor, not the patient
            row = table.lookup(tag)
            creator = elem.private_creator or "unknown creator"
            if not elem.is_empty:
                found.append(PhiLocation("private", path, f"[{creator}] {elem.name}", row.basic if row else "X", elem.VR))
        else:
            row = table.lookup(tag)
            if row is not None and not elem.is_empty:
                found.append(PhiLocation("header", path, row.name, row.basic, elem.VR))
            elif row is None and elem.VR in _FREE_TEXT_VRS and not elem.is_empty:
                # names and free text outside the table (e.g. a Text Value nested in a protocol
                # context) can still name the patient: list them for review
                found.append(PhiLocation("header", path, elem.name, NOT_IN_TABLE, elem.VR))
        if elem.VR == "SQ":
            for index, item in enumerate(elem.value):
                found.extend(header_phi(item, table, f"{path}[{index}]."))
    return found


def _tag(tag) -> str:
    return f"({tag.group:04X},{tag.element:04X})"


def _flag_phi(ds: Dataset) -> list[PhiLocation]:
    """Burned In Annotation and Recognizable Visual Features, when YES or not stated."""
    found = []
    for keyword, tag, name in (
        ("BurnedInAnnotation", "(0028,0301)", "Burned In Annotation"),
        ("RecognizableVisualFeatures", "(0028,0302)", "Recognizable Visual Features"),
    ):
        value = str(ds.get(keyword, "") or "").upper()
        if value != "NO":
            found.append(PhiLocation("pixels", tag, name, value or "absent", "CS"))
    return found


def container_phi(metadata: dict[str, str], where: str) -> list[PhiLocation]:
    """Container metadata entries that are not purely technical."""
    found = []
    for key, value in metadata.items():
        if is_technical_metadata(key) or not str(value).strip():
            continue
        found.append(PhiLocation(where, key, key, "X"))
    return found


def _embedded_container_phi(video: VideoSource) -> list[PhiLocation]:
    """Metadata of an MP4 stored as MPEG-family pixel data (read from the fragments' boxes)."""
    if not isinstance(video, MpegDicomVideo) or video.stream_format() != "mp4":
        return []
    import av

    from clinrelease.dicom.pixeldata import FragmentStream

    with FragmentStream(video.info.path, video.location.fragments) as view:
        with av.open(view, format="mp4") as container:
            metadata = {str(k): str(v) for k, v in container.metadata.items()}
            for stream in container.streams.video:
                metadata.update({f"stream:{k}": str(v) for k, v in stream.metadata.items()})
    return container_phi(metadata, "pixel data container")


def _summary(ds: Dataset) -> dict[str, str | int]:
    """Header facts that identify no one: modality, counts, flags."""
    summary: dict[str, str | int] = {
        "modality": str(ds.get("Modality", "")),
        "image_type": "\\".join(ds.get("ImageType", []) or []),
        "lossy_image_compression": str(ds.get("LossyImageCompression", "")),
        "patient_identity_removed": str(ds.get("PatientIdentityRemoved", "")),
        "attributes": sum(1 for _ in ds.iterall()),
        "private_creators": len({e.value for e in ds.iterall() if e.tag.is_private and e.tag.is_private_creator}),
    }
    return summary

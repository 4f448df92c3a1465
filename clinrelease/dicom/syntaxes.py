"""Transfer syntaxes and SOP classes that clinrelease reads and writes, and what decodes them.

One table answers three questions for every transfer syntax UID: can we decode it, with which
route (``"mpeg"`` = PyAV over the joined fragments, ``"jpeg"`` = one JPEG per frame, ``"native"`` =
raw pixels read by offset), and which raw-stream format PyAV should be told to expect.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom import uid

#: SOP classes of the DICOM video IODs (PS3.4 Annex B)
VIDEO_ENDOSCOPIC = "1.2.840.10008.5.1.4.1.1.77.1.1.1"
VIDEO_MICROSCOPIC = "1.2.840.10008.5.1.4.1.1.77.1.2.1"
VIDEO_PHOTOGRAPHIC = "1.2.840.10008.5.1.4.1.1.77.1.4.1"
VIDEO_SOP_CLASSES = frozenset({VIDEO_ENDOSCOPIC, VIDEO_MICROSCOPIC, VIDEO_PHOTOGRAPHIC})
#: Modality each video IOD requires (PS3.3 A.32.5-A.32.7)
VIDEO_MODALITY = {VIDEO_ENDOSCOPIC: "ES", VIDEO_MICROSCOPIC: "GM", VIDEO_PHOTOGRAPHIC: "XC"}
MULTIFRAME_TRUE_COLOR_SC = "1.2.840.10008.5.1.4.1.1.7.4"
MULTIFRAME_GRAYSCALE_BYTE_SC = "1.2.840.10008.5.1.4.1.1.7.2"

#: SOP classes that carry no pixel data at all; named in the "not an image" error
NON_IMAGE_HINTS = {
    "1.2.840.10008.1.3.10": "a DICOMDIR (Media Storage Directory)",
}


@dataclass(frozen=True)
class SyntaxInfo:
    """How one transfer syntax is stored and decoded."""

    uid: str
    #: "mpeg", "jpeg" or "native"
    route: str
    #: the PyAV demuxer for an elementary stream of this syntax ("h264", "hevc", "mpegvideo")
    raw_format: str | None = None
    #: whether the data set is encoded with explicit VRs (native route only needs this)
    explicit_vr: bool = True


_TABLE: dict[str, SyntaxInfo] = {}


def _add(uid_: str, route: str, raw_format: str | None = None, explicit_vr: bool = True) -> None:
    _TABLE[uid_] = SyntaxInfo(uid_, route, raw_format, explicit_vr)


for _u in (uid.MPEG2MPML, uid.MPEG2MPMLF, uid.MPEG2MPHL, uid.MPEG2MPHLF):
    _add(_u, "mpeg", "mpegvideo")
for _u in (
    uid.MPEG4HP41, uid.MPEG4HP41F, uid.MPEG4HP41BD, uid.MPEG4HP41BDF,
    uid.MPEG4HP422D, uid.MPEG4HP422DF, uid.MPEG4HP423D, uid.MPEG4HP423DF,
    uid.MPEG4HP42STEREO, uid.MPEG4HP42STEREOF,
):  # fmt: skip
    _add(_u, "mpeg", "h264")
for _u in (uid.HEVCMP51, uid.HEVCM10P51):
    _add(_u, "mpeg", "hevc")
_add(uid.JPEGBaseline8Bit, "jpeg")
_add(uid.ExplicitVRLittleEndian, "native")
_add(uid.ImplicitVRLittleEndian, "native", explicit_vr=False)

#: why the syntaxes we recognise but do not decode are refused
_UNSUPPORTED_REASON = {
    uid.DeflatedExplicitVRLittleEndian: "the whole data set is deflated, so frames cannot be read lazily; "
    "inflate it first (e.g. dcmconv +te)",
    uid.ExplicitVRBigEndian: "big endian pixel data is retired and not supported; convert it to little endian",
}


def syntax_info(transfer_syntax_uid: str) -> SyntaxInfo | None:
    """Return how ``transfer_syntax_uid`` is decoded, or ``None`` when clinrelease cannot decode it."""
    return _TABLE.get(str(transfer_syntax_uid))


def unsupported_reason(transfer_syntax_uid: str) -> str:
    """A one-line reason why a transfer syntax cannot be decoded, naming it."""
    ts = uid.UID(str(transfer_syntax_uid))
    name = ts.name if ts.is_transfer_syntax else "unknown transfer syntax"
    extra = _UNSUPPORTED_REASON.get(ts, "supported are MPEG-2, H.264, HEVC, JPEG Baseline and native little endian")
    return f"transfer syntax {ts} ({name}) cannot be decoded: {extra}"


def supported_transfer_syntaxes() -> list[str]:
    """Every transfer syntax UID the reader decodes."""
    return list(_TABLE)


@dataclass(frozen=True)
class WriteSyntax:
    """A transfer syntax the writer produces, by its short name."""

    name: str
    uid: str
    #: PyAV encoder (None for native)
    encoder: str | None
    #: Lossy Image Compression Method (0028,2114) defined term
    lossy_method: str | None
    photometric: str


WRITE_SYNTAXES: dict[str, WriteSyntax] = {
    "h264": WriteSyntax("h264", uid.MPEG4HP41, "libx264", "ISO_14496_10", "YBR_PARTIAL_420"),
    "hevc": WriteSyntax("hevc", uid.HEVCMP51, "libx265", "ISO_23008_2", "YBR_PARTIAL_420"),
    "mpeg2": WriteSyntax("mpeg2", uid.MPEG2MPML, "mpeg2video", "ISO_13818_2", "YBR_PARTIAL_420"),
    "mpeg2-hl": WriteSyntax("mpeg2-hl", uid.MPEG2MPHL, "mpeg2video", "ISO_13818_2", "YBR_PARTIAL_420"),
    "jpeg": WriteSyntax("jpeg", uid.JPEGBaseline8Bit, None, "ISO_10918_1", "YBR_FULL_422"),
    "native": WriteSyntax("native", uid.ExplicitVRLittleEndian, None, None, "RGB"),
}

"""Byte-level clean-up of encoded video streams before they go into a DICOM file.

Encoders leave their own fingerprints in the stream: x264 writes its version and every setting into
an SEI message (``user_data_unregistered``), x265 does the same, MPEG-2 encoders may add user data.
Those are not PHI, but a release should carry only pixels, so they are cut out here, NAL unit by
NAL unit, without touching the coded pictures.
"""

from __future__ import annotations

_START = b"\x00\x00\x01"


def _units(data: bytes) -> list[tuple[int, int, int]]:
    """``(unit_start, payload_start, unit_end)`` of every start-code-prefixed unit in ``data``.

    ``unit_start`` includes the start code (and the leading zero of a 4-byte start code), so joining
    the kept slices reproduces the stream byte for byte.
    """
    positions = []
    pos = data.find(_START)
    while pos != -1:
        positions.append(pos)
        pos = data.find(_START, pos + 3)
    units = []
    for i, pos in enumerate(positions):
        start = pos - 1 if pos > 0 and data[pos - 1] == 0 else pos
        end = len(data)
        if i + 1 < len(positions):
            nxt = positions[i + 1]
            end = nxt - 1 if data[nxt - 1] == 0 and nxt - 1 > pos + 2 else nxt
        units.append((start, pos + 3, end))
    if units and units[0][0] > 0:  # bytes before the first start code: keep them as they are
        units.insert(0, (0, 0, units[0][0]))
    return units


def _is_dropped(codec: str, data: bytes, payload: int) -> bool:
    if payload >= len(data) or payload == 0:
        return False
    head = data[payload]
    if codec == "h264":
        return head & 0x1F == 6  # SEI
    if codec == "hevc":
        return (head >> 1) & 0x3F in (39, 40)  # prefix and suffix SEI
    if codec == "mpeg2":
        return head == 0xB2  # user_data_start_code
    raise ValueError(f"unknown codec {codec!r}")


def strip_user_data(data: bytes, codec: str) -> bytes:
    """Remove SEI NAL units (H.264/HEVC) or user data (MPEG-2) from an Annex-B/elementary stream chunk.

    Parameters
    ----------
    data:
        Whole units: an encoder packet or a complete stream (start codes included).
    codec:
        ``"h264"``, ``"hevc"`` or ``"mpeg2"``.

    Returns
    -------
    bytes
        The same stream without those units; coded pictures are untouched.
    """
    units = _units(data)
    if not units:
        return data
    return b"".join(data[s:e] for s, p, e in units if not _is_dropped(codec, data, p))


def nal_types(data: bytes, codec: str) -> list[int]:
    """The NAL unit types in an H.264 or HEVC Annex-B stream, in order (for checks and tests)."""
    types = []
    for _, payload, _ in _units(data):
        if payload == 0 or payload >= len(data):
            continue
        head = data[payload]
        types.append(head & 0x1F if codec == "h264" else (head >> 1) & 0x3F)
    return types

"""Which route an object's pixels take, from its SOP class, modality and transfer syntax.

Plain videos, DICOM video IODs and multi-frame colour images are videos (the pixel stages); recorded
sound is never released; a Secondary Capture is a photograph of a person unless a scanner made it.
"""

from __future__ import annotations

from typing import Any

#: SOP classes whose pixels are photographs or video of a person (faces may be present)
_PHOTOGRAPHIC_PREFIXES = ("1.2.840.10008.5.1.4.1.1.77.1.", "1.2.840.10008.5.1.4.1.1.7")
_PHOTO_MODALITIES = frozenset({"XC", "ES", "GM", "SM"})
_SCANNER_MODALITIES = frozenset({"CT", "MR", "PT", "NM", "US", "CR", "DX", "MG", "XA", "RF", "RG", "OCT", "OPT"})
_VIDEO_PREFIX = "1.2.840.10008.5.1.4.1.1.77.1."

AUDIO_REASON = "audio is never released"
#: DICOM objects that are recorded sound (a voice identifies a patient): quarantined
AUDIO_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.9.4.1": "Basic Voice Audio Waveform",
    "1.2.840.10008.5.1.4.1.1.9.4.2": "General Audio Waveform",
}


def audio_object(header: Any) -> str | None:
    """The name of the audio object ``header`` is (Basic Voice, General Audio Waveform), else None."""
    return AUDIO_SOP_CLASSES.get(str(header.get("SOPClassUID", "")))


def is_video(header: Any, container: bool = False) -> bool:
    """Plain videos (``container``), DICOM video IODs and multi-frame colour images go through the pixel stages."""
    if container:
        return True
    if str(header.get("SOPClassUID", "")).startswith(_VIDEO_PREFIX) and "NumberOfFrames" in header:
        return True
    frames = int(header.get("NumberOfFrames", 1) or 1)
    return frames > 1 and int(header.get("SamplesPerPixel", 1) or 1) == 3


def is_mpeg(header: Any) -> bool:
    """Is the pixel data an MPEG-family stream (which may multiplex sound with the pictures)?"""
    from clinrelease.dicom.syntaxes import syntax_info

    syntax = syntax_info(str(header.file_meta.get("TransferSyntaxUID", "")))
    return syntax is not None and syntax.route == "mpeg"


def is_photographic(header: Any) -> bool:
    """Could the pixels be a photograph of a person? (Secondary Capture unless a scanner made it.)"""
    uid = str(header.get("SOPClassUID", ""))
    modality = str(header.get("Modality", "") or "")
    if modality in _PHOTO_MODALITIES:
        return True
    # a Secondary Capture of a CT or MR slice is a screenshot of a scan, not a camera picture
    return uid.startswith(_PHOTOGRAPHIC_PREFIXES) and modality not in _SCANNER_MODALITIES

"""Is a DICOM file whole? Reading a file that was cut short, and saying so.

pydicom reads a cut file without complaint: an element whose value runs past the end of the file
comes back shorter than it declares, a cut inside an element's header ends the data set quietly,
and a cut inside a sequence empties the whole data set with a warning. Each of these then surfaced
much later as a misleading error ("cannot derive a pseudonym" for a header that had lost its
Patient ID). :func:`read_checked` reads the file and raises :class:`InputError` saying that it is
truncated, and where.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.dataset import Dataset

from clinrelease.errors import InputError

_UNDEFINED = 0xFFFFFFFF
#: preamble, "DICM", and the (0002,0000) group length element
_META_START = 128 + 4 + 12
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_DEFLATED = {"1.2.840.10008.1.2.1.99"}  # Deflated Explicit VR Little Endian
#: a DICOMDIR's data set has no SOP Common module
_MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"


def read_checked(handle: BinaryIO, path: Path, *, stop_before_pixels: bool) -> Dataset:
    """``pydicom.dcmread(handle)``, refusing a file that ends before its data set does.

    Raises
    ------
    InputError
        The file is truncated (the message says where), or pydicom cannot read it at all.
    pydicom.errors.InvalidDicomError
        Not a DICOM file (left to the caller, which words it for its use).
    """
    size = os.fstat(handle.fileno()).st_size
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = pydicom.dcmread(handle, stop_before_pixels=stop_before_pixels)
    position = handle.tell()
    problem = truncation(ds, size, position, [str(w.message) for w in caught])
    if problem:
        raise InputError(problem, path)
    return ds


def truncation(ds: Dataset, size: int, position: int, warned: list[str]) -> str | None:
    """Why a data set read from a file of ``size`` bytes looks cut short; ``None`` when it looks whole.

    ``position`` is where reading stopped (the Pixel Data tag when reading stopped before the
    pixels, else the end of the file); ``warned`` holds pydicom's warnings while reading.
    """
    if any("End of file" in message or "EOF" in message for message in warned):
        return "the file is truncated: it ends inside a sequence or inside encapsulated pixel data"
    meta = ds.get("file_meta")
    group_length = meta.get("FileMetaInformationGroupLength") if meta is not None else None
    if group_length is not None and _META_START + int(group_length) > size:
        return f"the file is truncated: it ends inside its file meta information ({size} bytes; the meta alone declares {_META_START + int(group_length)})"
    if meta is not None and str(meta.get("TransferSyntaxUID", "")) in _DEFLATED:
        return None  # the data set was read from an inflated copy: positions in the file say nothing
    if not len(ds) and position >= size:
        return f"the file is truncated: it ends after its file meta information ({size} bytes): the data set is missing"
    last_end: int | None = 0
    last_tag = None
    # the elements as read (raw, unconverted); get_item per tag cost a lookup and checks for each
    for tag, raw in ds.items():
        tell, length = getattr(raw, "value_tell", None), getattr(raw, "length", None)
        if tell is None or length is None or length == _UNDEFINED:
            last_end = None  # an undefined-length sequence: a cut inside it was warned about above
            continue
        value = getattr(raw, "value", None)
        if isinstance(value, bytes) and len(value) < length:
            return f"the file is truncated: element ({tag.group:04X},{tag.element:04X}) declares {length} bytes, only {len(value)} remain"
        last_end, last_tag = tell + length, tag
    if last_end is not None and position > last_end:
        after = f" after ({last_tag.group:04X},{last_tag.element:04X})" if last_tag is not None else ""
        return f"the file is truncated: it ends inside the header of the element{after}"
    if position < size:
        return None  # reading stopped at the Pixel Data tag: what follows is checked where it is read
    # a cut between two elements leaves a well-formed but short data set: what every instance holds
    # (its SOP Common UIDs) or every image holds (its pixels) is then missing
    sop_class = str(meta.get("MediaStorageSOPClassUID", "")) if meta is not None else ""
    for keyword in ("SOPClassUID", "SOPInstanceUID"):
        if keyword not in ds and f"MediaStorage{keyword}" in (meta or {}) and sop_class != _MEDIA_DIRECTORY:
            name = keyword.removesuffix("UID").replace("SOP", "SOP ")
            return f"the file is truncated or incomplete: its data set ends before its {name} UID, which every DICOM object holds"
    is_image = "Rows" in ds or "Image Storage" in pydicom.uid.UID(sop_class).name
    if is_image and not any(k in ds for k in _PIXEL_KEYWORDS):
        return "the file is truncated or incomplete: its data set ends before the Pixel Data its SOP class holds"
    return None

"""Residual-PHI check: what the profile took out must not be anywhere in the output.

Runs after header de-identification on every output. Two checks:

1. every original value of an attribute the profile removed, emptied, replaced or gave a dummy
   (X, Z, D, U: :attr:`DeidResult.changes`) is absent from every element of the output, at any depth
   and in any private block;
2. no identifying string of the patient (:func:`identifying_strings`: names, IDs, birth date in
   common formats, addresses, telephone numbers) appears in any text or binary element of the
   output other than the pixel data.

Findings name where and what kind of value leaked, never the value itself (they go into logs).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID_dictionary

from clinrelease.dicom.deid import tag_text
from clinrelease.dicom.phi_strings import date_forms, identifying_strings, phi_pattern

if TYPE_CHECKING:
    from clinrelease.dicom.deid import DeidResult

__all__ = ["Finding", "identifying_strings", "residual_phi"]

#: actions whose original value must be gone (C may keep clean text by design)
_REMOVING_ACTIONS = frozenset({"X", "Z", "D", "U"})
#: elements never scanned as text: pixel data is the pixel stage's business
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
_NUMERIC_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "DS", "IS", "SV", "UV", "AT",
                          "OF", "OD", "OL", "OV", "UI"})
#: controlled vocabularies: coded strings and the Code Sequence macro's designator, value, version.
#: A surname that is also a coded term ("TEST", "PERFUSION") is not flagged there.
_VOCABULARY_TAGS = frozenset({0x00080100, 0x00080102, 0x00080103, 0x00080119, 0x00080120})
_BINARY_VRS = frozenset({"OB", "OW", "UN"})
#: shortest identifying string searched for inside binary values
MIN_BINARY_LENGTH = 5
#: shortest original value worth searching for
MIN_VALUE_LENGTH = 4


@dataclass(frozen=True)
class Finding:
    """One residual-PHI problem.

    Attributes
    ----------
    kind:
        ``"residual-value"`` (an original value the profile took out is still there) or
        ``"identifying-string"`` (one of the patient's identifying strings is in the output).
    path:
        Where the leaked value was found in the output.
    source:
        Which original attribute (path) or which identifying-string category it came from.
    """

    kind: str
    path: str
    source: str


#: VRs read as text in the default character set, several values split at backslashes
_DEFAULT_MULTI = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI"})
#: VRs read as text in the data set's character set, several values split at backslashes
_CHARSET_MULTI = frozenset({"LO", "SH", "UC", "PN"})
#: VRs read as text in the data set's character set, one value
_CHARSET_SINGLE = frozenset({"LT", "ST", "UT"})
_STRUCT = {"US": "H", "SS": "h", "UL": "L", "SL": "l", "FL": "f", "FD": "d", "SV": "q", "UV": "Q"}
_STRUCT_SIZE = {vr: struct.calcsize("<" + code) for vr, code in _STRUCT.items()}
_BYTES_VRS = frozenset({"OB", "OW", "OD", "OF", "OL", "OV"})


def _texts(elem: DataElement) -> list[str]:
    """The element's value as text pieces (each value of a multi-valued one, bytes as latin-1)."""
    value = elem.value
    if value is None or elem.VR == "SQ":
        return []
    if isinstance(value, (bytes, bytearray)):
        return [bytes(value).decode("latin-1")]
    values = list(value) if elem.VM > 1 else [value]
    return [str(v) for v in values if v is not None and str(v) != ""]


def _raw_texts(raw, charset: str | None) -> list[str] | None:
    """:func:`_texts` of a raw element read straight from its bytes, as pydicom would convert it;
    ``None`` where only pydicom's conversion says (no VR, UN, AT, ambiguous VRs, an unusual
    character set or bytes it does not decode)."""
    vr, value = raw.VR, raw.value
    if value is None:
        return []
    try:
        if vr in _DEFAULT_MULTI:
            texts = value.decode("iso8859").split("\\")
        elif vr in _CHARSET_MULTI and charset is not None:
            texts = value.decode(charset).split("\\")
        elif vr in _CHARSET_SINGLE and charset is not None:
            texts = [value.decode(charset)]
        elif vr == "UR":
            texts = [value.decode("iso8859")]
        elif vr in _BYTES_VRS:
            return [value.decode("latin-1")]
        elif vr in _STRUCT:
            size = _STRUCT_SIZE[vr]
            if len(value) % size:
                return None
            endian = "<" if raw.is_little_endian else ">"
            return [str(v) for v in struct.unpack(f"{endian}{len(value) // size}{_STRUCT[vr]}", value)]
        else:
            return None
    except UnicodeDecodeError:
        return None
    return [t for t in texts if t.strip(" \x00")]


#: (VR, value, character set, little endian) -> texts of short raw values: the series of a release
#: repeat most attributes (acquisition settings, codes, the study's dates and UIDs)
_TEXTS_CACHE: dict[tuple, tuple[str, ...] | None] = {}
#: longest value kept in the cache, and how many entries it holds before it is emptied
_CACHED_VALUE_BYTES = 64
_CACHE_ENTRIES = 1 << 14


def _cached_raw_texts(raw, charset: str | None) -> tuple[str, ...] | None:
    """:func:`_raw_texts` as a tuple, remembered for short values."""
    value = raw.value
    if value is None or len(value) > _CACHED_VALUE_BYTES:
        texts = _raw_texts(raw, charset)
        return None if texts is None else tuple(texts)
    key = (raw.VR, value, charset, raw.is_little_endian)
    try:
        return _TEXTS_CACHE[key]
    except KeyError:
        pass
    texts = _raw_texts(raw, charset)
    if len(_TEXTS_CACHE) >= _CACHE_ENTRIES:
        _TEXTS_CACHE.clear()
    found = _TEXTS_CACHE[key] = None if texts is None else tuple(texts)
    return found


def _single_charset(ds: Dataset) -> str | None:
    """The data set's one character set as a Python codec, ``None`` for code extensions (ISO 2022)."""
    encodings = ds._character_set
    if isinstance(encodings, str):
        encodings = [encodings]
    if len(encodings) != 1 or encodings[0].startswith("iso2022"):
        return None
    return encodings[0]


def _element_texts(ds: Dataset, prefix: str = "", out: list | None = None) -> list[tuple[str, int, str, list[str]]]:
    """(path, tag, VR, texts) for every element of ``ds`` at any depth, as
    :class:`~clinrelease.dicom.deid.HeaderChange` names paths (``"(0008,1140)[0].(0008,1155)"``),
    but sequences themselves and the pixel data (the pixel stage's business); appended to ``out``.

    Values are read as read (raw) where :func:`_raw_texts` can: converting every value through
    pydicom costs more than the check itself. A list, not a generator: both walks of every item
    take every element.
    """
    out = [] if out is None else out
    charset = _single_charset(ds)
    elements = ds._dict
    # (plain int, element) pairs sort in C (tags are unique); BaseTag's comparisons, and Tag() in
    # get_item, are Python calls for each of the few hundred elements of every object
    for tag, elem in sorted(zip(map(int, elements), elements.values())):
        vr = elem.VR
        if vr is None or vr == "SQ" or vr == "UN" or elem.value is None:
            elem = ds[tag]  # pydicom's dictionary says whether it is a sequence; reads a deferred value
            vr = elem.VR
            if vr == "SQ":
                path = prefix + tag_text(tag)
                for i, item in enumerate(elem.value or ()):
                    _element_texts(item, f"{path}[{i}].", out)
                continue
        if tag in _PIXEL_TAGS:
            continue
        texts = _cached_raw_texts(elem, charset) if isinstance(elem, RawDataElement) else None
        if texts is None:
            elem = ds[tag]
            vr, texts = elem.VR, _texts(elem)
        out.append((prefix + tag_text(tag), tag, vr, texts))
    return out


def _under(path: str, changed: set[str]) -> bool:
    """Whether ``path`` or a sequence it sits in is one of ``changed``."""
    if path in changed:
        return True
    at = path.find("[")
    while at != -1:
        if path[:at] in changed:
            return True
        at = path.find("[", at + 1)
    return False


def _is_trivial(text: str, dummies: frozenset[str]) -> bool:
    stripped = text.strip(" \x00")
    return (
        len(stripped) < MIN_VALUE_LENGTH
        or stripped in dummies
        or stripped in UID_dictionary
        or sum(map(str.isalnum, stripped)) < MIN_VALUE_LENGTH
    )


def _first_inside(text: str, values: list[str]) -> str | None:
    """The value of ``values`` (longest first) found leftmost in ``text``, as a regex alternation of
    them would match; plain substring searches need no pattern compiled per object (values are
    mostly the object's own UIDs)."""
    best: tuple[int, str] | None = None
    for value in values:
        at = text.find(value)
        if at != -1 and (best is None or at < best[0]):
            best = (at, value)
    return None if best is None else best[1]


def residual_phi(original: Dataset, deidentified: Dataset, result: DeidResult) -> list[Finding]:
    """Check a de-identified dataset against its original.

    Parameters
    ----------
    original:
        The dataset as read, before de-identification.
    deidentified:
        The output dataset (``result.dataset`` or the file read back).
    result:
        The :class:`DeidResult` of that de-identification (changes and identifying strings).

    Returns
    -------
    list[Finding]
        Empty when nothing leaked.
    """
    from clinrelease.dicom.deid import DUMMY_VALUES

    dummies = frozenset(str(v) for v in DUMMY_VALUES.values()) | {result.pseudonym}
    # the original walked once: the changes' paths are looked up in it, the rest is what was kept
    texts = {path: pieces for path, _, _, pieces in _element_texts(original)}
    removed: dict[str, str] = {}  # original value -> where it came from
    for change in result.changes:
        if change.action not in _REMOVING_ACTIONS:
            continue
        for text in texts.get(change.path, ()):
            if len(text) >= MIN_VALUE_LENGTH and not _is_trivial(text, dummies):  # most are short numbers
                removed.setdefault(text.strip(" \x00"), change.path)
    # a value that an attribute kept by the profile also holds (a private copy of Body Part
    # Examined, a Segment Label equal to its Code Meaning) is released on purpose, not a leak
    changed = {c.path for c in result.changes}
    kept = {t.strip(" \x00") for path, pieces in texts.items() if not _under(path, changed) for t in pieces}
    for text in kept:
        removed.pop(text, None)
    # longest first: at one position the longest value is the one reported
    long_removed = sorted((v for v in removed if len(v) >= 8), key=len, reverse=True)
    strings = result.original_phi or identifying_strings(original)
    # an original that already held clinrelease's dummies (a birth date of 19000101) leaks nothing
    dummy_forms = dummies | set(date_forms(str(DUMMY_VALUES["DA"])))
    strings = [s for s in strings if s not in dummy_forms]
    pattern = phi_pattern(strings)
    # inside binary values words have no boundaries: plain substrings, long enough not to be chance
    binary = [s for s in strings if len(s) >= MIN_BINARY_LENGTH]
    binary_pattern = re.compile("|".join(map(re.escape, binary)), re.IGNORECASE) if binary else None

    findings: list[Finding] = []
    for path, tag, vr, pieces in _element_texts(deidentified):
        for text in pieces:
            stripped = text.strip(" \x00")
            if stripped in removed:
                findings.append(Finding("residual-value", path, removed[stripped]))
                continue
            if (
                long_removed
                and vr not in _NUMERIC_VRS
                and stripped not in kept  # a kept value may contain a removed one by design
                and (inside := _first_inside(text, long_removed)) is not None
            ):
                findings.append(Finding("residual-value", path, removed[inside]))
                continue
            if binary_pattern is not None and vr in _BINARY_VRS and binary_pattern.search(text):
                findings.append(Finding("identifying-string", path, "patient identifying string"))
                continue
            if (
                pattern is not None
                and vr not in _NUMERIC_VRS
                and vr != "CS"
                and tag not in _VOCABULARY_TAGS
                and pattern.search(text)
            ):
                findings.append(Finding("identifying-string", path, "patient identifying string"))
    return findings

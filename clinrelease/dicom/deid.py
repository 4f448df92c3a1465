"""Header de-identification: the whole of PS3.15 Annex E Table E.1-1, keyed and consistent.

:class:`Deidentifier` applies the Basic Application Confidentiality Profile plus the chosen options
to a pydicom Dataset, at every sequence depth, and returns a new dataset (the input is never
modified) with the required markers, a list of what changed, and the patient's pseudonym and date
shift. Replacement values (UIDs, pseudonym, date shift) come from the release key by HMAC, so one
key gives the same output byte for byte and a different key gives unrelated outputs.

Decisions the standard leaves open, and what clinrelease does:

* combined codes (``X/Z``, ``Z/D``, ``X/D``, ``X/Z/D``): keep the attribute with a dummy (D) or empty
  (Z) value, see :func:`clinrelease.dicom.deid_options.resolve_combined`;
* attributes the table does not list: kept only when :mod:`clinrelease.dicom.safe_attributes`
  vouches for them or the profile names them in ``keep``;
* Overlay Data / Curve Data under Clean Graphics: kept only when the pixel stage cleaned them
  (``pixels_cleaned``), otherwise removed with the rest of their group;
* attributes the table removes (X) although the object's IOD requires them (Responsible Person and
  Organization of an animal patient, Presentation Creation Date/Time of presentation states,
  Timezone Offset of Simplified Adult Echo SR, and ten inside kept sequences such as Requested
  Procedure ID in Referenced Request Sequence): kept empty (Z) or with a dummy (D), and the
  :class:`HeaderChange` records that action with the reason, see
  :data:`clinrelease.dicom.deid_options.IOD_REQUIREMENTS`;
* Clean (C) on free text: the patient's identifying strings and generic PHI shapes are scrubbed;
  on dates (Modified Dates option) the per-patient shift is applied, times are kept;
* a file without Patient ID: the pseudonym and date shift derive from the Patient Name and Birth
  Date, else from the Study Instance UID (stable for the study), else from the SOP Instance UID.
"""

from __future__ import annotations

import copy
import re
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Iterable, NamedTuple

import pydicom
import yaml
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.charset import default_encoding
from pydicom.filewriter import (
    EXPLICIT_VR_LENGTH_32,
    correct_ambiguous_vr,
    write_data_element,
    write_dataset,
)
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import UID, UID_dictionary

from clinrelease.dicom import keyed
from clinrelease.dicom.annex_e import EDITION, AnnexERow, load_table
from clinrelease.dicom.deid_options import (
    BASIC_PROFILE_CODE,
    OPTION_CODES,
    IodRequirement,
    effective_action,
    iod_requirement,
    resolve_combined,
    validate_options,
)
from clinrelease.dicom.phi_strings import identifying_sources, phi_pattern, scrub_text
from clinrelease.dicom.safe_attributes import CLEAN_TAGS, SAFE_TAGS, SAFE_VRS, TEMPORAL_VRS
from clinrelease.errors import ConfigError, InputError, VerificationError

#: the reason a file with burned-in annotation is refused without Clean Pixel Data
BURNED_IN_REASON = "burned-in annotation without Clean Pixel Data"

#: Implementation Class UID written into every file meta clinrelease produces (a fixed 2.25 UID)
IMPLEMENTATION_CLASS_UID = "2.25.163981712392741386640712431587373318417"
IMPLEMENTATION_VERSION_NAME = "CLINRELEASE_01"

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"

_TEXT_VRS = frozenset({"LO", "SH", "ST", "LT", "UT", "UC"})
_STRING_VRS = _TEXT_VRS | {"AE", "AS", "CS", "DA", "DT", "TM", "DS", "IS", "PN", "UI", "UR"}

#: dummy values for D, valid for their VR (PN of the patient gets the pseudonym instead)
DUMMY_VALUES: dict[str, object] = {
    "AE": "DEIDENTIFIED", "AS": "000Y", "CS": "DEIDENTIFIED", "DA": "19000101",
    "DT": "19000101000000", "TM": "000000", "DS": "0", "IS": "0", "LO": "DEIDENTIFIED",
    "LT": "DEIDENTIFIED", "PN": "DEIDENTIFIED", "SH": "DEIDENTIFIED", "ST": "DEIDENTIFIED",
    "UC": "DEIDENTIFIED", "UT": "DEIDENTIFIED", "UR": "urn:deidentified",
    "US": 0, "SS": 0, "UL": 0, "SL": 0, "FL": 0.0, "FD": 0.0, "SV": 0, "UV": 0,
    "AT": 0, "OB": b"\x00\x00", "OW": b"\x00\x00", "UN": b"\x00\x00", "OF": b"\x00\x00\x00\x00",
    "OD": b"\x00" * 8, "OL": b"\x00\x00\x00\x00", "OV": b"\x00" * 8,
}

_AMBIGUOUS_VR = {"US or SS": "US", "US or OW": "US", "US or SS or OW": "US", "OB or OW": "OW"}
_PATIENT_ID = tag_for_keyword("PatientID")
_PATIENT_NAME = tag_for_keyword("PatientName")
#: removed at any depth whatever the table says: signatures and encrypted/original values
_ALWAYS_REMOVE = frozenset(
    tag_for_keyword(k)
    for k in ("EncryptedAttributesSequence", "OriginalAttributesSequence",
              "ModifiedAttributesSequence", "IconImageSequence", "DigitalSignaturesSequence",
              "MACParametersSequence",
              # MACs of the original instances: a fingerprint of the originals, and its Type 1
              # MAC (0400,0015) is removed by the table, which would leave empty items
              "ReferencedSOPInstanceMACSequence")
)

#: per (options, keep): (tag, raw VR, clean text) -> decision
_DECISIONS: dict[tuple, dict[tuple, "_Decision"]] = {}
#: set by clinrelease at the top level after the walk
_MARKER_TAGS = frozenset(
    tag_for_keyword(k)
    for k in ("PatientIdentityRemoved", "DeidentificationMethod",
              "DeidentificationMethodCodeSequence", "LongitudinalTemporalInformationModified")
)


class HeaderChange(NamedTuple):
    """One attribute the de-identifier removed, emptied or replaced (a named tuple: a small header
    gets about two hundred of them, and a frozen dataclass costs three times as much to build).

    Attributes
    ----------
    tag:
        ``"(gggg,eeee)"``.
    name:
        The DICOM keyword, the table's name, or ``"Private <creator>"``.
    action:
        The action applied: X (removed), Z (emptied), D (dummy or pseudonym), U (UID replaced),
        C (cleaned or date-shifted).
    path:
        Where it sits, e.g. ``"(0008,1140)[0].(0008,1155)"``; the top level has no prefix.
    reason:
        Why the action differs from the table's, when it does (an IOD requires the attribute,
        see :data:`clinrelease.dicom.deid_options.IOD_REQUIREMENTS`); empty otherwise.
    """

    tag: str
    name: str
    action: str
    path: str
    reason: str = ""


@dataclass
class DeidResult:
    """What :meth:`Deidentifier.deidentify` returns.

    Attributes
    ----------
    dataset:
        The de-identified dataset, with new file meta (ready for :func:`write_deidentified`).
    changes:
        Every attribute removed, emptied or replaced, in walk order.
    pseudonym:
        The patient's pseudonym (also in Patient ID and Patient's Name).
    date_shift_days:
        The per-patient shift (applied only under ``retain_long_modified_dates``).
    original_phi:
        The identifying strings of the original (:func:`identifying_strings`), for leak scanning.
        Sensitive: never write it into a release.
    options:
        The options applied, in CID 7050 order.
    edition:
        The PS3.15 edition of the table used.
    """

    dataset: Dataset
    changes: list[HeaderChange]
    pseudonym: str
    date_shift_days: int
    original_phi: list[str]
    options: tuple[str, ...] = ()
    edition: str = EDITION
    #: each of ``original_phi`` -> the attribute it came from (a leak's reason names it, never the value)
    original_phi_sources: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SafePrivate:
    """A private attribute kept under Retain Safe Private: creator, group and element byte."""

    creator: str
    group: int
    element: int  # the low byte ``ee`` of (gggg,xxee)
    name: str = ""


@lru_cache(maxsize=1)
def load_safe_private() -> tuple[SafePrivate, ...]:
    """The safe-private dictionary shipped in ``clinrelease/data/safe_private.yaml``."""
    text = resources.files("clinrelease").joinpath("data", "safe_private.yaml").read_text("utf-8")
    return tuple(_safe_private_entry(e) for e in yaml.safe_load(text)["entries"])


#: a profile's ``safe_private_extra`` entry: "(0029,xx10) SIEMENS CSA HEADER"
_PRIVATE_TAG_TEXT = re.compile(r"\(([0-9A-Fa-f]{4}),(?:xx|XX|[0-9A-Fa-f]{2})([0-9A-Fa-f]{2})\)\s+(\S.*)")


def _safe_private_entry(entry: SafePrivate | dict | str) -> SafePrivate:
    if isinstance(entry, SafePrivate):
        return entry
    if isinstance(entry, str):
        match = _PRIVATE_TAG_TEXT.fullmatch(entry.strip())
        if match is None:
            raise ConfigError(
                f"safe private entry {entry!r}: write it as (gggg,xxee) followed by its private creator, "
                "e.g. (0029,xx10) SIEMENS CSA HEADER"
            )
        group, element, creator = match.groups()
        entry = {"creator": creator, "group": group, "element": element}
    try:
        return SafePrivate(
            creator=str(entry["creator"]).strip(),
            group=int(str(entry["group"]), 16),
            element=int(str(entry["element"]), 16) & 0xFF,
            name=str(entry.get("name", "")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"safe private entry {entry!r} needs creator, group (hex) and element (hex): {exc}"
        ) from None


class PatientSources(NamedTuple):
    """A dataset's :func:`identifying_sources` and the sequences decoded on the way (id of the raw
    element -> decoded element), which the de-identifier's walk of that dataset then reuses."""

    strings: dict[str, str]
    sequences: dict[int, DataElement]


def patient_sources(ds: Dataset) -> PatientSources:
    """:class:`PatientSources` of ``ds`` (the original, as read)."""
    sequences: dict[int, DataElement] = {}
    return PatientSources(identifying_sources(ds, decoded=sequences), sequences)


def parse_tag(tag: int | str) -> int:
    """Accept ``0x00100010``, ``"(0010,0010)"``, ``"00100010"`` or a keyword; return the int tag."""
    if isinstance(tag, int):
        return tag
    text = tag.strip()
    if m := re.fullmatch(r"\(?([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})\)?", text):
        return int(m.group(1) + m.group(2), 16)
    found = tag_for_keyword(text)
    if found is None:
        raise ConfigError(f"{tag!r} is neither a DICOM keyword nor a (gggg,eeee) tag")
    return found


_TAG_TEXTS: dict[int, str] = {}


def tag_text(tag: int) -> str:
    """``0x00100010`` -> ``"(0010,0010)"``, formatted once per tag: every change and every element
    the residual check walks is named by it."""
    tag = int(tag)  # a BaseTag key compares through a Python method
    text = _TAG_TEXTS.get(tag)
    if text is None:
        text = _TAG_TEXTS[tag] = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    return text


def patient_key(ds: Dataset) -> str:
    """The original value the pseudonym and date shift derive from.

    Patient ID when present; otherwise Patient's Name + Birth Date; otherwise the Study Instance UID
    (so every file of one study still shares one pseudonym); otherwise the SOP Instance UID.

    Raises
    ------
    InputError
        If the dataset has none of these.
    """
    for keyword, prefix in (("PatientID", ""),):
        value = str(ds.get(keyword, "") or "").strip()
        if value:
            return prefix + value
    name = str(ds.get("PatientName", "") or "").strip()
    if name:
        return f"name:{name}|{str(ds.get('PatientBirthDate', '') or '').strip()}"
    for keyword in ("StudyInstanceUID", "SOPInstanceUID"):
        value = str(ds.get(keyword, "") or "").strip()
        if value:
            return f"{keyword}:{value}"
    raise InputError(
        "no Patient ID, Patient's Name, Study or SOP Instance UID: cannot derive a pseudonym",
        getattr(ds, "filename", None) if isinstance(getattr(ds, "filename", None), str) else None,
    )


def _is_registered_uid(value: str) -> bool:
    return value in UID_dictionary


class _Decision(NamedTuple):
    """What happens to a standard attribute: the action, its VR and the name to record."""

    action: str
    vr: str
    name: str


@dataclass
class _Walk:
    """Per-dataset state of one de-identification."""

    key: bytes
    shift: int
    phi_strings: list[str]
    #: (implicit VR, little endian) of the output's transfer syntax: raw elements read with
    #: another encoding (files whose bytes contradict their syntax) are decoded before copying
    target: tuple[bool, bool] = (False, True)
    sop_class: str = ""
    #: id(raw sequence element) -> its decoded element, filled by identifying_strings
    sequences: dict[int, DataElement] = field(default_factory=dict)
    decoded: bool = False  # some raw element was decoded for that reason
    changes: list[HeaderChange] = field(default_factory=list)
    _phi: re.Pattern[str] | None = None
    _phi_built: bool = False

    @property
    def phi(self) -> re.Pattern[str] | None:
        """The identifying-strings regex, compiled on first use (only C on free text needs it)."""
        if not self._phi_built:
            self._phi, self._phi_built = phi_pattern(self.phi_strings), True
        return self._phi


class Deidentifier:
    """Apply PS3.15 Annex E (Basic Profile + options) with keyed, consistent replacements.

    Parameters
    ----------
    options:
        Option names (see :data:`clinrelease.dicom.deid_options.OPTIONS`), e.g.
        ``["retain_long_modified_dates", "clean_descriptors"]``.
    key:
        The release key (32 bytes); every replacement value derives from it.
    keep:
        Attributes not listed in Table E.1-1 to keep although clinrelease would remove them
        (keywords, ``"(gggg,eeee)"`` or ints). Table attributes are governed by options only.
    safe_private_extra:
        Extra safe-private entries (:class:`SafePrivate`, dicts with creator, group, element in
        hex, or a profile's ``"(0029,xx10) SIEMENS CSA HEADER"``) added to the shipped dictionary;
        used only with ``retain_safe_private``.

    Raises
    ------
    ConfigError
        For unknown options, contradictory options, a key that is not bytes, or a ``keep`` entry
        that Table E.1-1 governs.
    """

    def __init__(
        self,
        options: Iterable[str],
        key: bytes,
        *,
        keep: Iterable[int | str] = (),
        safe_private_extra: Iterable[SafePrivate | dict | str] = (),
    ) -> None:
        if not isinstance(key, (bytes, bytearray)) or len(key) < 16:
            raise ConfigError("the release key must be at least 16 bytes")
        self.options = validate_options(options)
        self.key = bytes(key)
        self.table = load_table()
        self.keep = frozenset(parse_tag(t) for t in keep)
        governed = sorted(tag_text(t) for t in self.keep if self.table.lookup(t) is not None)
        if governed:
            raise ConfigError(
                f"keep lists {', '.join(governed)}, which Table E.1-1 governs: "
                "choose the PS3.15 option that retains them instead"
            )
        safe = load_safe_private() + tuple(_safe_private_entry(e) for e in safe_private_extra)
        self.safe_private = frozenset((s.creator, s.group, s.element) for s in safe)
        opts = set(self.options)
        self._retain_private = "retain_safe_private" in opts
        self._full_dates = "retain_long_full_dates" in opts
        self._modified_dates = "retain_long_modified_dates" in opts
        # row -> applied action, cached per table row (options are fixed for this instance)
        self._actions: dict[int, str] = {}
        # (tag, raw VR, clean text) -> decision; shared by instances with the same settings,
        # since a release builds one Deidentifier per item
        self._decisions = _DECISIONS.setdefault((self.options, self.keep), {})
        self._marker_cache: dict[tuple, tuple[RawDataElement, ...]] = {}

    # ------------------------------------------------------------------ public API

    def deidentify(
        self, ds: Dataset, *, pixels_cleaned: bool = False, faces_anonymized: bool = False,
        sources: PatientSources | None = None,
    ) -> DeidResult:
        """De-identify one dataset; the input is not modified.

        Parameters
        ----------
        ds:
            The original dataset (read with pydicom; deferred pixel data is fine).
        pixels_cleaned:
            The Clean Pixel Data stage ran (or will run before release) on this object: Burned In
            Annotation becomes NO and overlay/curve bitmaps may stay under Clean Graphics.
        faces_anonymized:
            The face anonymizer ran: Recognizable Visual Features becomes NO.
        sources:
            :func:`patient_sources` of this very ``ds``, when the caller already needed them.

        Returns
        -------
        DeidResult

        Raises
        ------
        InputError
            A DICOMDIR, or a dataset without any value to derive a pseudonym from.
        VerificationError
            Burned In Annotation is YES and the options lack ``clean_pixel_data``.
        """
        source = _source_path(ds)
        meta = getattr(ds, "file_meta", None)
        sop_class = str(ds.get("SOPClassUID", "") or getattr(meta, "MediaStorageSOPClassUID", ""))
        if sop_class == DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds:
            raise InputError("is a DICOMDIR (a media index), not an image: nothing to release", source)
        if str(ds.get("BurnedInAnnotation", "")).upper() == "YES" and "clean_pixel_data" not in self.options:
            raise VerificationError(BURNED_IN_REASON, source)
        pid = patient_key(ds)
        known, sequences = sources or patient_sources(ds)
        phi = list(known)
        ts = _transfer_syntax(ds)
        target = (ts.is_implicit_VR, ts.is_little_endian)
        walk = _Walk(self.key, keyed.date_shift_days(self.key, pid), phi, target, sop_class,
                     sequences)
        out = self._dataset(ds, walk, "", clean_text=False, pixels_cleaned=pixels_cleaned)
        name = keyed.pseudonym(self.key, pid)
        for tag in (_PATIENT_ID, _PATIENT_NAME):
            out[tag] = _raw_text(tag, "LO" if tag == _PATIENT_ID else "PN", name, target)
        for marker in self._markers(pixels_cleaned, faces_anonymized, target):
            out[marker.tag] = marker
        if walk.decoded:  # decoded implicit-VR elements may carry "OB or OW" and the like
            correct_ambiguous_vr(out, ts.is_little_endian)
        out.file_meta = _file_meta(out, ts)
        return DeidResult(out, walk.changes, name, walk.shift, phi, self.options, original_phi_sources=known)

    def action_for(self, tag: int) -> str | None:
        """The applied action for a tag that Table E.1-1 lists (None if it lists none)."""
        row = self.table.lookup(tag)
        return None if row is None else self._row_action(row)

    # ------------------------------------------------------------------ walking

    def _row_action(self, row: AnnexERow) -> str:
        ident = id(row)
        action = self._actions.get(ident)
        if action is None:
            action = resolve_combined(effective_action(row, self.options))
            self._actions[ident] = action
        return action

    def _decide(self, tag: int, raw_vr: str | None, clean_text: bool) -> _Decision:
        """The (cached) decision for a standard attribute: it depends only on these three."""
        key = (tag, raw_vr, clean_text)
        decision = self._decisions.get(key)
        if decision is None:
            decision = self._decisions[key] = self._decide_uncached(tag, raw_vr, clean_text)
        return decision

    def _decide_uncached(self, tag: int, raw_vr: str | None, clean_text: bool) -> _Decision:
        vr = _vr_of(raw_vr, tag)
        if tag in _ALWAYS_REMOVE:
            return _Decision("X", vr, keyword_for_tag(tag) or tag_text(tag))
        row = self.table.lookup(tag)
        if row is None:
            return _Decision(self._unlisted_action(tag, vr, clean_text), vr,
                             keyword_for_tag(tag) or tag_text(tag))
        action = self._row_action(row)
        if vr == "SQ" and "/" in row.basic and action in ("Z", "D"):
            # X/Z, Z/D...: an empty sequence breaks "1-n items" rules; keeping it with
            # every item de-identified (UIDs replaced, text emptied) holds no PHI either
            action = "U*"
        return _Decision(action, vr, row.name)

    def _dataset(
        self, src: Dataset, walk: _Walk, prefix: str, *, clean_text: bool, pixels_cleaned: bool,
        within: int | None = None,
    ) -> Dataset:
        """De-identify one dataset or sequence item (``within``: the sequence holding it)."""
        # Elements go into a plain dict that becomes the output Dataset: Dataset.__setitem__
        # costs more than the decision itself, and unchanged raw elements (immutable tuples)
        # are shared with the input instead of being decoded and re-encoded.
        elements: dict = {}
        via_setitem: list[tuple[int, RawDataElement | DataElement]] = []  # sequences, private
        creators: dict[int, str] | None = None
        kept_blocks: set[int] = set()
        removed_overlays = self._removed_overlay_groups(src, pixels_cleaned)
        for tag, raw in sorted(src.items(), key=_tag_order):
            group = tag >> 16
            if group == 0x0002 or (group > 6 and not tag & 0xFFFF):
                continue  # file meta inside a dataset, retired group lengths: never copied
            if group & 1:
                element = tag & 0xFFFF
                if 0x10 <= element <= 0xFF:
                    continue  # private creators: re-added below for the kept blocks only
                if creators is None:
                    creators = self._private_creators(src)
                creator = creators.get((group << 8) | (element >> 8))
                if self._retain_private and (creator, group, element & 0xFF) in self.safe_private:
                    via_setitem.append((tag, _keep(src, raw, walk)))
                    kept_blocks.add((group << 16) | (element >> 8))
                else:
                    self._change(walk, tag, f"Private {creator or '(no creator)'}", "X", prefix)
                continue
            if removed_overlays and group in removed_overlays:
                self._change(walk, tag, keyword_for_tag(tag) or "Overlay", "X", prefix)
                continue
            action, vr, name = self._decide(tag, raw.VR, clean_text)
            if action == "K" and vr != "SQ":  # the common case: unchanged
                elements[tag] = _keep(src, raw, walk)
                continue
            if action == "X":
                rule = iod_requirement(tag, within, src.keys(), walk.sop_class)
                if rule is None:
                    self._change(walk, tag, name, "X", prefix)
                    continue
                elem = self._required(tag, vr, name, rule, prefix, walk)
            else:
                elem = self._apply(src, raw, tag, vr, action, name, prefix, walk, clean_text,
                                   pixels_cleaned)
            if elem is not None:
                if vr == "SQ":
                    via_setitem.append((tag, elem))
                else:
                    elements[tag] = elem
        out = Dataset(elements)
        implicit, little = src.original_encoding
        if implicit is not None:
            out.set_original_encoding(implicit, little, src.original_character_set)
        for tag, elem in via_setitem:  # keeps pydicom's bookkeeping (parents, pixel representation)
            out[tag] = elem
        for creator_tag in sorted(kept_blocks):
            out[creator_tag] = _keep(src, src.get_item(creator_tag), walk)
        return out

    def _required(
        self, tag: int, vr: str, name: str, rule: IodRequirement, prefix: str, walk: _Walk
    ) -> RawDataElement:
        """An attribute the table removes but the IOD requires here: empty (Z) or dummy (D)."""
        walk.changes.append(HeaderChange(tag_text(tag), name, rule.action, prefix + tag_text(tag),
                                         rule.reason))
        if rule.action == "Z":
            return _raw_text(tag, vr, "", walk.target)
        return _raw_text(tag, vr, rule.dummy or str(DUMMY_VALUES[vr]), walk.target)

    def _unlisted_action(self, tag: int, vr: str, clean_text: bool) -> str:
        """Action for an attribute Table E.1-1 does not list (see safe_attributes)."""
        if tag in self.keep or tag in SAFE_TAGS or tag in _MARKER_TAGS:
            return "K"
        if tag in CLEAN_TAGS:
            return "C"
        if vr == "SQ":
            return "K"  # keep the sequence, de-identify its items
        if vr == "UI":
            return "UI?"  # registered UIDs stay, instance UIDs are replaced
        if vr in TEMPORAL_VRS:
            return "K" if self._full_dates else "C" if self._modified_dates else "Z"
        if vr in SAFE_VRS:
            return "K"
        if clean_text and vr in _TEXT_VRS:
            return "C"
        # free text and names: emptied, not removed, so Type 2 attributes stay conformant
        return "Z" if vr in _STRING_VRS else "X"

    def _apply(
        self,
        src: Dataset,
        raw: RawDataElement | DataElement,
        tag: int,
        vr: str,
        action: str,
        name: str,
        prefix: str,
        walk: _Walk,
        clean_text: bool,
        pixels_cleaned: bool,
    ) -> RawDataElement | DataElement | None:
        """The output element for ``action`` (None: removed); records the change."""
        if action == "X":
            self._change(walk, tag, name, "X", prefix)
            return None
        if vr == "SQ":
            if action == "Z":
                self._change(walk, tag, name, "Z", prefix)
                return DataElement(tag, "SQ", Sequence())
            # K, C, D, U* on a sequence: keep it and de-identify every item; C also lets the
            # items' free text be cleaned instead of removed (Clean Structured Content/Graphics)
            path = prefix + tag_text(tag)
            items = Sequence()
            for i, item in enumerate(_sequence_items(src, raw, walk)):
                items.append(
                    self._dataset(item, walk, f"{path}[{i}].", clean_text=clean_text or action == "C",
                                  pixels_cleaned=pixels_cleaned, within=tag)
                )
            return DataElement(tag, "SQ", items)
        if action == "K":
            return _keep(src, raw, walk)
        if action == "UI?":
            if all(_is_registered_uid(v) for v in _uid_values(src, raw)):
                return _keep(src, raw, walk)
            action = "U"
        if action in ("U", "U*"):
            if vr != "UI":
                action = "D"
            else:
                self._change(walk, tag, name, "U", prefix)
                new = [keyed.keyed_uid(walk.key, v) for v in _uid_values(src, raw) if v]
                return _raw_text(tag, "UI", new, walk.target)
        if action == "Z":
            self._change(walk, tag, name, "Z", prefix)
            return _raw_text(tag, vr, "", walk.target)
        if action == "C":
            return self._clean(src, raw, tag, vr, name, prefix, walk, pixels_cleaned)
        # D: a dummy valid for the VR; UIDs get keyed replacements so references still resolve
        self._change(walk, tag, name, "D", prefix)
        if vr == "UI":
            values = [v for v in _uid_values(src, raw) if v]
            new = [keyed.keyed_uid(walk.key, v) for v in values] or [
                keyed.keyed_uid(walk.key, prefix + tag_text(tag))]
            return _raw_text(tag, "UI", new, walk.target)
        if tag == _PATIENT_ID:
            # nested Patient IDs get their own pseudonym; the top level's is set after the walk
            pids = [keyed.pseudonym(walk.key, str(v)) for v in _values(_value_elem(src, raw))]
            return _raw_text(tag, vr, pids, walk.target)
        if tag == _PATIENT_NAME:
            return _raw_text(tag, vr, "", walk.target)  # replaced by the pseudonym at the top level
        value = DUMMY_VALUES.get(vr, b"\x00\x00")
        if isinstance(value, str):
            return _raw_text(tag, vr, value, walk.target)
        return DataElement(tag, vr, value)

    def _clean(
        self,
        src: Dataset,
        raw: RawDataElement | DataElement,
        tag: int,
        vr: str,
        name: str,
        prefix: str,
        walk: _Walk,
        pixels_cleaned: bool,
    ) -> RawDataElement | DataElement | None:
        """The C action: shift dates, scrub free text, keep cleaned graphics, dummy the rest."""
        if vr == "TM" or (vr == "SH" and "Timezone" in name):
            return _keep(src, raw, walk)  # whole-day shifts keep times and offsets
        if vr in ("OB", "OW", "UN"):
            if pixels_cleaned:
                return _keep(src, raw, walk)  # overlay/curve bitmaps the pixel stage cleaned
            self._change(walk, tag, name, "X", prefix)
            return None
        if vr in SAFE_VRS:
            return _keep(src, raw, walk)
        self._change(walk, tag, name, "C", prefix)
        elem = _value_elem(src, raw)
        if vr in ("DA", "DT"):
            shift = keyed.shift_date if vr == "DA" else keyed.shift_datetime
            shifted = [shift(str(v), walk.shift) for v in _values(elem) if str(v).strip()]
            if any(s is None for s in shifted):  # not a full date: cannot shift, so replace
                shifted = [DUMMY_VALUES[vr]]
            return DataElement(tag, vr, _multi(shifted))
        if vr in _TEXT_VRS:
            return DataElement(tag, vr, _multi([scrub_text(str(v), walk.phi) for v in _values(elem)]))
        return DataElement(tag, vr, DUMMY_VALUES.get(vr, ""))

    @staticmethod
    def _change(walk: _Walk, tag: int, name: str, action: str, prefix: str) -> None:
        text = tag_text(tag)
        walk.changes.append(HeaderChange(text, name, action, prefix + text))

    @staticmethod
    def _private_creators(src: Dataset) -> dict[int, str]:
        """(group << 8 | block) -> creator string, for the private blocks reserved in ``src``."""
        creators = {}
        for tag in src.keys():
            group, element = tag >> 16, tag & 0xFFFF
            if group & 1 and 0x10 <= element <= 0xFF:
                value = src.get_item(tag).value
                if isinstance(value, bytes):
                    value = value.decode("latin-1")
                creators[(group << 8) | element] = str(value or "").strip(" \x00")
        return creators

    def _removed_overlay_groups(self, src: Dataset, pixels_cleaned: bool) -> set[int]:
        """Overlay groups whose Overlay Data goes: the whole group goes with it (IOD stays valid)."""
        groups = set()
        for tag in src.keys():
            if tag & 0xFF01FFFF == 0x60003000:  # (60xx,3000) Overlay Data, xx even
                action = self.action_for(int(tag))
                if action == "X" or (action == "C" and not pixels_cleaned):
                    groups.add(tag >> 16)
        return groups

    def _markers(
        self, pixels_cleaned: bool, faces_anonymized: bool, target: tuple[bool, bool]
    ) -> tuple[RawDataElement, ...]:
        """The PS3.15 E.1.1 markers for the top-level dataset, encoded once per combination."""
        key = (pixels_cleaned, faces_anonymized, target)
        cached = self._marker_cache.get(key)
        if cached is not None:
            return cached
        applied = [o for o in self.options
                   if (o != "clean_pixel_data" or pixels_cleaned)
                   and (o != "clean_recognizable_visual_features" or faces_anonymized)]
        codes = []
        for value, meaning in [BASIC_PROFILE_CODE] + [OPTION_CODES[o] for o in applied]:
            item = Dataset()
            item.CodeValue = value
            item.CodingSchemeDesignator = "DCM"
            item.CodeMeaning = meaning
            codes.append(item)
        temporal = "UNMODIFIED" if self._full_dates else "MODIFIED" if self._modified_dates else "REMOVED"
        texts = [
            ("PatientIdentityRemoved", "CS", "YES"),
            ("DeidentificationMethod", "LO", [f"clinrelease PS3.15 {EDITION} E.1-1 Basic Profile"]
             + [OPTION_CODES[o][1] for o in applied]),
            ("LongitudinalTemporalInformationModified", "CS", temporal),
        ]
        if pixels_cleaned:
            texts.append(("BurnedInAnnotation", "CS", "NO"))
        if faces_anonymized:
            texts.append(("RecognizableVisualFeatures", "CS", "NO"))
        markers = tuple(_raw_text(tag_for_keyword(k), vr, v, target) for k, vr, v in texts) + (
            _raw_sequence(tag_for_keyword("DeidentificationMethodCodeSequence"), codes, target),
        )
        self._marker_cache[key] = markers
        return markers


# ---------------------------------------------------------------------- element helpers


def _tag_order(item: tuple[BaseTag, object]) -> int:
    return int(item[0])  # plain ints compare in C; BaseTag's comparisons are Python methods


def _vr_of(raw_vr: str | None, tag: int) -> str:
    vr = raw_vr
    if not vr or (vr == "UN" and not (tag >> 16) & 1):  # implicit, or UN for a known tag
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            return "UN"
    # ambiguous dictionary VRs only matter for replaced values; pick the first spelling
    return _AMBIGUOUS_VR.get(str(vr), str(vr))


def _value_elem(src: Dataset, raw: RawDataElement | DataElement) -> DataElement:
    """A converted element without caching the conversion in ``src`` (the input stays as read)."""
    if isinstance(raw, DataElement):
        return raw
    return convert_raw_data_element(raw, encoding=src._character_set, ds=src)


def _sequence_items(src: Dataset, raw: RawDataElement | DataElement, walk: _Walk) -> Sequence:
    """The items of a sequence element, decoded once per de-identification (see _Walk)."""
    elem = raw if isinstance(raw, DataElement) else walk.sequences.get(id(raw))
    if elem is None:
        elem = walk.sequences[id(raw)] = _value_elem(src, raw)
    return elem.value or Sequence()


def _uid_values(src: Dataset, raw: RawDataElement | DataElement) -> list[str]:
    """The UID strings of a UI element (padding stripped), decoding raw bytes directly."""
    if isinstance(raw, RawDataElement) and isinstance(raw.value, bytes):
        return [v.strip(" \x00") for v in raw.value.decode("latin-1").split("\\")]
    return [str(v).strip(" \x00") for v in _values(_value_elem(src, raw))]


def _raw_text(tag: int, vr: str, value: str | list[str], target: tuple[bool, bool]) -> RawDataElement:
    """An encoded element for an ASCII text value (or values): cheaper than a DataElement.

    Every value clinrelease writes this way (pseudonyms, keyed UIDs, dummies, markers) is ASCII,
    which every character set in DICOM encodes the same way.
    """
    text = value if isinstance(value, str) else "\\".join(value)
    data = text.encode("ascii")
    if len(data) % 2:
        data += b"\x00" if vr == "UI" else b" "
    return RawDataElement(BaseTag(tag), vr, len(data), data, 0, target[0], target[1])


def _raw_sequence(tag: int, items: list[Dataset], target: tuple[bool, bool]) -> RawDataElement:
    """A sequence of small datasets encoded once (defined lengths) as a raw element."""
    implicit, little = target
    item_tag = struct.pack("<HH" if little else ">HH", 0xFFFE, 0xE000)
    data = b""
    for item in items:
        fp = DicomBytesIO()
        fp.is_implicit_VR, fp.is_little_endian = implicit, little
        write_dataset(fp, item)
        body = fp.getvalue()
        data += item_tag + struct.pack("<L" if little else ">L", len(body)) + body
    return RawDataElement(BaseTag(tag), "SQ", len(data), data, 0, implicit, little)


def _keep(src: Dataset, raw: RawDataElement | DataElement, walk: _Walk) -> RawDataElement | DataElement:
    """The element to put in the output unchanged (decoded when the file's encoding is off).

    Raw elements are immutable tuples, shared with the input as they are; converted ones are
    copied so that edits to the output never reach the input.
    """
    if isinstance(raw, RawDataElement):
        if (raw.is_implicit_VR, raw.is_little_endian) != walk.target:
            walk.decoded = True
            return _value_elem(src, raw)
        return raw
    return copy.copy(raw)


def _values(elem: DataElement) -> list:
    if elem.value is None or elem.value == "":
        return []
    return list(elem.value) if elem.VM > 1 else [elem.value]


def _multi(values: list) -> object:
    return values[0] if len(values) == 1 else (values or "")


def _source_path(ds: Dataset) -> str | None:
    name = getattr(ds, "filename", None)
    return name if isinstance(name, str) else None


def _transfer_syntax(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts:
        return UID(ts)
    implicit, little = ds.original_encoding
    if implicit is None:
        return pydicom.uid.ExplicitVRLittleEndian
    if not little:
        return pydicom.uid.ExplicitVRBigEndian
    return pydicom.uid.ImplicitVRLittleEndian if implicit else pydicom.uid.ExplicitVRLittleEndian


def _file_meta(ds: Dataset, transfer_syntax: UID) -> FileMetaDataset:
    """New file meta: nothing of the original's (source AE titles, private meta) survives."""
    # encoded directly (file meta is always explicit VR little endian): building it through
    # attribute assignment cost more than de-identifying a small header
    le = (False, True)
    elements = [
        RawDataElement(BaseTag(0x00020001), "OB", 2, b"\x00\x01", 0, False, True),
        _raw_text(0x00020002, "UI", _uid_text(ds, 0x00080016), le),
        _raw_text(0x00020003, "UI", _uid_text(ds, 0x00080018), le),
        _raw_text(0x00020010, "UI", str(transfer_syntax), le),
        _raw_text(0x00020012, "UI", IMPLEMENTATION_CLASS_UID, le),
        _raw_text(0x00020013, "SH", IMPLEMENTATION_VERSION_NAME, le),
    ]
    return FileMetaDataset({e.tag: e for e in elements})


def _uid_text(ds: Dataset, tag: int) -> str:
    """A single-valued UI element's text ("" when absent), without decoding it in ``ds``."""
    raw = ds.get_item(tag)
    if raw is None:
        return ""
    values = _uid_values(ds, raw)
    return values[0] if values else ""


# ---------------------------------------------------------------------- files


def read_dataset(path: str | Path, *, stop_before_pixels: bool = False) -> Dataset:
    """Read a DICOM file for de-identification.

    Raises
    ------
    InputError
        The file is missing, unreadable, truncated, not DICOM, or a DICOMDIR.
    """
    from clinrelease.dicom.truncation import read_checked

    path = Path(path)
    try:
        with open(path, "rb") as handle:
            ds = read_checked(handle, path, stop_before_pixels=stop_before_pixels)
    except FileNotFoundError:
        raise InputError("no such file", path) from None
    except InputError:
        raise
    except Exception as exc:  # pydicom raises many types for broken files
        raise InputError(f"not a readable DICOM file: it is truncated or corrupt ({type(exc).__name__}: {exc})", path) from None
    refuse_media_directory(ds, path)
    return ds


def refuse_media_directory(ds: Dataset, path: str | Path) -> None:
    """Raise :class:`InputError` when ``ds`` (read from ``path``) is a DICOMDIR: nothing to release."""
    if str(getattr(ds.get("file_meta"), "MediaStorageSOPClassUID", "")) == DICOMDIR_SOP_CLASS or (
        "DirectoryRecordSequence" in ds
    ):
        raise InputError("is a DICOMDIR (a media index), not an image: nothing to release", path)


def write_deidentified(ds: Dataset, path: str | Path) -> Path:
    """Write a de-identified dataset as a DICOM file (:func:`encode_deidentified`).

    For non-video objects; the video writer encodes its own pixel data.

    Parameters
    ----------
    ds:
        ``DeidResult.dataset``.
    path:
        Destination; parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_deidentified(ds))
    return path


def encode_deidentified(ds: Dataset) -> bytes:
    """A de-identified dataset as the bytes of a DICOM file: new file meta, empty (zero) preamble;
    byte for byte what ``pydicom.dcmwrite(..., enforce_file_format=True)`` writes."""
    ts = UID(ds.file_meta.TransferSyntaxUID) if "TransferSyntaxUID" in getattr(ds, "file_meta", {}) else _transfer_syntax(ds)
    ds.file_meta = _file_meta(ds, ts)
    ds.preamble = b"\x00" * 128
    meta = _encoded_meta(ds.file_meta)
    if meta is None or ts != pydicom.uid.ExplicitVRLittleEndian or ds.original_encoding != (False, True) or (
        ds.original_character_set != ds._character_set
    ) or any(tag >> 16 in (0, 2) for tag in ds._dict):  # pydicom's writer converts, or refuses
        buffer = DicomBytesIO()
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
        return buffer.getvalue()
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = False, True
    fp.write(ds.preamble + b"DICM" + meta)
    charset = ds.get("SpecificCharacterSet", default_encoding)
    for tag in sorted(ds._dict, key=int):
        if tag & 0xFFFF == 0 and tag >> 16 > 6:
            continue  # retired group lengths are never written
        elem = ds.get_item(tag)
        header = _raw_header(elem)
        if header is None:
            write_data_element(fp, elem, charset)
        else:
            fp.write(header + elem.value)
    return fp.getvalue()


#: the file meta elements pydicom's writer refuses to leave empty
_REQUIRED_META = (0x00020002, 0x00020003, 0x00020010)


def _encoded_meta(meta: FileMetaDataset) -> bytes | None:
    """The file meta (:func:`_file_meta`'s raw elements) with its group length, as pydicom writes
    it; ``None`` where pydicom's writer has more to do or refuses (an empty required UID)."""
    if any(not getattr(meta.get_item(tag), "value", None) for tag in _REQUIRED_META):
        return None
    body = b""
    for tag in sorted(meta._dict, key=int):
        elem = meta.get_item(tag)
        header = _raw_header(elem)
        if header is None or tag == 0x00020000:
            return None
        body += header + elem.value
    return struct.pack("<HH2sHL", 0x0002, 0x0000, b"UL", 4, len(body)) + body


def _raw_header(elem: RawDataElement | DataElement) -> bytes | None:
    """Tag, VR and length of a raw explicit VR little endian element written as read; ``None``
    where pydicom's writer has more to do (converted values, undefined lengths, a value too long
    for its VR). Writing these directly costs a tenth of pydicom's writer, per element."""
    if not isinstance(elem, RawDataElement) or elem.is_implicit_VR or not elem.is_little_endian:
        return None
    vr, value = elem.VR, elem.value
    if not isinstance(value, bytes) or elem.length == 0xFFFFFFFF or not isinstance(vr, str) or len(vr) != 2:
        return None
    if vr in EXPLICIT_VR_LENGTH_32:
        return struct.pack("<HH2sHL", elem.tag >> 16, elem.tag & 0xFFFF, vr.encode(), 0, len(value))
    if len(value) > 0xFFFF:
        return None
    return struct.pack("<HH2sH", elem.tag >> 16, elem.tag & 0xFFFF, vr.encode(), len(value))


def output_relpath(ds: Dataset) -> str:
    """Release-relative path built only from the pseudonym and the (replaced) UIDs.

    ``<pseudonym>/<study uid>/<series uid>/<sop instance uid>.dcm``; never from input file names.
    A missing study or series UID becomes ``no-study`` / ``no-series``.

    Raises
    ------
    InputError
        Patient ID or SOP Instance UID is missing, or a part is not a pseudonym/UID (which would
        mean the dataset was not de-identified).
    """
    parts = []
    for keyword in ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        value = str(ds.get(keyword, "") or "").strip()
        if not value and keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
            value = "no-" + keyword[:-11].lower()
        if not re.fullmatch(r"[0-9A-Za-z.-]+", value):
            raise InputError(f"cannot build an output path: {keyword} is missing or not de-identified")
        parts.append(value)
    return "/".join(parts[:-1]) + f"/{parts[-1]}.dcm"


def deidentify_file(
    deidentifier: Deidentifier,
    src: str | Path,
    out_root: str | Path,
    **flags: bool,
) -> tuple[DeidResult, Path]:
    """Read ``src``, de-identify it and write it under ``out_root`` at :func:`output_relpath`."""
    result = deidentifier.deidentify(read_dataset(src), **flags)
    out = write_deidentified(result.dataset, Path(out_root) / output_relpath(result.dataset))
    return result, out

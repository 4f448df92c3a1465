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
* Clean (C) on free text: the patient's identifying strings and generic PHI shapes are scrubbed;
  on dates (Modified Dates option) the per-patient shift is applied, times are kept;
* a file without Patient ID: the pseudonym and date shift derive from the Patient Name and Birth
  Date, else from the Study Instance UID (stable for the study), else from the SOP Instance UID.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Iterable

import pydicom
import yaml
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filewriter import correct_ambiguous_vr
from pydicom.sequence import Sequence
from pydicom.uid import UID, UID_dictionary

from clinrelease.dicom import keyed
from clinrelease.dicom.annex_e import EDITION, AnnexERow, load_table
from clinrelease.dicom.deid_options import (
    BASIC_PROFILE_CODE,
    OPTION_CODES,
    effective_action,
    resolve_combined,
    validate_options,
)
from clinrelease.dicom.phi_strings import identifying_strings, phi_pattern, scrub_text
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
_OVERLAY_DATA_ELEMENT = 0x3000
#: removed at any depth whatever the table says: signatures and encrypted/original values
_ALWAYS_REMOVE = frozenset(
    tag_for_keyword(k)
    for k in ("EncryptedAttributesSequence", "OriginalAttributesSequence",
              "ModifiedAttributesSequence", "IconImageSequence", "DigitalSignaturesSequence",
              "MACParametersSequence")
)
#: set by clinrelease at the top level after the walk
_MARKER_TAGS = frozenset(
    tag_for_keyword(k)
    for k in ("PatientIdentityRemoved", "DeidentificationMethod",
              "DeidentificationMethodCodeSequence", "LongitudinalTemporalInformationModified")
)


@dataclass(frozen=True)
class HeaderChange:
    """One attribute the de-identifier removed, emptied or replaced.

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
    """

    tag: str
    name: str
    action: str
    path: str


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


def _safe_private_entry(entry: SafePrivate | dict) -> SafePrivate:
    if isinstance(entry, SafePrivate):
        return entry
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


def tag_text(tag: int) -> str:
    """``0x00100010`` -> ``"(0010,0010)"``."""
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


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


@dataclass
class _Walk:
    """Per-dataset state of one de-identification."""

    key: bytes
    shift: int
    phi: re.Pattern[str] | None
    #: (implicit VR, little endian) of the output's transfer syntax: raw elements read with
    #: another encoding (files whose bytes contradict their syntax) are decoded before copying
    target: tuple[bool, bool] = (False, True)
    decoded: bool = False  # some raw element was decoded for that reason
    changes: list[HeaderChange] = field(default_factory=list)


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
        Extra safe-private entries (:class:`SafePrivate` or dicts with creator, group, element in
        hex) added to the shipped dictionary; used only with ``retain_safe_private``.

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
        safe_private_extra: Iterable[SafePrivate | dict] = (),
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

    # ------------------------------------------------------------------ public API

    def deidentify(
        self, ds: Dataset, *, pixels_cleaned: bool = False, faces_anonymized: bool = False
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
        phi = identifying_strings(ds)
        ts = _transfer_syntax(ds)
        walk = _Walk(self.key, keyed.date_shift_days(self.key, pid), phi_pattern(phi),
                     (ts.is_implicit_VR, ts.is_little_endian))
        out = self._dataset(ds, walk, "", clean_text=False, pixels_cleaned=pixels_cleaned)
        name = keyed.pseudonym(self.key, pid)
        out.PatientID = name
        out.PatientName = name
        self._markers(out, pixels_cleaned, faces_anonymized)
        if walk.decoded:  # decoded implicit-VR elements may carry "OB or OW" and the like
            correct_ambiguous_vr(out, ts.is_little_endian)
        out.file_meta = _file_meta(out, ts)
        return DeidResult(out, walk.changes, name, walk.shift, phi, self.options)

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

    def _dataset(
        self, src: Dataset, walk: _Walk, prefix: str, *, clean_text: bool, pixels_cleaned: bool
    ) -> Dataset:
        out = Dataset()
        implicit, little = src.original_encoding
        if implicit is not None:
            out.set_original_encoding(implicit, little, src.original_character_set)
        creators = self._private_creators(src)
        kept_blocks: set[int] = set()
        removed_overlays = self._removed_overlay_groups(src, pixels_cleaned)
        for tag in sorted(src.keys()):
            tag = int(tag)
            raw = src.get_item(tag)
            group, element = tag >> 16, tag & 0xFFFF
            if group == 0x0002 or (element == 0 and group > 6):
                continue  # file meta inside a dataset, retired group lengths: never copied
            path = f"{prefix}{tag_text(tag)}"
            if group & 1:
                if 0x10 <= element <= 0xFF:
                    continue  # private creators: re-added below for the kept blocks only
                creator = creators.get((group << 8) | (element >> 8))
                if self._retain_private and (creator, group, element & 0xFF) in self.safe_private:
                    out[tag] = _keep(src, raw, walk)
                    kept_blocks.add((group << 16) | (element >> 8))
                else:
                    self._change(walk, tag, f"Private {creator or '(no creator)'}", "X", path)
                continue
            if tag in _ALWAYS_REMOVE or (group & 0xFF00) == 0x6000 and group in removed_overlays:
                self._change(walk, tag, keyword_for_tag(tag) or "Overlay", "X", path)
                continue
            vr = _vr_of(raw, tag)
            row = self.table.lookup(tag)
            if row is not None:
                action = self._row_action(row)
                if vr == "SQ" and "/" in row.basic and action in ("Z", "D"):
                    # X/Z, Z/D...: an empty sequence breaks "1-n items" rules; keeping it with
                    # every item de-identified (UIDs replaced, text emptied) holds no PHI either
                    action = "U*"
                name = row.name
            else:
                action = self._unlisted_action(raw, tag, vr, clean_text)
                name = keyword_for_tag(tag) or tag_text(tag)
            self._apply(src, out, raw, tag, vr, action, name, path, walk, clean_text, pixels_cleaned)
        for block in sorted(kept_blocks):
            creator_tag = block
            out[creator_tag] = _keep(src, src.get_item(creator_tag), walk)
        return out

    def _unlisted_action(self, raw: RawDataElement | DataElement, tag: int, vr: str, clean_text: bool) -> str:
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
        out: Dataset,
        raw: RawDataElement | DataElement,
        tag: int,
        vr: str,
        action: str,
        name: str,
        path: str,
        walk: _Walk,
        clean_text: bool,
        pixels_cleaned: bool,
    ) -> None:
        if action == "X":
            self._change(walk, tag, name, "X", path)
            return
        if vr == "SQ":
            if action == "Z":
                out[tag] = DataElement(tag, "SQ", Sequence())
                self._change(walk, tag, name, "Z", path)
                return
            # K, C, D, U* on a sequence: keep it and de-identify every item; C also lets the
            # items' free text be cleaned instead of removed (Clean Structured Content/Graphics)
            elem = _value_elem(src, raw)
            items = Sequence()
            for i, item in enumerate(elem.value or ()):
                items.append(
                    self._dataset(item, walk, f"{path}[{i}].", clean_text=clean_text or action == "C",
                                  pixels_cleaned=pixels_cleaned)
                )
            out[tag] = DataElement(tag, "SQ", items)
            return
        if action == "K":
            out[tag] = _keep(src, raw, walk)
            return
        if action == "UI?":
            elem = _value_elem(src, raw)
            values = _values(elem)
            if all(_is_registered_uid(str(v)) for v in values):
                out[tag] = _keep(src, raw, walk)
                return
            action = "U"
        if action in ("U", "U*"):
            if vr != "UI":
                action = "D"
            else:
                elem = _value_elem(src, raw)
                new = [keyed.keyed_uid(walk.key, str(v)) for v in _values(elem) if str(v).strip()]
                out[tag] = DataElement(tag, "UI", _multi(new))
                self._change(walk, tag, name, "U", path)
                return
        if action == "Z":
            out[tag] = DataElement(tag, vr, None)
            self._change(walk, tag, name, "Z", path)
            return
        if action == "C":
            self._clean(src, out, raw, tag, vr, name, path, walk, pixels_cleaned)
            return
        # D: a dummy valid for the VR; UIDs get keyed replacements so references still resolve
        if vr == "UI":
            elem = _value_elem(src, raw)
            value = _multi([keyed.keyed_uid(walk.key, str(v)) for v in _values(elem)]) or keyed.keyed_uid(walk.key, path)
        elif tag == _PATIENT_ID:
            # nested Patient IDs get their own pseudonym; the top level's is set after the walk
            value = _multi([keyed.pseudonym(walk.key, str(v)) for v in _values(_value_elem(src, raw))])
        elif tag == _PATIENT_NAME:
            value = ""  # replaced by the pseudonym at the top level
        else:
            value = DUMMY_VALUES.get(vr, b"\x00\x00")
        out[tag] = DataElement(tag, vr, value)
        self._change(walk, tag, name, "D", path)

    def _clean(
        self,
        src: Dataset,
        out: Dataset,
        raw: RawDataElement | DataElement,
        tag: int,
        vr: str,
        name: str,
        path: str,
        walk: _Walk,
        pixels_cleaned: bool,
    ) -> None:
        """The C action: shift dates, scrub free text, keep cleaned graphics, dummy the rest."""
        elem = _value_elem(src, raw)
        if vr in ("DA", "DT"):
            shift = keyed.shift_date if vr == "DA" else keyed.shift_datetime
            shifted = [shift(str(v), walk.shift) for v in _values(elem) if str(v).strip()]
            if any(s is None for s in shifted):  # not a full date: cannot shift, so replace
                shifted = [DUMMY_VALUES[vr]]
            out[tag] = DataElement(tag, vr, _multi(shifted))
        elif vr == "TM" or (vr == "SH" and "Timezone" in name):
            out[tag] = _keep(src, raw, walk)  # whole-day shifts keep times and offsets
            return
        elif vr in _TEXT_VRS:
            out[tag] = DataElement(
                tag, vr, _multi([scrub_text(str(v), walk.phi) for v in _values(elem)])
            )
        elif vr in ("OB", "OW", "UN") and pixels_cleaned:
            out[tag] = _keep(src, raw, walk)  # overlay/curve bitmaps the pixel stage cleaned
            return
        elif vr in SAFE_VRS:
            out[tag] = _keep(src, raw, walk)
            return
        elif vr in ("OB", "OW", "UN"):
            self._change(walk, tag, name, "X", path)
            return
        else:
            out[tag] = DataElement(tag, vr, DUMMY_VALUES.get(vr, ""))
        self._change(walk, tag, name, "C", path)

    @staticmethod
    def _change(walk: _Walk, tag: int, name: str, action: str, path: str) -> None:
        walk.changes.append(HeaderChange(tag_text(tag), name, action, path))

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
            if tag & 0xFFFF == _OVERLAY_DATA_ELEMENT and (tag >> 16) & 0xFF01 == 0x6000:
                action = self.action_for(int(tag))
                if action == "X" or (action == "C" and not pixels_cleaned):
                    groups.add(tag >> 16)
        return groups

    def _markers(self, out: Dataset, pixels_cleaned: bool, faces_anonymized: bool) -> None:
        """Set the PS3.15 E.1.1 markers on the top-level dataset."""
        applied = [o for o in self.options
                   if (o != "clean_pixel_data" or pixels_cleaned)
                   and (o != "clean_recognizable_visual_features" or faces_anonymized)]
        out.PatientIdentityRemoved = "YES"
        out.DeidentificationMethod = [f"clinrelease PS3.15 {EDITION} E.1-1 Basic Profile"] + [
            OPTION_CODES[o][1] for o in applied
        ]
        codes = Sequence()
        for value, meaning in [BASIC_PROFILE_CODE] + [OPTION_CODES[o] for o in applied]:
            item = Dataset()
            item.CodeValue = value
            item.CodingSchemeDesignator = "DCM"
            item.CodeMeaning = meaning
            codes.append(item)
        out.DeidentificationMethodCodeSequence = codes
        out.LongitudinalTemporalInformationModified = (
            "UNMODIFIED" if self._full_dates else "MODIFIED" if self._modified_dates else "REMOVED"
        )
        if pixels_cleaned:
            out.BurnedInAnnotation = "NO"
        if faces_anonymized:
            out.RecognizableVisualFeatures = "NO"


# ---------------------------------------------------------------------- element helpers


def _vr_of(raw: RawDataElement | DataElement, tag: int) -> str:
    vr = raw.VR
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


def _keep(src: Dataset, raw: RawDataElement | DataElement, walk: _Walk) -> RawDataElement | DataElement:
    """The element to put in the output unchanged (decoded when the file's encoding is off)."""
    if isinstance(raw, RawDataElement) and (raw.is_implicit_VR, raw.is_little_endian) != walk.target:
        walk.decoded = True
        return _value_elem(src, raw)
    return _copy(raw)


def _copy(raw: RawDataElement | DataElement) -> RawDataElement | DataElement:
    """Raw elements are immutable tuples; converted ones are copied so edits never reach the input."""
    return raw if isinstance(raw, RawDataElement) else copy.copy(raw)


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
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", "")
    meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", "")
    meta.TransferSyntaxUID = transfer_syntax
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return meta


# ---------------------------------------------------------------------- files


def read_dataset(path: str | Path, *, stop_before_pixels: bool = False) -> Dataset:
    """Read a DICOM file for de-identification.

    Raises
    ------
    InputError
        The file is missing, unreadable, not DICOM, or a DICOMDIR.
    """
    path = Path(path)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except FileNotFoundError:
        raise InputError("no such file", path) from None
    except Exception as exc:  # pydicom raises many types for broken files
        raise InputError(f"not a readable DICOM file ({type(exc).__name__}: {exc})", path) from None
    if str(getattr(ds.get("file_meta"), "MediaStorageSOPClassUID", "")) == DICOMDIR_SOP_CLASS or (
        "DirectoryRecordSequence" in ds
    ):
        raise InputError("is a DICOMDIR (a media index), not an image: nothing to release", path)
    return ds


def write_deidentified(ds: Dataset, path: str | Path) -> Path:
    """Write a de-identified dataset as a DICOM file: new file meta, empty (zero) preamble.

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
    ts = UID(ds.file_meta.TransferSyntaxUID) if "TransferSyntaxUID" in getattr(ds, "file_meta", {}) else _transfer_syntax(ds)
    ds.file_meta = _file_meta(ds, ts)
    ds.preamble = b"\x00" * 128
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


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

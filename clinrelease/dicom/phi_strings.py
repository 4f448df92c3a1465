"""The identifying strings of a patient, and scrubbing them out of free text.

Shared by header de-identification (Clean Descriptors and friends), the residual-PHI check and the
verification stage's byte-level leak scanner, so that all three look for the same strings.
"""

from __future__ import annotations

import re
from typing import Iterable, Iterator

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement, convert_raw_data_element
from pydicom.dataset import Dataset

#: attributes (at any depth) whose values identify the patient
PATIENT_KEYWORDS = (
    "PatientName", "PatientID", "OtherPatientIDs", "OtherPatientNames", "PatientBirthName",
    "PatientMotherBirthName", "PatientAddress", "PatientTelephoneNumbers",
    "PatientTelecomInformation", "PatientBirthDate", "MedicalRecordLocator", "ResponsiblePerson",
    "PatientInsurancePlanCodeSequence", "MilitaryRank", "BranchOfService", "RegionOfResidence",
    "CountryOfResidence", "AccessionNumber",
)
_PATIENT_TAGS = frozenset(tag_for_keyword(k) for k in PATIENT_KEYWORDS)
_NAME_TAGS = frozenset(
    tag_for_keyword(k)
    for k in ("PatientName", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName",
              "ResponsiblePerson")
)
_DATE_TAGS = frozenset({tag_for_keyword("PatientBirthDate")})
_COARSE_TAGS = frozenset(tag_for_keyword(k) for k in ("CountryOfResidence", "RegionOfResidence",
                                                      "BranchOfService", "MilitaryRank"))

#: shortest string worth looking for (shorter ones match everywhere by chance)
MIN_LENGTH = 3
#: name parts that are titles, not names
_STOPWORDS = frozenset({"MR", "MRS", "MS", "DR", "PROF", "JR", "SR", "III", "THE", "AND", "VON", "VAN",
                        "DE", "DEL", "LA", "LE"})


#: standard tag -> whether its dictionary VR is SQ (for implicit-VR elements, which carry none)
_SEQUENCE_VR: dict[int, bool] = {}


def _is_sequence(raw, tag: int) -> bool:
    if raw.VR:
        return raw.VR == "SQ"
    if (tag >> 16) & 1:
        return False  # a private implicit-VR element: pydicom reads its sequences as DataElements
    known = _SEQUENCE_VR.get(tag)
    if known is None:
        try:
            known = dictionary_VR(tag) == "SQ"
        except KeyError:
            known = False
        _SEQUENCE_VR[tag] = known  # bounded by the standard dictionary
    return known


def _patient_values(ds: Dataset, decoded: dict[int, DataElement]) -> Iterator[tuple[int, str]]:
    """(tag, value text) for every patient-identifying element at any depth.

    Only those elements and sequences are decoded (without caching in ``ds``): decoding every
    element of a large header would cost more than de-identifying it. Decoded sequences go into
    ``decoded`` (keyed by the id of the raw element) for a caller that walks them again.
    """
    for tag, raw in ds.items():
        wanted = tag in _PATIENT_TAGS
        if not wanted and not _is_sequence(raw, tag):
            continue
        if isinstance(raw, DataElement):
            elem = raw
        else:
            elem = convert_raw_data_element(raw, encoding=ds._character_set, ds=ds)
            if elem.VR == "SQ":
                decoded[id(raw)] = elem
        if elem.VR == "SQ":
            for item in elem.value or ():
                yield from _patient_values(item, decoded)
        elif wanted and elem.value not in (None, "", b""):
            values = elem.value if elem.VM > 1 else [elem.value]
            for v in values:
                text = v.decode("latin-1", "replace") if isinstance(v, bytes) else str(v)
                if text.strip():
                    yield int(tag), text.strip()


def date_forms(da: str) -> list[str]:
    """A DA value in the formats people write dates in."""
    if len(da) != 8 or not da.isdigit():
        return [da]
    y, m, d = da[:4], da[4:6], da[6:]
    return [da, f"{y}-{m}-{d}", f"{d}/{m}/{y}", f"{m}/{d}/{y}", f"{d}.{m}.{y}", f"{d}-{m}-{y}",
            f"{y}/{m}/{d}"]


def _name_forms(pn: str) -> list[str]:
    """A PN value whole, its components, and 'given family' / 'family, given' orders.

    Components are not split further on spaces: single words of a multi-word component
    ("Name" of "Last Name") are too common to search for.
    """
    forms = [pn]
    for group in pn.split("="):
        parts = [p.strip() for p in group.split("^") if p.strip()]
        forms += parts
        if len(parts) >= 2:
            forms += [f"{parts[1]} {parts[0]}", f"{parts[0]}, {parts[1]}", f"{parts[0]} {parts[1]}"]
    return forms


def identifying_strings(ds: Dataset, *, decoded: dict[int, DataElement] | None = None) -> list[str]:
    """The strings that identify the patient of ``ds``, longest first.

    Names (whole, each part, common orders), IDs and other IDs, the birth date in common formats,
    addresses, telephone numbers and the accession number, from any depth. Strings shorter than
    :data:`MIN_LENGTH` and name titles are left out (they would match everywhere).

    Parameters
    ----------
    ds:
        The original (not de-identified) dataset.
    decoded:
        Optional: receives the sequences decoded on the way (id of the raw element -> decoded
        element), so that a de-identifier walking ``ds`` next need not decode them again.
    """
    return list(identifying_sources(ds, decoded=decoded))


def identifying_sources(ds: Dataset, *, decoded: dict[int, DataElement] | None = None) -> dict[str, str]:
    """:func:`identifying_strings`, each with the attribute it came from (its keyword; several joined
    by ``/`` when more than one holds it), so that a leak can be named by its attribute, never its value."""
    found: dict[str, set[str]] = {}
    for tag, text in _patient_values(ds, {} if decoded is None else decoded):
        if tag in _COARSE_TAGS:
            continue  # a country is not identifying on its own, and would match everywhere
        if tag in _NAME_TAGS:
            forms = _name_forms(text)
        elif tag in _DATE_TAGS:
            forms = date_forms(text)
        else:
            forms = [text]
        for form in forms:
            found.setdefault(form.strip(), set()).add(keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})")
    keep = {
        f for f in found
        if len(f) >= MIN_LENGTH and f.upper() not in _STOPWORDS and any(c.isalnum() for c in f)
    }
    return {f: "/".join(sorted(found[f])) for f in sorted(keep, key=lambda s: (-len(s), s))}


def phi_pattern(strings: Iterable[str]) -> re.Pattern[str] | None:
    """One case-insensitive regex matching any of ``strings`` as a whole word; None if empty."""
    strings = sorted(set(strings), key=len, reverse=True)
    if not strings:
        return None
    alternation = "|".join(re.escape(s) for s in strings)
    return re.compile(rf"(?<![0-9A-Za-z])(?:{alternation})(?![0-9A-Za-z])", re.IGNORECASE)


_EMAIL = r"[\w.+-]+@[\w-]+\.[\w.]+"
#: what else free text must not carry: dates, long digit runs (IDs, phone numbers), e-mail addresses
_GENERIC_PHI = re.compile(
    r"\b\d{1,4}[-./]\d{1,2}[-./]\d{1,4}\b"  # dates written with separators
    r"|\d{5,}"  # MRNs, phone numbers, compact dates
    rf"|{_EMAIL}",  # e-mail addresses
)
#: contact details a value must not carry where numbers are data: a phone number written as one
#: (a leading + or separators between 7+ digits; a bare number is a measurement) or an e-mail
CONTACT_SHAPES = {
    "phone": re.compile(r"(?<![\w.])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,5}\)[\s.-]?|\d{2,5}[\s.-])\d{2,4}[\s.-]?\d{2,5}(?![\w.])"),
    "e-mail": re.compile(_EMAIL),
}


def contact_shapes(text: str) -> list[str]:
    """The kinds of contact detail (``"phone"``, ``"e-mail"``) that ``text`` holds."""
    return [kind for kind, pattern in CONTACT_SHAPES.items() if pattern.search(text) and _enough_digits(kind, text)]


_DATE_SHAPE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4}")


def _enough_digits(kind: str, text: str) -> bool:
    if kind != "phone":
        return True
    match = CONTACT_SHAPES["phone"].search(text).group()
    return sum(c.isdigit() for c in match) >= 7 and not _DATE_SHAPE.fullmatch(match)


def scrub_text(text: str, pattern: re.Pattern[str] | None) -> str:
    """Remove the patient's identifying strings and generic PHI shapes from free text.

    This is the "C" (clean) action for descriptors: the words that remain keep their meaning
    ("CT HEAD W/O CONTRAST" stays) while names, IDs, dates, phone numbers and e-mail addresses go.
    """
    if pattern is not None:
        text = pattern.sub("", text)
    text = _GENERIC_PHI.sub("", text)
    return re.sub(r"\s{2,}", " ", text).strip()

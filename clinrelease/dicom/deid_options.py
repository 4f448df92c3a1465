"""The PS3.15 Annex E options clinrelease understands, their CID 7050 codes, and action resolution."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Iterable, Mapping

from clinrelease.dicom.annex_e import OPTION_COLUMNS, AnnexERow
from clinrelease.errors import ConfigError

#: option name -> (CID 7050 code value, code meaning); 113100 is the Basic Profile itself
OPTION_CODES: dict[str, tuple[str, str]] = {
    "clean_pixel_data": ("113101", "Clean Pixel Data Option"),
    "clean_recognizable_visual_features": ("113102", "Clean Recognizable Visual Features Option"),
    "clean_graphics": ("113103", "Clean Graphics Option"),
    "clean_structured_content": ("113104", "Clean Structured Content Option"),
    "clean_descriptors": ("113105", "Clean Descriptors Option"),
    "retain_long_full_dates": (
        "113106",
        "Retain Longitudinal Temporal Information Full Dates Option",
    ),
    "retain_long_modified_dates": (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    "retain_patient_characteristics": ("113108", "Retain Patient Characteristics Option"),
    "retain_device_identity": ("113109", "Retain Device Identity Option"),
    "retain_uids": ("113110", "Retain UIDs Option"),
    "retain_safe_private": ("113111", "Retain Safe Private Option"),
    "retain_institution_identity": ("113112", "Retain Institution Identity Option"),
}
BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")

#: every option name, in CID 7050 code order
OPTIONS: tuple[str, ...] = tuple(sorted(OPTION_CODES, key=lambda o: OPTION_CODES[o][0]))

assert set(OPTION_COLUMNS) <= set(OPTIONS)


def validate_options(options: Iterable[str]) -> tuple[str, ...]:
    """Check option names and return them de-duplicated in code order.

    Raises
    ------
    ConfigError
        For an unknown option, or both longitudinal-temporal options at once.
    """
    chosen = set(options)
    unknown = sorted(chosen - set(OPTIONS))
    if unknown:
        raise ConfigError(
            f"unknown de-identification option(s) {', '.join(unknown)}; "
            f"known: {', '.join(OPTIONS)}"
        )
    if {"retain_long_full_dates", "retain_long_modified_dates"} <= chosen:
        raise ConfigError(
            "retain_long_full_dates and retain_long_modified_dates exclude each other: pick one"
        )
    return tuple(o for o in OPTIONS if o in chosen)


def effective_action(row: AnnexERow, options: tuple[str, ...]) -> str:
    """The action for ``row`` under ``options``.

    An option's action replaces the Basic Profile's. Where two chosen options name different
    actions for one row the more protective wins (C over K); in the 2024b table the only
    such pairs are the two longitudinal options, which :func:`validate_options` forbids together.
    """
    named = [row.options[o] for o in options if o in row.options]
    if not named:
        return row.basic
    return "C" if "C" in named else named[0]


def resolve_combined(action: str) -> str:
    """Resolve a combined code to the one applied.

    ``X/Z``, ``X/D``, ``Z/D`` and ``X/Z/D`` mean "remove unless Z or D is needed for IOD
    conformance". Without the IOD's attribute types at hand, clinrelease keeps the attribute present
    with the weakest value that is conformant for both Type 1 and Type 2: D where D is allowed,
    else Z, so that de-identification never adds an IOD error. ``X/Z/U*`` (reference sequences)
    keeps the sequence and replaces the UIDs inside it.
    """
    if "/" not in action:
        return action
    if action == "X/Z/U*":
        return "U*"
    return "D" if "D" in action else "Z"


# ---------------------------------------------------------------------- IOD conformance

#: SOP classes whose IOD has the Presentation State Identification, Structured Display or
#: Volumetric Presentation State Identification module (usage M): Presentation Creation Date and
#: Time are Type 1 there (PS3.3 C.11.10, C.11.16, C.11.23; from highdicom's copy of PS3.3)
PRESENTATION_SOP_CLASSES = frozenset(
    ["1.2.840.10008.5.1.4.1.1.11." + str(n) for n in range(1, 13)]
    + ["1.2.840.10008.5.1.4.1.1.131", "1.2.840.10008.5.1.4.1.1.9.100.1",
       "1.2.840.10008.5.1.4.1.1.9.100.2"]
)
#: SOP classes whose IOD has the Timezone module (usage M): Timezone Offset From UTC is Type 1
TIMEZONE_SOP_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.1.88.72"})  # Simplified Adult Echo SR
#: SOP classes whose IOD has the Enhanced PET Isotope module (Radiopharmaceutical Start DateTime
#: is Type 1 in its items)
ENHANCED_PET_SOP_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.1.130"})

_SPECIES = frozenset({0x00102201, 0x00102202})  # Patient Species Description / Code Sequence


@dataclass(frozen=True)
class IodRequirement:
    """An attribute that Table E.1-1 removes (X) but an IOD requires in some objects.

    PS3.15 E.1.1 lets a de-identifier keep an attribute empty or with a dummy value where removing
    it would break the IOD (that is what the combined X/Z and X/D codes say); the table's plain X
    rows do not say it, so these are the cases where a plain X contradicts PS3.3 (found by
    checking every X row against highdicom's machine-readable copy of PS3.3's modules, see
    ``tests/dicom/test_deid_iod.py``).

    Attributes
    ----------
    tag:
        The attribute (an int tag).
    action:
        ``"Z"`` (Type 2/2C: present and empty) or ``"D"`` (Type 1: a dummy value).
    condition:
        When the IOD requires it, as PS3.3 says.
    within:
        The sequence whose items hold the attribute; None for the top-level dataset.
    species:
        The condition is "the patient is an animal" (Patient Species Description or Code Sequence
        present in the same dataset).
    sop_classes:
        The condition is "the object is of one of these SOP classes" (empty: always).
    dummy:
        The dummy value for D where the VR's default dummy would be invalid for the attribute.
    """

    tag: int
    action: str
    condition: str
    within: int | None = None
    species: bool = False
    sop_classes: frozenset[str] = frozenset()
    dummy: str | None = None

    def applies(self, keys: Collection[int], sop_class: str) -> bool:
        """Whether a dataset holding ``keys`` in an object of ``sop_class`` requires it."""
        if self.species:
            return not _SPECIES.isdisjoint(keys)
        return not self.sop_classes or sop_class in self.sop_classes

    @property
    def reason(self) -> str:
        """What :class:`~clinrelease.dicom.deid.HeaderChange` records for the override."""
        kept = "kept empty" if self.action == "Z" else "kept with a dummy value"
        return f"Table E.1-1 says X; {kept}: {self.condition}"


_ANIMAL = "Type 2C in the Patient module when the patient is an animal (PS3.3 C.7.1.1)"
_PRESENTATION = "Type 1 in the Presentation State / Structured Display identification modules"


def _in_items(keyword: str, kind: str) -> str:
    return f"Type {kind} in the items of {keyword}"


def _nested(tag: int, action: str, within: int, keyword: str, **kw) -> IodRequirement:
    return IodRequirement(tag, action, _in_items(keyword, "2" if action == "Z" else "1"),
                          within=within, **kw)


#: attributes Table E.1-1 removes that their IOD requires, by (tag, enclosing sequence or None)
IOD_REQUIREMENTS: Mapping[tuple[int, int | None], IodRequirement] = {
    (r.tag, r.within): r
    for r in (
        # top level
        IodRequirement(0x00102297, "Z", _ANIMAL, species=True),  # Responsible Person
        IodRequirement(0x00102299, "Z", _ANIMAL, species=True),  # Responsible Organization
        IodRequirement(0x00700082, "D", _PRESENTATION, sop_classes=PRESENTATION_SOP_CLASSES),
        IodRequirement(0x00700083, "D", _PRESENTATION, sop_classes=PRESENTATION_SOP_CLASSES),
        IodRequirement(0x00080201, "D", "Type 1 in the Timezone module (Simplified Adult Echo SR)",
                       sop_classes=TIMEZONE_SOP_CLASSES, dummy="+0000"),
        # inside sequences that the profile keeps (their items are de-identified one by one)
        _nested(0x300A0794, "Z", 0x300A078C, "Referenced Patient Setup Photo Sequence"),
        _nested(0x300A078E, "Z", 0x300A0790, "Patient Treatment Preparation Procedure Sequence"),
        _nested(0x30020123, "Z", 0x3002011F, "Position Acquisition Template Identification Sequence"),
        _nested(0x30020121, "D", 0x3002011F, "Position Acquisition Template Identification Sequence"),
        _nested(0x00181078, "D", 0x00540016, "Radiopharmaceutical Information Sequence (Enhanced PET)",
                sop_classes=ENHANCED_PET_SOP_CLASSES),
        _nested(0x0040100A, "Z", 0x0072000C, "Hanging Protocol Definition Sequence"),
        _nested(0x00401001, "Z", 0x0040A370, "Referenced Request Sequence"),
        _nested(0x0008103E, "D", 0x3006004C, "Source Series Information Sequence"),
        _nested(0x300A0216, "Z", 0x30080100, "Recorded Source Sequence"),
        _nested(0x00081030, "Z", 0x00080423, "Inventoried Studies Sequence"),
    )
}


def iod_requirement(
    tag: int, within: int | None, keys: Collection[int], sop_class: str
) -> IodRequirement | None:
    """The requirement that keeps an attribute the table removes, if one applies.

    Parameters
    ----------
    tag:
        The attribute whose resolved action is X.
    within:
        The tag of the sequence whose item holds it; None at the top level.
    keys:
        The tags of the dataset (or item) holding it (for conditions on other attributes).
    sop_class:
        The object's SOP Class UID.
    """
    rule = IOD_REQUIREMENTS.get((tag, within))
    return rule if rule is not None and rule.applies(keys, sop_class) else None

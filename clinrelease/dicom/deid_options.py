"""The PS3.15 Annex E options clinrelease understands, their CID 7050 codes, and action resolution."""

from __future__ import annotations

from typing import Iterable

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

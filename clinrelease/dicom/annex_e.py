"""PS3.15 Annex E, Table E.1-1 (Application Level Confidentiality Profile Attributes).

The table ships inside the package as ``clinrelease/data/annex_e_2024b.json`` (2024b edition,
621 rows), converted once from the innolitics/dicom-standard extraction with
:func:`convert_innolitics`. :func:`load_table` reads it and answers, for any tag, which row governs
it: an exact tag, a repeating-group pattern such as ``(50xx,xxxx)`` or ``(60xx,3000)``, or the
private-attributes row for odd groups.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Iterable, Mapping

#: edition of PS3.15 the shipped table comes from; recorded in every output
EDITION = "2024b"

#: the option names clinrelease uses, mapped to the column keys of the innolitics extraction
OPTION_COLUMNS: Mapping[str, str] = {
    "retain_safe_private": "rtnSafePrivOpt",
    "retain_uids": "rtnUIDsOpt",
    "retain_device_identity": "rtnDevIdOpt",
    "retain_institution_identity": "rtnInstIdOpt",
    "retain_patient_characteristics": "rtnPatCharsOpt",
    "retain_long_full_dates": "rtnLongFullDatesOpt",
    "retain_long_modified_dates": "rtnLongModifDatesOpt",
    "clean_descriptors": "cleanDescOpt",
    "clean_structured_content": "cleanStructContOpt",
    "clean_graphics": "cleanGraphOpt",
}

#: every action code Table E.1-1 uses in its Basic Profile column
ACTION_CODES = ("D", "Z", "X", "K", "C", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*")

#: the row that governs every private (odd-group) attribute
PRIVATE_PATTERN = "(gggg,eeee) where gggg is odd"

_DATA_FILE = f"annex_e_{EDITION}.json"


@dataclass(frozen=True)
class AnnexERow:
    """One row of Table E.1-1.

    Attributes
    ----------
    tag:
        ``"(gggg,eeee)"`` in lower case; ``x`` marks a repeating digit (``"(50xx,xxxx)"``), and the
        private row is :data:`PRIVATE_PATTERN`.
    name:
        The attribute name as the standard spells it.
    basic:
        The Basic Profile action code (one of :data:`ACTION_CODES`).
    options:
        Option name -> action code, only for the options that change this row's action.
    in_std_composite_iod:
        Whether the attribute is used in a standard composite IOD (column "In Std. Comp. IOD").
    """

    tag: str
    name: str
    basic: str
    options: Mapping[str, str] = field(default_factory=dict)
    in_std_composite_iod: bool = True

    @property
    def is_pattern(self) -> bool:
        """True for repeating-group and private rows (they match many tags)."""
        return "x" in self.tag or self.tag == PRIVATE_PATTERN


@dataclass(frozen=True)
class AnnexETable:
    """Table E.1-1 with fast lookup by integer tag.

    Attributes
    ----------
    edition:
        The PS3.15 edition, e.g. ``"2024b"``.
    source, licence:
        Where the machine-readable copy comes from and under which licence.
    rows:
        All rows, in the standard's order.
    """

    edition: str
    source: str
    licence: str
    rows: tuple[AnnexERow, ...]
    _by_tag: Mapping[int, AnnexERow] = field(repr=False, compare=False, default_factory=dict)
    _patterns: tuple[tuple[int, int, AnnexERow], ...] = field(repr=False, compare=False, default=())
    _private: AnnexERow | None = field(repr=False, compare=False, default=None)

    def __len__(self) -> int:
        return len(self.rows)

    def lookup(self, tag: int) -> AnnexERow | None:
        """Return the row governing ``tag`` (an int ``0xggggeeee``), or None if no row does.

        Exact rows win over repeating-group patterns; odd groups resolve to the private row.
        """
        row = self._by_tag.get(tag)
        if row is not None:
            return row
        if (tag >> 16) & 1:
            return self._private
        for mask, value, pattern_row in self._patterns:
            if tag & mask == value:
                return pattern_row
        return None


def _pattern_mask(tag: str) -> tuple[int, int]:
    """Mask and value for a tag text with ``x`` wildcards, e.g. ``(60xx,3000)``."""
    digits = tag.strip("()").replace(",", "")
    mask = int("".join("0" if c == "x" else "f" for c in digits), 16)
    value = int("".join("0" if c == "x" else c for c in digits), 16)
    return mask, value


def _build(edition: str, source: str, licence: str, rows: Iterable[AnnexERow]) -> AnnexETable:
    rows = tuple(rows)
    by_tag: dict[int, AnnexERow] = {}
    patterns: list[tuple[int, int, AnnexERow]] = []
    private: AnnexERow | None = None
    for row in rows:
        if row.tag == PRIVATE_PATTERN:
            private = row
        elif "x" in row.tag:
            mask, value = _pattern_mask(row.tag)
            patterns.append((mask, value, row))
        else:
            by_tag[int(row.tag.strip("()").replace(",", ""), 16)] = row
    # more specific patterns first: (60xx,3000) before (50xx,xxxx)
    patterns.sort(key=lambda p: -bin(p[0]).count("1"))
    return AnnexETable(edition, source, licence, rows, by_tag, tuple(patterns), private)


def table_from_json(data: Mapping) -> AnnexETable:
    """Build an :class:`AnnexETable` from the package's JSON structure."""
    rows = (
        AnnexERow(
            tag=r["tag"],
            name=r["name"],
            basic=r["basic"],
            options=dict(r.get("options", {})),
            in_std_composite_iod=bool(r.get("in_std_composite_iod", True)),
        )
        for r in data["rows"]
    )
    return _build(data["edition"], data["source"], data["licence"], rows)


@lru_cache(maxsize=1)
def load_table() -> AnnexETable:
    """Load the shipped Table E.1-1 (edition :data:`EDITION`).

    Returns
    -------
    AnnexETable
        The 621 rows of the 2024b edition with tag lookup.
    """
    text = resources.files("clinrelease").joinpath("data", _DATA_FILE).read_text("utf-8")
    return table_from_json(json.loads(text))


def convert_innolitics(source_json: Path, out_path: Path, *, source: str, licence: str) -> int:
    """Convert the innolitics/dicom-standard extraction into the package's data file.

    Parameters
    ----------
    source_json:
        ``confidentiality_profile_attributes.json`` from innolitics/dicom-standard.
    out_path:
        Where to write ``annex_e_<edition>.json``.
    source, licence:
        Provenance text recorded in the file.

    Returns
    -------
    int
        The number of rows written.
    """
    columns = {v: k for k, v in OPTION_COLUMNS.items()}
    rows = []
    for r in json.loads(Path(source_json).read_text("utf-8")):
        tag = r["tag"].lower()
        if "where" in tag:
            tag = PRIVATE_PATTERN
        rows.append(
            {
                "tag": tag,
                "name": r["name"],
                "basic": r["basicProfile"],
                "in_std_composite_iod": r.get("stdCompIOD") == "Y",
                "options": {columns[k]: v for k, v in r.items() if k in columns},
            }
        )
    doc = {"edition": EDITION, "source": source, "licence": licence, "rows": rows}
    Path(out_path).write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", "utf-8")
    return len(rows)

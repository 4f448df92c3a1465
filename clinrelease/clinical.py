"""De-identification of clinical tables (CSV, one row per patient or visit).

A profile gives one rule per column:

``keep``
    released as is;
``drop``
    the column is left out of the release;
``pseudonymize``
    replaced by the patient pseudonym, the same function DICOM Patient ID uses
    (:func:`clinrelease.dicom.keyed.pseudonym`), so the released table joins the released DICOM;
``date_shift``
    dates moved by the patient's shift, the same per-patient shift as the DICOM dates
    (ISO ``YYYY-MM-DD[...]`` or DICOM ``YYYYMMDD``; written back in the form they came in);
``generalize_age`` (or ``generalize_age:N``)
    ages over 89 become ``"90+"``; with ``N``, other ages become bands of N years (``"40-49"``);
``free_text_drop``
    the column stays (so the table keeps its schema) but every value is emptied.

Columns the rules do not name are dropped and reported. The ID column is always pseudonymized.

What else the released table is held to:

* a ``keep`` cell that holds one of the batch's identifying strings (a patient's name or birth date
  from a header, an input's file name), a raw ID of this table (the MRN the table pseudonymizes),
  a phone number or an e-mail address is emptied, and the report lists it by line, column and
  kind, never by value;
* a released cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is
  prefixed with ``'`` (the OWASP rule against CSV injection: a spreadsheet would run it as a
  formula); plain numbers such as ``-3`` or ``+1.5`` are left as they are;
* with ``released_ids``, only rows of patients with a released video are released; rows whose ID
  matches no video of the input, and rows whose patient's videos were all quarantined, are withheld
  and counted in the report.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from clinrelease.dicom import keyed
from clinrelease.dicom.phi_strings import contact_shapes
from clinrelease.errors import ConfigError, InputError
from clinrelease.verify.leaks import MIN_ID, text_scanner

RULES = ("keep", "drop", "pseudonymize", "date_shift", "generalize_age", "free_text_drop")
#: first characters that make a spreadsheet read a cell as a formula (OWASP CSV injection)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
#: ages above this are released as "90+" (HIPAA Safe Harbor)
MAX_EXACT_AGE = 89


@dataclass(frozen=True)
class ColumnRule:
    """A parsed column rule: its name and, for ``generalize_age``, the band width (0 = none)."""

    rule: str
    band: int = 0


@dataclass
class TableResult:
    """A de-identified table.

    Attributes
    ----------
    columns:
        Released column names, in input order.
    rows:
        Released rows (column -> text).
    dropped_columns:
        Columns left out: by a ``drop`` rule or because no rule named them.
    report:
        Counts for the audit record: rows, per-rule columns, unknown columns, values changed,
        cells withheld (line, column, kind), formula cells neutralized, rows withheld.
    identifying_strings:
        The table's raw IDs (ID and ``pseudonymize`` columns): never released, so the release's
        texts are scanned for them. Site only.
    """

    columns: list[str]
    rows: list[dict[str, str]]
    dropped_columns: list[str]
    report: dict = field(default_factory=dict)
    identifying_strings: list[str] = field(default_factory=list)


def parse_rule(column: str, rule: str | Mapping) -> ColumnRule:
    """Parse ``"keep"``, ``"generalize_age:10"`` or ``{"rule": "generalize_age", "band": 10}``.

    Raises
    ------
    ConfigError
        An unknown rule or a bad band width.
    """
    if isinstance(rule, Mapping):
        name, band = str(rule.get("rule", "")), rule.get("band", 0)
    else:
        name, _, band = str(rule).partition(":")
    name = name.strip()
    if name not in RULES:
        raise ConfigError(f"column {column!r}: unknown rule {name!r}; known: {', '.join(RULES)}")
    try:
        band_width = int(band or 0)
    except ValueError:
        raise ConfigError(f"column {column!r}: band width {band!r} is not a whole number") from None
    if band_width < 0 or (band_width and name != "generalize_age"):
        raise ConfigError(f"column {column!r}: a band width only applies to generalize_age (> 0)")
    return ColumnRule(name, band_width)


def generalize_age(value: str, band: int = 0) -> str:
    """``"93"`` -> ``"90+"``; with ``band=10``, ``"47"`` -> ``"40-49"``; empty stays empty.

    Accepts whole or decimal years and DICOM ages such as ``"047Y"``.

    Raises
    ------
    ValueError
        The value is not an age.
    """
    text = value.strip()
    if not text:
        return ""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*[Yy]?", text)
    if m is None:
        raise ValueError(f"{value!r} is not an age in years")
    age = int(float(m.group(1)))
    if age > MAX_EXACT_AGE:
        return "90+"
    if band:
        low = age - age % band
        return f"{low}-{min(low + band - 1, MAX_EXACT_AGE)}"
    return str(age)


def shift_table_date(value: str, days: int) -> str:
    """Shift an ISO or DICOM date by ``days``, keeping its form; empty stays empty.

    Raises
    ------
    ValueError
        The value is not a date in either form.
    """
    text = value.strip()
    if not text:
        return ""
    shifted = keyed.shift_date(text, days) if text.isdigit() else keyed.shift_iso_date(text, days)
    if shifted is None:
        raise ValueError(f"{value!r} is not a date (YYYY-MM-DD or YYYYMMDD)")
    return shifted


def deidentify_table(
    csv_path: str | Path,
    rules: Mapping[str, str | Mapping],
    key: bytes,
    id_column: str,
    date_shift_for: Callable[[str], int] | None = None,
    *,
    phi: Iterable[str] = (),
    known_ids: Collection[str] | None = None,
    released_ids: Collection[str] | None = None,
) -> TableResult:
    """De-identify one clinical CSV table.

    Parameters
    ----------
    csv_path:
        The input CSV (UTF-8, header row first).
    rules:
        Column -> rule (see the module docstring).
    key:
        The release key (pseudonyms and, by default, date shifts derive from it).
    id_column:
        The column holding the original patient ID (the DICOM Patient ID).
    date_shift_for:
        Patient ID -> shift in days; defaults to the key's per-patient shift, the one the DICOM
        de-identifier applies.
    phi:
        The batch's identifying strings: a ``keep`` cell holding one is withheld.
    known_ids, released_ids:
        Pseudonyms of every item of the input, and of the released ones; with ``released_ids``
        only rows of a released patient are released (the others are counted).

    Returns
    -------
    TableResult

    Raises
    ------
    InputError
        The file cannot be read, has no header, lacks the ID column, has a row with the wrong
        number of fields, an empty ID, or a value its rule cannot handle (the message names the
        line and column).
    ConfigError
        A bad rule, or a rule that would release the ID column as is.
    """
    path = Path(csv_path)
    parsed = {col: parse_rule(col, r) for col, r in rules.items()}
    if id_column in parsed and parsed[id_column].rule not in ("pseudonymize", "drop"):
        raise ConfigError(
            f"column {id_column!r} is the patient ID: its rule must be pseudonymize (or drop)"
        )
    parsed.setdefault(id_column, ColumnRule("pseudonymize"))
    shift_for = date_shift_for or (lambda pid: keyed.date_shift_days(key, pid))

    header, records = _read_csv(path)
    if id_column not in header:
        raise InputError(f"has no ID column {id_column!r} (columns: {', '.join(header)})", path)
    unknown = [c for c in header if c not in parsed]
    released = [c for c in header if c in parsed and parsed[c].rule != "drop"]
    dropped = [c for c in header if c not in released]

    # a raw ID shorter than the leak scan's shortest (a study's subject number "12") would withhold
    # every score that happens to equal it
    raw_ids = sorted({
        record[c].strip() for _, record in records for c in header
        if c in parsed and parsed[c].rule == "pseudonymize" and len(record[c].strip()) >= MIN_ID
    })  # fmt: skip
    scan = text_scanner([*phi, *raw_ids])
    rows: list[dict[str, str]] = []
    changed = neutralized = 0
    withheld_cells: list[dict] = []
    no_video = not_released = 0
    for line_no, record in records:
        pid = record[id_column].strip()
        if not pid:
            raise InputError(f"line {line_no}: column {id_column!r} (patient ID) is empty", path)
        out: dict[str, str] = {}
        row_withheld: list[dict] = []
        row_neutralized = row_changed = 0
        for col in released:  # every row is checked, also one that is withheld below
            rule = parsed[col]
            value = record[col]
            try:
                new = _apply_rule(rule, value, key, pid, shift_for)
            except ValueError as exc:
                raise InputError(f"line {line_no}, column {col!r}: {exc}", path) from None
            if rule.rule == "keep" and (found := _identifying_kinds(new, scan)):
                row_withheld.append({"line": line_no, "column": col, "found": found})
                new = ""
            if is_formula(new):
                new, row_neutralized = "'" + new, row_neutralized + 1
            row_changed += new != value
            out[col] = new
        pseudonym = keyed.pseudonym(key, pid)
        if released_ids is not None and pseudonym not in released_ids:
            if known_ids is not None and pseudonym not in known_ids:
                no_video += 1
            else:
                not_released += 1
            continue
        rows.append(out)
        withheld_cells += row_withheld
        neutralized += row_neutralized
        changed += row_changed

    report = {
        "rows": len(rows),
        "columns_released": released,
        "columns_dropped": [c for c in dropped if c not in unknown],
        "unknown_columns_dropped": unknown,
        "rules": {c: parsed[c].rule for c in header if c in parsed},
        "values_changed": changed,
        "cells_withheld": withheld_cells,
        "formula_cells_neutralized": neutralized,
        "rows_withheld_no_video": no_video,
        "rows_withheld_video_not_released": not_released,
    }
    return TableResult(released, rows, dropped, report, identifying_strings=raw_ids)


def is_formula(value: str) -> bool:
    """Would a spreadsheet run ``value`` as a formula? (A plain number would not.)"""
    return value.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(value)


def _identifying_kinds(value: str, scan: Callable[[str], list]) -> list[str]:
    """What identifying data a kept cell holds (kinds only: the report never shows the value)."""
    return sorted({leak.kind for leak in scan(value)} | set(contact_shapes(value)))


def _apply_rule(
    rule: ColumnRule, value: str, key: bytes, pid: str, shift_for: Callable[[str], int]
) -> str:
    if rule.rule == "keep":
        return value
    if rule.rule == "pseudonymize":
        return keyed.pseudonym(key, value) if value.strip() else ""
    if rule.rule == "date_shift":
        return shift_table_date(value, shift_for(pid))
    if rule.rule == "generalize_age":
        return generalize_age(value, rule.band)
    return ""  # free_text_drop


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and (line number, row) pairs; InputError for anything malformed."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if not header or not any(h.strip() for h in header):
                raise InputError("is empty or has no header row", path)
            header = [h.strip() for h in header]
            duplicates = sorted({h for h in header if header.count(h) > 1})
            if duplicates or "" in header:
                raise InputError(
                    f"header row has duplicate or empty column names: {duplicates or ['']}", path
                )
            records = []
            for row in reader:
                if not row:
                    continue
                if len(row) != len(header):
                    raise InputError(
                        f"line {reader.line_num}: {len(row)} fields, the header has {len(header)}",
                        path,
                    )
                records.append((reader.line_num, dict(zip(header, row))))
    except FileNotFoundError:
        raise InputError("no such file", path) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"is not UTF-8 text (byte {exc.start})", path) from None
    except csv.Error as exc:
        raise InputError(f"is not valid CSV (line {reader.line_num}): {exc}", path) from None
    return header, records


def write_table(result: TableResult, path: str | Path) -> Path:
    """Write the released table as UTF-8 CSV (header + rows, ``\\n`` line ends)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["'" + c if is_formula(c) else c for c in result.columns])
        writer.writerows([row[c] for c in result.columns] for row in result.rows)
    return path

"""The released clinical table: validated before any item runs, de-identified by the profile's column
rules at the merge, rows of released patients only (:mod:`clinrelease.clinical`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clinrelease.release.record import ItemRecord, Status


def _clinical_rules(profile) -> dict[str, Any]:
    settings = profile.clinical
    rules: dict[str, Any] = {}
    for column, rule in settings.columns.items():
        rules[column] = f"generalize_age:{settings.age_band_years}" if rule == "generalize_age" and settings.age_band_years else rule
    return rules


def validate_clinical(path: Path, key: bytes, profile) -> None:
    """Read and de-identify the clinical table once before any item runs: a table that cannot be
    released is a usage error now (InputError naming the file, line and problem), not at merge."""
    from clinrelease.clinical import deidentify_table

    deidentify_table(path, _clinical_rules(profile), key, profile.clinical.id_column)


def clinical_table(meta: dict[str, Any], key: bytes, profile, records: list[ItemRecord]):
    """The clinical table by the profile's column rules: rows of released patients only, kept
    cells scanned for the batch's identifying strings (see :mod:`clinrelease.clinical`)."""
    if not meta.get("clinical"):
        return None
    from clinrelease.clinical import deidentify_table
    from clinrelease.verify.released_text import batch_identifying_strings

    return deidentify_table(
        Path(meta["clinical"]), _clinical_rules(profile), key, profile.clinical.id_column,
        phi=batch_identifying_strings(r.to_dict() for r in records),
        known_ids={r.pseudonym for r in records if r.pseudonym},
        released_ids={r.pseudonym for r in records if r.pseudonym and r.status == Status.RELEASED},
    )  # fmt: skip


def clinical_summary(table) -> dict[str, Any] | None:
    if table is None:
        return None
    return {"file": "clinical/clinical.csv", "columns": table.columns, "dropped_columns": table.dropped_columns, **table.report}


def write_clinical(table, root: Path) -> None:
    """The released table into ``root/clinical/`` (root is the next release, built outside OUT)."""
    if table is None:
        return
    from clinrelease.clinical import write_table

    target = root / "clinical" / "clinical.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    write_table(table, target)

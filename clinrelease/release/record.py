"""One item's record: what happened to it, as the merge, the report, the audit log and the CLI read it.

:func:`clinrelease.release.item.process_item` returns an :class:`ItemRecord` and saves it as JSON under
``WORK/records/ITEM.json`` (the site's working state: a later run resumes from it, the merge reads it
back). The JSON keys are the field names; fields that were never set are left out of the file, as
they were when the record was a dict.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clinrelease.errors import EXIT_ITEM_ERRORS, EXIT_OK, EXIT_QUARANTINED
from clinrelease.files import write_json_atomic

if TYPE_CHECKING:
    from clinrelease.release.paths import ReleasePaths


class Status(StrEnum):
    """An item's outcome (the words are what the record, summary.json and the CLI show)."""

    RELEASED = "released"
    QUARANTINED = "quarantined"
    #: the input could not be read or a stage failed: the item is quarantined, the run goes on (exit 3)
    ERROR = "error"


#: fields every record file carries, set or not
_ALWAYS = frozenset({"item_id", "input", "kind", "status", "reasons", "output", "resume_digest", "input_sha256", "input_commitment"})


@dataclass
class ItemRecord:
    """The (unsigned) record of one item."""

    item_id: str
    #: the input's path relative to its input folder (site only: never released)
    input: str
    kind: str
    resume_digest: str = ""
    #: internal only: the released audit log carries the keyed commitment instead
    input_sha256: str = ""
    input_commitment: str = ""
    status: Status | None = None
    #: PHI-free sentences: what the release shows
    reasons: list[str] = field(default_factory=list)
    #: what the checks found, values included: the site's quarantine copy and internal log only
    reason_details: list[str] | None = None
    #: the release path (``data/...``) while released; None otherwise
    output: str | None = None
    output_uid: str | None = None
    output_sha256: str | None = None
    pseudonym: str | None = None
    container_metadata_keys: list[str] | None = None
    deid_options: list[str] | None = None
    header_changes: list[dict[str, Any]] | None = None
    #: the flat figures the checks judged (and the endpoint table)
    verification: dict[str, Any] | None = None
    #: the decision's rows: what ``audit verify`` re-checks
    audit_checks: list[dict[str, Any]] | None = None
    faces: dict[str, Any] | None = None
    series: dict[str, Any] | None = None
    #: the patient attributes' values (site only): the merge scans every released text for them
    identifying_strings: list[str] | None = None
    identifying_strings_count: int | None = None
    stage_seconds: dict[str, float] | None = None
    seconds: float | None = None
    escrow: dict[str, Any] | None = None
    quarantined_output: str | None = None
    #: set by the merge: the reasons and header changes as the release shows them
    released_reasons: list[str] | None = None
    released_header_changes: list[Any] | None = None
    #: this run found the item done already (not saved)
    resumed: bool = False
    #: keys of a record file this version does not know, kept as they were
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def released(self) -> bool:
        return self.status == Status.RELEASED

    @property
    def surrogate(self) -> dict[str, Any] | None:
        """The key's surrogate decision for this item's patient, when one was drawn."""
        return (self.faces or {}).get("surrogate")

    def to_dict(self) -> dict[str, Any]:
        """The record as its JSON file holds it."""
        out = {**self.extra}
        for f in dataclasses.fields(self):
            if f.name in ("extra", "resumed"):
                continue
            value = getattr(self, f.name)
            if value is not None or f.name in _ALWAYS:
                out[f.name] = value.value if isinstance(value, Status) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ItemRecord:
        known = {f.name for f in dataclasses.fields(cls)} - {"extra", "resumed"}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("status") is not None:
            values["status"] = Status(values["status"])
        return cls(**values, extra={k: v for k, v in data.items() if k not in known and k != "resumed"})

    def save(self, path: Path) -> None:
        # the item record is the site's working state, read back by the merge: compact JSON, and no
        # flush to disk (a record a crash has emptied reads as missing and its item is redone; the
        # released file it names is checked against its digest before anything is reused)
        write_json(path, self.to_dict(), indent=None, durable=False)

    def as_released(self) -> list[str]:
        """The reasons as the release shows them (after the merge's released-text scan).

        Reasons are built from PHI-free fields (check, attribute path, counts); what a check found
        (the value, the text read off a frame) is in ``reason_details``, the site's copy only.
        """
        return self.released_reasons if self.released_reasons is not None else self.reasons


def released_reasons(record: ItemRecord) -> list[str]:
    """An item's reasons as the release shows them (see :meth:`ItemRecord.as_released`)."""
    return record.as_released()


def count_statuses(records: Iterable[ItemRecord]) -> dict[str, int]:
    """How many items ended in each status (every status named, zero or not)."""
    counts = {s.value: 0 for s in Status}
    for r in records:
        counts[r.status.value] += 1
    return counts


@dataclass
class ReleaseSummary:
    """What a run or merge did, for the CLI to print."""

    output: Path
    quarantine: Path
    records: list[ItemRecord]
    finalized: bool
    report: Path | None = None
    gallery: dict[str, Any] | None = None

    @property
    def counts(self) -> dict[str, int]:
        return count_statuses(self.records)

    @property
    def exit_code(self) -> int:
        """3 when an input could not be read, else 1 when anything was quarantined, else 0."""
        counts = self.counts
        if counts[Status.ERROR]:
            return EXIT_ITEM_ERRORS
        return EXIT_QUARANTINED if counts[Status.QUARANTINED] else EXIT_OK


def plain(value: Any) -> Any:
    """JSON for what the stages hand back (numpy scalars and arrays, paths, dataclasses with to_dict)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


def write_json(path: Path, obj: Any, indent: int | None = 2, durable: bool = True) -> None:
    write_json_atomic(path, obj, default=plain, indent=indent, durable=durable)


def load_json(path: Path) -> dict[str, Any] | None:
    """A JSON file of the working state, or None when it is missing or unreadable (redone then)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def load_record(path: Path) -> ItemRecord | None:
    data = load_json(path)
    return None if data is None else ItemRecord.from_dict(data)


def load_records(paths: ReleasePaths, every: bool = False) -> list[ItemRecord]:
    """The item records of a release, in input order: those of the last run's input (``WORK/inputs.json``).

    A record whose input is no longer there (a withdrawn patient's video) is left out, so the next
    merge drops it from data/, the report and the signed log; ``every`` returns them all.
    """
    records = sorted((r for p in sorted(paths.records.glob("*.json")) if (r := load_record(p))), key=lambda r: r.input)
    return records if every else of_last_input(paths, records)


def of_last_input(paths: ReleasePaths, records: list[ItemRecord]) -> list[ItemRecord]:
    """Those of ``records`` whose items are in the last run's input (``WORK/inputs.json``; all of them without one)."""
    wanted = load_json(paths.work / "inputs.json")
    if wanted is None:
        return records
    ids = set(wanted.get("items", []))
    return [r for r in records if r.item_id in ids]

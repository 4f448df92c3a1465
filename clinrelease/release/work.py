"""What one item carries through its stages: the picklable context every worker gets, and the
item's scratch state (record, reasons, identifying strings) while its stages run."""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from clinrelease.crypto.kdf import derive_hex
from clinrelease.items import InputItem
from clinrelease.release.paths import ReleasePaths
from clinrelease.release.record import ItemRecord


@dataclass(frozen=True)
class ItemContext:
    """Everything :func:`clinrelease.release.item.process_item` needs, picklable so that it can travel to workers."""

    profile_name: str
    profile_source: str | None
    profile_digest: str
    release_key: bytes
    release_id: str
    paths: ReleasePaths
    escrow: Any = None  # an escrow session (clinrelease.crypto.escrow), or None
    input_root: Path | None = None
    #: where the patients' surrogate decisions are kept: the key folder (the work folder when None)
    choices_dir: Path | None = None

    def profile(self):
        """The resolved profile (loaded once per process)."""
        return _load_profile_cached(self.profile_source or self.profile_name)


_PROFILE_CACHE: dict[str, Any] = {}


def _load_profile_cached(name_or_path: str):
    from clinrelease.profiles import load_profile

    if name_or_path not in _PROFILE_CACHE:
        _PROFILE_CACHE[name_or_path] = load_profile(name_or_path)
    return _PROFILE_CACHE[name_or_path]


def resume_digest(ctx: ItemContext, input_sha256: str) -> str:
    """Keyed digest of (input, profile, key): an item is redone only when one of them changed."""
    return derive_hex(ctx.release_key, "resume", f"{input_sha256}:{ctx.profile_digest}:{ctx.release_id}")


@dataclass
class ItemWork:
    """Mutable scratch state of one item while it moves through the stages."""

    item: InputItem
    ctx: ItemContext
    record: ItemRecord
    staged: Path | None = None
    #: PHI-free sentences: what the release shows
    reasons: list[str] = field(default_factory=list)
    #: what the checks found, values included: the site's quarantine copy and internal log only
    details: list[str] = field(default_factory=list)
    #: the patient's identifying strings (header values, metadata row, container tags) -> where each came from
    phi: dict[str, str] = field(default_factory=dict)
    #: the patient attributes' values alone (names, IDs, birth date, address, ...): released texts
    #: are scanned for these; descriptions and container titles ("Gait exam") would match the
    #: release's own words
    patient_phi: list[str] = field(default_factory=list)

    def decide(self, figures: dict[str, Any], checks, reports) -> None:
        """The item's verdict, reasons and audit rows from :func:`clinrelease.verify.decision.decide`."""
        from clinrelease.verify.decision import decide

        decision = decide(figures, checks, reports)
        self.reasons.extend(decision.reasons)
        self.details.extend(decision.details)
        self.record.audit_checks = decision.rows


def identifying_strings(original: Mapping[str, str], item: InputItem, source) -> dict[str, str]:
    """Everything of the input that identifies the patient (header values, metadata row, container
    tags), each with where it came from (``original``: header strings -> their attributes), which a
    leak's reason names instead of the value."""
    strings: dict[str, str] = {}

    def add(value: str, where: str) -> None:
        value = value.strip()
        if len(value) >= 3:
            strings.setdefault(value, where)

    for value, attribute in original.items():
        add(value, attribute)
    for column, value in item.metadata.items():
        if value:
            add(value, f"metadata column {column}")
    if source is not None:
        # technical tags (brand "isom", minor version "512", muxer name) identify no one, and short
        # ones turn up by chance in compressed bytes: a false leak would quarantine every video
        for tag, value in source.info.descriptive_metadata.items():
            add(value, f"container tag {tag}")
    return dict(sorted(strings.items()))

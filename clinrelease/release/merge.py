"""The merge: the one step that holds the signing key.

It reads the item records, refuses what must not be signed (stray files in OUT, a patient split
across surrogates), runs the release-level gallery attack (:mod:`~clinrelease.release.gallery`),
writes the clinical table, ``summary.json`` and the QA report (:mod:`~clinrelease.release.summary`),
chains and signs the audit log, and builds the whole next release in ``WORK/next``, which is then
exchanged with OUT in one step (:mod:`clinrelease.swap_in`). A failure before that step leaves the
previous signed release exactly as it was, and no temporary file is ever written inside OUT.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from clinrelease.audit.records import utc_now
from clinrelease.errors import ConfigError, InputError
from clinrelease.release.clinical_table import clinical_summary, clinical_table, write_clinical
from clinrelease.release.gallery import release_gallery_attack, released_embeddings, surrogate_check
from clinrelease.release.paths import RELEASE_NAMES, ReleasePaths, check_release_key, not_started, storage_errors
from clinrelease.release.record import ItemRecord, ReleaseSummary, Status, load_json, load_records, of_last_input, write_json
from clinrelease.release.summary import item_audit_fields, release_summary, released_texts, report_visuals, start_record, write_reports


def refuse_strays(paths: ReleasePaths, records: list[ItemRecord]) -> None:
    """Refuse a release folder holding anything the release does not put there (it would be signed).

    Allowed: the top-level names of :data:`RELEASE_NAMES`, and under them the files the previous
    release's manifests list and the outputs item records vouch for. A lookup table, a temporary
    file or a ``.partial`` left in OUT is named, and nothing is changed.
    """
    out = paths.output
    if not out.is_dir():
        return
    from clinrelease.audit.manifest import MANIFEST, TAGMANIFEST, read_manifest

    known = {MANIFEST, TAGMANIFEST}
    for name in (MANIFEST, TAGMANIFEST):
        if (out / name).is_file():
            known.update(read_manifest(out / name)[0])
    known.update(r.output for r in records if r.output)
    strays = []
    for dirpath, dirnames, filenames in os.walk(out):
        here = Path(dirpath)
        # a link to a folder is not followed by the walk: it is a stray like any file
        for name in sorted(filenames) + sorted(d for d in dirnames if (here / d).is_symlink()):
            rel = (here / name).relative_to(out).as_posix()
            if rel not in known or rel.split("/", 1)[0] not in RELEASE_NAMES:
                strays.append(rel)
    if strays:
        shown = ", ".join(strays[:10]) + (f" (and {len(strays) - 10} more)" if len(strays) > 10 else "")
        raise ConfigError(
            f"the release folder holds files that are not part of the release: {shown}. Every file in a "
            "release is signed and handed out; it may hold only data/, clinical/, report/, audit/ and its "
            "manifests. Move these out of it, then run again",
            out,
        )


def merge_release(
    output: Path,
    keys_dir: Path,
    quarantine: Path | None = None,
    work: Path | None = None,
) -> ReleaseSummary:
    """Close a release: gallery attack, clinical tables, summary, QA report, audit log, manifest.

    Idempotent: merging again rebuilds every release-level file from the item records. Holds the
    release lock; see :func:`merge_locked`.
    """
    from clinrelease.lock import release_lock

    paths = ReleasePaths.for_output(output, quarantine, work)
    if not paths.work.is_dir():  # the lock would create it
        raise not_started(paths)
    with storage_errors(paths.work), release_lock(paths.work, "merge"):
        return merge_locked(paths, keys_dir)


def merge_locked(paths: ReleasePaths, keys_dir: Path) -> ReleaseSummary:
    """Build the next release in ``WORK/next`` and swap it in for OUT; OUT is untouched until then."""
    from clinrelease.crypto.keys import load_keys
    from clinrelease.profiles import load_profile
    from clinrelease.swap_in import swap_in

    meta = load_json(paths.work / "release.json")
    if not meta:
        raise not_started(paths)
    keys = load_keys(keys_dir, need_signing=True)
    check_release_key(meta, keys.release_key, paths)
    profile = load_profile(meta["profile_source"])
    every = load_records(paths, every=True)
    records = of_last_input(paths, every)
    if not records:
        raise ConfigError("no item records to merge; run `clinrelease run` (or its shards) first", paths.records)
    refuse_strays(paths, every)
    _refuse_split_surrogates(records, keys, paths)

    embeddings = released_embeddings(paths, records)
    gallery = release_gallery_attack(paths, embeddings, profile)
    surrogates = surrogate_check(embeddings, profile)
    shutil.rmtree(paths.next, ignore_errors=True)
    try:
        report = _build_release(paths.next, paths, meta, keys, profile, records, gallery, surrogates)
        swap_in(paths.next, paths.output, paths.work / "previous")
    finally:
        shutil.rmtree(paths.next, ignore_errors=True)
    # the released files are in OUT now (hard links): their waiting copies can go
    shutil.rmtree(paths.ready, ignore_errors=True)
    paths.ready.mkdir(parents=True, exist_ok=True)
    return ReleaseSummary(paths.output, paths.quarantine, records, finalized=True, report=paths.output / report.relative_to(paths.next), gallery=gallery)


def _refuse_split_surrogates(records: list[ItemRecord], keys, paths: ReleasePaths) -> None:
    """Refuse to merge a patient whose items carry different surrogates of the key's sequence (shards
    that ran with copies of the key folder, each deciding the patient on its own items), or a
    different one from the merge's key folder; else keep the records' decisions in that key folder."""
    from clinrelease.face.surrogate_choice import ChoiceStore, split_decisions

    remedy = (
        "Run the shards with one shared key folder, or give each shard a copy that already holds the patient's "
        f"decision (surrogate-choices.json); then delete the records of the items to redo from {paths.records} and run their shards again"
    )
    split = split_decisions(r.to_dict() for r in records)
    if split:
        patient, counters = next(iter(split.items()))
        parts = "; ".join(f"surrogate {c} for {', '.join(inputs)}" for c, inputs in sorted(counters.items()))
        more = f" ({len(split) - 1} more patients likewise)" if len(split) > 1 else ""
        raise ConfigError(
            f"patient {patient} was given different surrogates: {parts}{more}. One patient must keep one surrogate "
            f"across a release; the shards decided it apart with copies of the key folder. {remedy}",
            paths.records,
        )
    decisions = {r.pseudonym: r.surrogate for r in records if r.pseudonym and r.surrogate is not None}
    differing = ChoiceStore(keys.directory, keys.release_key).adopt(decisions)
    if differing:
        patient, (stored, given) = next(iter(differing.items()))
        inputs = ", ".join(r.input for r in records if r.pseudonym == patient)
        raise ConfigError(
            f"patient {patient} was released with surrogate {given} ({inputs}), but this key folder decided surrogate "
            f"{stored} for them; the shards ran with a copy of the key folder that did not hold this decision. {remedy}",
            keys.directory,
        )


def _build_release(root: Path, paths: ReleasePaths, meta, keys, profile, records, gallery, surrogates) -> Path:
    """Write a whole signed release into the empty folder ``root``; returns the QA report's path."""
    from clinrelease.audit.chain import AuditLog
    from clinrelease.audit.finalize import finalize_release

    root.mkdir(parents=True)
    for record in records:
        if record.status != Status.RELEASED:
            continue
        source = paths.released_file(record)  # a changed one is caught by finalize_release against its record
        if source is None:
            raise InputError("a released file is missing; run `clinrelease run` again to redo it", paths.output / record.output)
        target = root / record.output
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(source, target)  # same filesystem (ReleasePaths.make): no copy
    table = clinical_table(meta, keys.release_key, profile, records)
    guard = released_texts(records, table, keys.release_key)
    clinical = clinical_summary(table)
    finished = utc_now()
    summary = release_summary(meta, profile, records, gallery, clinical, keys.signing_key_id, finished)
    summary["surrogates"] = surrogates
    site_visuals, released_visuals = report_visuals(records, paths, profile)
    audit_items = [item_audit_fields(record) for record in records]
    start = start_record(meta, profile)
    # every released text passes the leak scan before anything of it is written or signed
    guard.check({
        "report/summary.json": summary,
        "report/index.html": released_visuals,
        "clinical/clinical.csv": [table.columns, table.rows] if table else [],
        "audit/log.jsonl": [start, *(fields for fields, _ in audit_items)],
    })  # fmt: skip
    write_clinical(table, root)
    report_dir = root / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    write_json(report_dir / "summary.json", summary)
    report = write_reports(report_dir, summary, site_visuals, released_visuals, paths)

    internal = paths.work / "audit-internal.jsonl"
    released_log = paths.work / "audit-released.jsonl"
    internal.unlink(missing_ok=True)
    released_log.unlink(missing_ok=True)
    log = AuditLog(internal, released_log, commitment_key=keys.release_key)
    log.extend([("release_start", start, None), *(("item", fields, internal_only) for fields, internal_only in audit_items)])
    finalize_release(log, root, keys.signing_key, end_fields={"gallery": gallery} if gallery else None)
    return report



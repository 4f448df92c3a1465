"""The release-level checks on the released faces, run by the merge: the gallery attack (identify each
released patient among all originals and distractors; re-identified items are withdrawn before
anything is signed) and the surrogate check (one surrogate per patient, look-alikes across patients)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from clinrelease.release.paths import ReleasePaths
from clinrelease.release.record import ItemRecord, Status, write_json

#: released items with face embeddings: their records, item -> arrays, item -> patient
ReleasedEmbeddings = tuple[list[ItemRecord], dict[str, dict[str, np.ndarray]], dict[str, str]]


def release_gallery_attack(paths: ReleasePaths, embeddings: ReleasedEmbeddings, profile) -> dict[str, Any] | None:
    """Release-level attack: identify each anonymized video's patient among all originals + distractors.

    Reports closed-set rank-1 and rank-5 rates per recognizer. An item counts as *re-identified*
    when its true identity is the rank-1 hit **and** the recognizer calls that a match (open-set
    identification: a rank-1 hit far below the match threshold is chance among few identities).
    Re-identified items are withdrawn from the release before anything is signed; the release
    passes when the re-identified rate is within the profile's ``gallery.max_rank1``.
    """
    from clinrelease.verify.decision import decide, gallery_check

    check = gallery_check(profile)
    embedded, data, identity = embeddings
    if check is None or not embedded:
        return None
    from clinrelease.verify.reid import distractor_embeddings, gallery_attack, identity_score, profile_recognizers

    per_recognizer: dict[str, Any] = {}
    reidentified: set[str] = set()
    for name, rec in profile_recognizers(profile.verify).items():
        if not any(f"anon:{name}" in d for d in data.values()):
            continue
        probes = {item: list(d[f"anon:{name}"]) for item, d in data.items() if f"anon:{name}" in d}
        gallery: dict[str, list[np.ndarray]] = {}
        for item, d in data.items():
            gallery.setdefault(identity[item], []).extend(d.get(f"orig:{name}", []))
        report = gallery_attack(probes, gallery, rec, distractors=distractor_embeddings(rec), truth=identity)
        hits = []
        for item, rank in report.ranks.items():
            if rank == 1 and rec.is_match(identity_score(rec, probes[item], gallery[identity[item]])):
                hits.append(item)
        reidentified.update(hits)
        per_recognizer[name] = {
            "items": report.items,
            "gallery_identities": report.gallery_identities,
            "distractor_identities": report.distractor_identities,
            "rank1": report.rank1,
            "rank5": report.rank5,
            "reidentified": len(hits) / report.items if report.items else 0.0,
        }
    rate = len(reidentified) / len(embedded)
    decision = decide({check.name: rate}, [check])
    for record in embedded:
        if record.item_id in reidentified:
            for reason in decision.reasons:
                _withdraw(paths, record, reason)
    return {"recognizers": per_recognizer, "reidentified_rate": rate, "max_rank1": check.limit, "passed": decision.released}


def released_embeddings(paths: ReleasePaths, records: list[ItemRecord]) -> ReleasedEmbeddings:
    """The face embeddings :func:`clinrelease.release.visuals.visuals` saved for each released item, read once per merge."""
    folder = paths.work / "embeddings"
    embedded = [r for r in records if r.status == Status.RELEASED and (folder / f"{r.item_id}.npz").is_file()]
    data = {r.item_id: dict(np.load(folder / f"{r.item_id}.npz")) for r in embedded}
    identity = {r.item_id: r.pseudonym or r.item_id for r in embedded}
    return embedded, data, identity


def surrogate_check(embeddings: ReleasedEmbeddings, profile) -> dict[str, Any] | None:
    """One surrogate per patient, different surrogates across patients: measured on the released faces.

    Informational (nothing is withdrawn): a look-alike pair is two patients whose released faces a
    recognizer takes for one person. With the built-in swap the donor pool's size bounds how
    different surrogates can be, so the pool and the chance that two patients share a donor are
    reported beside the figures.
    """
    from clinrelease.verify.reid import profile_recognizers, surrogate_consistency

    embedded, data, identity = embeddings
    if not embedded:
        return None
    out: dict[str, Any] = {"recognizers": {}}
    for name, rec in profile_recognizers(profile.verify).items():
        probes = {item: list(d[f"anon:{name}"]) for item, d in data.items() if f"anon:{name}" in d}
        if probes:
            out["recognizers"][name] = surrogate_consistency(probes, identity, rec).to_dict()
    if profile.anonymizer.name == "swap":
        out["pool"] = _pool_figures(profile)
    return out


def _pool_figures(profile) -> dict[str, Any]:
    from clinrelease.face.pools import load_pool
    from clinrelease.face.surrogates import shared_donor_probability

    source, k = profile.anonymizer.pool, profile.anonymizer.k_donors
    if source == "generator":
        from clinrelease.face.generator import LICENCE

        # one generated face per patient: no donors to share
        return {"source": "generator", "donors": 0, "k": 1, "shared_donor_probability": 0.0, "licence": LICENCE}
    pool = load_pool(source)
    return {
        "source": {"default": "built-in", "openpeople": "built-in + openpeople"}.get(source) or Path(source).name,
        "donors": len(pool),
        "k": k,
        "shared_donor_probability": round(shared_donor_probability(len(pool), k), 4),
    }


def _withdraw(paths: ReleasePaths, record: ItemRecord, reason: str) -> None:
    """Take a released item back out of the release into the quarantine.

    A file already in OUT is copied, not moved: OUT changes only when the next release is
    swapped in, without this item.
    """
    qdir = paths.quarantine / record.item_id
    qdir.mkdir(parents=True, exist_ok=True)
    src = paths.released_file(record)
    if src is not None:
        (qdir / "anonymized.dcm").unlink(missing_ok=True)
        if src.is_relative_to(paths.ready):
            shutil.move(src, qdir / "anonymized.dcm")
        else:
            shutil.copy2(src, qdir / "anonymized.dcm")
    record.status = Status.QUARANTINED
    record.reasons = [*record.reasons, reason]
    record.output = None
    write_json(qdir / "reasons.json", {"input": record.input, "status": Status.QUARANTINED.value, "reasons": record.reasons})
    record.save(paths.records / f"{record.item_id}.json")


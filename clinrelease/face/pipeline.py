"""The two passes over a video: analyze (detect, track, mesh, smooth, roles) then anonymize; and the
fail-closed residual-face check on the anonymized frames."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from clinrelease.errors import InputError
from clinrelease.face.base import PATIENT, Anonymizer, FaceAnalysis
from clinrelease.face.detect import DEFAULT_DETECTORS, FaceDetector
from clinrelease.face.landmarks import LandmarkModel, landmark_box
from clinrelease.face.track import FaceTracker, assign_roles, fill_gaps, smooth_track


def _mesh_box(points: np.ndarray) -> np.ndarray:
    # the mesh stops at mid-forehead: reach up to the hair line so boxes match detector boxes
    box = landmark_box(points)
    box[1] -= 0.15 * (box[3] - box[1])
    return box


def analyze_faces(
    frames: Iterable[np.ndarray],
    *,
    patient_rule: str = "largest",
    min_face_px: int = 12,
    detectors: Sequence[str] = DEFAULT_DETECTORS,
    max_gap: int = 15,
    smooth_window: int = 7,
    model_dir: str | Path | None = None,
) -> FaceAnalysis:
    """Pass 1: find, track and mesh every face of a video.

    Parameters
    ----------
    frames:
        RGB ``uint8`` frames, in order (consumed once; only landmarks are kept).
    patient_rule:
        "largest", "most_present" or "all" (see :func:`~clinrelease.face.track.assign_roles`).
    min_face_px:
        Smallest face side reported by the detectors.
    detectors:
        Detector names (mediapipe, yunet; scrfd is added when a model folder holds it).
    max_gap:
        Longest detection gap (frames) bridged by interpolation within a track.
    smooth_window:
        Savitzky-Golay window (frames) for landmark smoothing.
    model_dir:
        Folder of site-provided model packs.

    Returns
    -------
    FaceAnalysis
        Tracks with per-frame boxes and smoothed 478-point meshes, roles assigned.
    """
    detector = FaceDetector(detectors, min_face_px=min_face_px, model_dir=model_dir)
    mesher = LandmarkModel()
    tracker = FaceTracker(max_gap)
    count, rows, columns = 0, 0, 0
    try:
        for index, frame in enumerate(frames):
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise InputError(f"frame {index} is not an RGB uint8 image (shape {frame.shape}, {frame.dtype})")
            count, (rows, columns) = index + 1, frame.shape[:2]
            boxes, scores, meshes = [], [], []
            for det in detector.detect(frame):
                points = mesher.landmarks(frame, det.box)
                box = det.box if points is None else _mesh_box(points)
                if any(_overlaps(box, b) for b in boxes):
                    continue  # two detections of one face (the mesh tells)
                boxes.append(box)
                scores.append(det.score)
                meshes.append(points)
            # a live track the detectors missed this frame: try the mesh where it was last seen
            for track_id, box in tracker.active_boxes(index).items():
                if any(_overlaps(box, b) for b in boxes):
                    continue
                points = mesher.landmarks(frame, box)
                if points is not None and not any(_overlaps(_mesh_box(points), b) for b in boxes):
                    boxes.append(_mesh_box(points))
                    scores.append(0.5)
                    meshes.append(points)
            for track_id, points in zip(tracker.update(index, boxes, scores), meshes):
                tracker.track(track_id).faces[index].landmarks = points
    finally:
        detector.close()
        mesher.close()
    tracks = tracker.finish()
    for track in tracks:
        fill_gaps(track, max_gap)
        smooth_track(track, smooth_window)
    assign_roles(tracks, patient_rule)
    return FaceAnalysis(frames=count, rows=rows, columns=columns, tracks=tracks)


def _overlaps(a: np.ndarray, b: np.ndarray) -> bool:
    from clinrelease.face.detect import box_iou

    return box_iou(a, b) > 0.2


def anonymize_frames(
    frames: Iterable[np.ndarray], analysis: FaceAnalysis, *, patient: Anonymizer, bystander: Anonymizer
) -> Iterator[np.ndarray]:
    """Pass 2: yield each frame with the patient's and bystanders' faces anonymized, lazily, in order."""
    for track in analysis.tracks:
        (patient if track.role == PATIENT else bystander).prepare(analysis, track.track_id)
    roles = {t.track_id: t.role for t in analysis.tracks}
    for index, frame in enumerate(frames):
        out = np.array(frame, copy=True)
        faces = analysis.faces_in_frame(index)
        others = [f for f in faces if roles[f.track_id] != PATIENT]
        mine = [f for f in faces if roles[f.track_id] == PATIENT]
        if others:
            out = bystander.anonymize_frame(out, others)
        if mine:
            out = patient.anonymize_frame(out, mine)
        yield out


def residual_faces(
    frames: Iterable[np.ndarray],
    analysis: FaceAnalysis,
    *,
    detectors: Sequence[str] = DEFAULT_DETECTORS,
    margin: float = 0.3,
    model_dir: str | Path | None = None,
) -> list[int]:
    """Fail-closed check: indices of anonymized frames where a detector finds a face that no anonymized
    track covers (its centre outside every track box of that frame, grown by ``margin``)."""
    detector = FaceDetector(detectors, model_dir=model_dir)
    bad: list[int] = []
    try:
        for index, frame in enumerate(frames):
            covered = []
            for face in analysis.faces_in_frame(index):
                b = face.box if face.landmarks is None else _mesh_box(face.landmarks)
                gx, gy = margin * (b[2] - b[0]), margin * (b[3] - b[1])
                covered.append((b[0] - gx, b[1] - gy, b[2] + gx, b[3] + gy))
            for det in detector.detect(frame):
                cx, cy = (det.box[0] + det.box[2]) / 2, (det.box[1] + det.box[3]) / 2
                if not any(x0 <= cx <= x1 and y0 <= cy <= y1 for x0, y0, x1, y1 in covered):
                    bad.append(index)
                    break
    finally:
        detector.close()
    return bad

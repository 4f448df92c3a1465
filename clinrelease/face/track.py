"""Tracking: associate per-frame detections into face tracks, fill short gaps, pick the patient."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from clinrelease.errors import ConfigError
from clinrelease.face.base import BYSTANDER, PATIENT, FaceTrack, TrackedFace
from clinrelease.face.detect import box_iou
from clinrelease.face.landmarks import smooth_shapes

PATIENT_RULES: tuple[str, ...] = ("largest", "most_present", "all")


def min_cost_assignment(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of a minimum-cost one-to-one assignment (as ``scipy.optimize.linear_sum_assignment``).

    Videos hold a handful of faces: up to 6 on the smaller side, every assignment is tried (at most
    720), which spares each worker process the seconds that importing scipy.optimize takes; larger
    problems go to scipy.
    """
    import itertools

    n_rows, n_cols = cost.shape
    if min(n_rows, n_cols) > 6:
        from scipy.optimize import linear_sum_assignment

        return linear_sum_assignment(cost)
    transposed = n_rows > n_cols
    c = cost.T if transposed else cost  # rows <= columns
    best, best_cols = np.inf, ()
    for cols in itertools.permutations(range(c.shape[1]), c.shape[0]):
        total = c[np.arange(c.shape[0]), cols].sum()
        if total < best:
            best, best_cols = total, cols
    rows, cols = np.arange(c.shape[0]), np.array(best_cols, dtype=np.intp)
    if transposed:
        order = np.argsort(cols)
        return cols[order], rows[order]
    return rows, cols


@dataclass
class _Active:
    track: FaceTrack
    box: np.ndarray
    last_frame: int


class FaceTracker:
    """Online association of face boxes to tracks (Hungarian assignment on IoU and centre distance).

    Parameters
    ----------
    max_gap:
        Frames a track may go unseen and still be continued.
    """

    def __init__(self, max_gap: int = 15) -> None:
        self.max_gap = max_gap
        self._active: list[_Active] = []
        self._done: list[FaceTrack] = []
        self._next_id = 0

    @staticmethod
    def _cost(a: np.ndarray, b: np.ndarray) -> float:
        iou = box_iou(a, b)
        size = max(a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1], 1.0)
        dist = np.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2) / size
        if iou < 0.05 and dist > 0.75:
            return np.inf
        return (1.0 - iou) + dist

    def update(self, frame_index: int, boxes: Sequence[np.ndarray], scores: Sequence[float]) -> list[int]:
        """Assign this frame's boxes to tracks; returns the track id of each box, in order."""
        # retire tracks unseen for too long
        keep = []
        for a in self._active:
            if frame_index - a.last_frame <= self.max_gap:
                keep.append(a)
            else:
                self._done.append(a.track)
        self._active = keep
        ids = [-1] * len(boxes)
        if self._active and boxes:
            cost = np.array([[self._cost(a.box, b) for b in boxes] for a in self._active])
            finite = np.where(np.isfinite(cost), cost, 1e6)
            rows, cols = min_cost_assignment(finite)
            for r, c in zip(rows, cols):
                if np.isfinite(cost[r, c]):
                    ids[c] = self._active[r].track.track_id
                    self._active[r].box = np.asarray(boxes[c], np.float32)
                    self._active[r].last_frame = frame_index
        for i, box in enumerate(boxes):
            if ids[i] == -1:
                track = FaceTrack(track_id=self._next_id)
                self._next_id += 1
                self._active.append(_Active(track, np.asarray(box, np.float32), frame_index))
                ids[i] = track.track_id
        by_id = {a.track.track_id: a.track for a in self._active}
        for i, box in enumerate(boxes):
            by_id[ids[i]].faces[frame_index] = TrackedFace(ids[i], frame_index, np.asarray(box, np.float32), float(scores[i]))
        return ids

    def active_boxes(self, frame_index: int) -> dict[int, np.ndarray]:
        """Last box of each live track not yet seen in ``frame_index`` (for landmark re-acquisition)."""
        return {a.track.track_id: a.box for a in self._active if a.last_frame < frame_index and frame_index - a.last_frame <= self.max_gap}

    def tracks(self) -> list[FaceTrack]:
        """Every track so far, live or retired."""
        return self._done + [a.track for a in self._active]

    def track(self, track_id: int) -> FaceTrack:
        """The live track with this id."""
        return next(a.track for a in self._active if a.track.track_id == track_id)

    def finish(self) -> list[FaceTrack]:
        """All tracks, ordered by id."""
        tracks = self.tracks()
        self._active, self._done = [], []
        return sorted(tracks, key=lambda t: t.track_id)


def fill_gaps(track: FaceTrack, max_gap: int = 15) -> None:
    """Interpolate boxes and landmarks linearly over gaps of at most ``max_gap`` frames.

    Frames of a face that has no mesh (landmarks None) between meshed neighbours get interpolated
    landmarks too, so the swap has geometry wherever the track has a box.
    """
    idx = track.frame_indices
    for a, b in zip(idx, idx[1:]):
        if 1 < b - a <= max_gap + 1:
            fa, fb = track.faces[a], track.faces[b]
            for i in range(a + 1, b):
                t = (i - a) / (b - a)
                lm = None
                if fa.landmarks is not None and fb.landmarks is not None:
                    lm = ((1 - t) * fa.landmarks + t * fb.landmarks).astype(np.float32)
                box = ((1 - t) * fa.box + t * fb.box).astype(np.float32)
                track.faces[i] = TrackedFace(track.track_id, i, box, min(fa.score, fb.score), lm, interpolated=True)
    _fill_missing_landmarks(track)


def _fill_missing_landmarks(track: FaceTrack) -> None:
    idx = [i for i in track.frame_indices if track.faces[i].landmarks is not None]
    if not idx:
        return
    for i in track.frame_indices:
        face = track.faces[i]
        if face.landmarks is not None:
            continue
        pos = np.searchsorted(idx, i)
        lo, hi = (idx[pos - 1] if pos > 0 else None), (idx[pos] if pos < len(idx) else None)
        if lo is not None and hi is not None:
            t = (i - lo) / (hi - lo)
            lm = (1 - t) * track.faces[lo].landmarks + t * track.faces[hi].landmarks
        else:
            near = lo if lo is not None else hi
            # a single neighbour: move its mesh with the box centre
            src = track.faces[near]
            shift = (face.box[:2] + face.box[2:]) / 2 - (src.box[:2] + src.box[2:]) / 2
            lm = src.landmarks + shift
        face.landmarks = np.asarray(lm, np.float32)


def smooth_track(track: FaceTrack, window: int = 7, block: int = 256) -> None:
    """Smooth the face's shape over time within each run of consecutive frames (Savitzky-Golay on
    meshes aligned to the run's first, :func:`~clinrelease.face.landmarks.smooth_shapes`), in place.

    A run is smoothed ``block`` frames at a time and written back into the existing arrays one block
    late (the next block still reads the unsmoothed values it overlaps), so a long video needs no
    second copy of all its landmarks: peak memory stays flat in the video's length.
    """
    half = window // 2
    idx = [i for i in track.frame_indices if track.faces[i].landmarks is not None]
    runs: list[list[int]] = []
    for i in idx:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    for run in runs:
        n = len(run)
        reference = track.faces[run[0]].landmarks.copy()
        pending: list[tuple[list[int], np.ndarray]] = []
        for lo in range(0, n, block):
            hi = min(n, lo + block)
            a, b = max(0, lo - half), min(n, hi + half)
            seq = np.stack([track.faces[i].landmarks for i in run[a:b]])
            # a shorter run keeps the window smooth_sequence would choose for the whole run
            smooth = smooth_shapes(seq, reference, window if n >= window else n)[lo - a : hi - a]
            for frames, values in pending:
                _write_back(track, frames, values)
            pending = [(run[lo:hi], smooth)]
        for frames, values in pending:
            _write_back(track, frames, values)


def _write_back(track: FaceTrack, frames: list[int], values: np.ndarray) -> None:
    for i, pts in zip(frames, values):
        track.faces[i].landmarks[...] = pts


def assign_roles(tracks: list[FaceTrack], rule: str) -> None:
    """Mark the patient track(s) by ``rule``; every other track is a bystander.

    ``largest``: the track with the largest median face size (ties: the longer one);
    ``most_present``: the track seen in the most frames; ``all``: every track. A face worn on
    another tracked person's clothes (:func:`worn`) is never the patient while another track is
    there to choose.
    """
    if rule not in PATIENT_RULES:
        raise ConfigError(f"unknown patient rule {rule!r}; use one of {', '.join(PATIENT_RULES)}")
    for t in tracks:
        t.role = PATIENT if rule == "all" else BYSTANDER
    if rule == "all" or not tracks:
        return
    candidates = [t for t in tracks if not worn(t, tracks)] or tracks
    if rule == "largest":
        # size weighted by presence, so a large one-frame false positive does not win
        best = max(candidates, key=lambda t: (t.median_size * min(1.0, len(t.faces) / 10), len(t.faces)))
    else:
        best = max(candidates, key=lambda t: (len(t.faces), t.median_size))
    best.role = PATIENT


#: share of the frames a track shares with another on whose body it lies (:func:`worn`)
WORN_SHARE = 0.5


def worn(track: FaceTrack, tracks: list[FaceTrack]) -> bool:
    """Whether ``track`` is a face printed on another tracked person's clothes: the face mesh found
    no face in it on any frame, and on at least :data:`WORN_SHARE` of the frames it shares with a
    track that has a mesh there, it lies on that person's body below their face
    (:func:`~clinrelease.verify.keypoints.on_body`). help.mkv turned by 30 degrees: the hoodie's
    printed skull, a face to the detectors in 13 frames and larger than the signer's, was taken for
    the patient; the signer's face was treated as a bystander's."""
    from clinrelease.verify.keypoints import on_body

    if any(face.landmarks is not None for face in track.faces.values()):
        return False
    for other in tracks:
        if other is track:
            continue
        shared = [i for i in track.faces if i in other.faces and other.faces[i].landmarks is not None]
        if shared and sum(on_body(track.faces[i].box, other.faces[i].box) for i in shared) >= WORN_SHARE * len(shared):
            return True
    return False

"""The two passes over a video: analyze (detect, track, mesh, smooth, roles) then anonymize; and the
fail-closed residual-face check on the anonymized frames.

Speed (issue 8): the merged detector (mediapipe short + full range + YuNet) costs several times
more than the face mesh, so pass 1 runs it on every ``detect_every``-th frame only, and between
those frames each live track is followed by the mesh on a crop around its last position (a mesh
found there is itself a detection, as in mediapipe's own tracking). The full detector also runs on
any frame where a tracked mesh is lost, on the last frame, and wherever a cheap sentinel (YuNet on a
downscaled frame) sees a face no track covers. A face that the full detector first finds at frame
``k`` is traced back by the mesh (or the detector) over the frames buffered since the previous full
detection, so it is anonymized from the frame it appeared. Models are built once per thread and
reused across videos; decoding runs in its own thread ahead of the face work.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from clinrelease.errors import InputError
from clinrelease.face.base import (
    PATIENT,
    Anonymizer,
    FaceAnalysis,
    FaceTrack,
    TrackedFace,
)
from clinrelease.face.detect import DEFAULT_DETECTORS, FaceDetector, box_iou
from clinrelease.face.landmarks import LandmarkModel, landmark_box, roll_degrees
from clinrelease.face.occlusion import HandFinder, overlapping
from clinrelease.face.small import SWAP_MIN_FACE_PX, FaceMethods, small_faces  # noqa: F401 - the size rule is read from the pipeline too
from clinrelease.face.track import FaceTracker, assign_roles, fill_gaps, smooth_track
from clinrelease.pipeline_threads import StageClock, threaded

if TYPE_CHECKING:
    from clinrelease.verify.ocr import TextBox

#: default for ``detect_every``: the merged detector every 5th frame, the mesh tracks in between
DEFAULT_DETECT_EVERY = 5
#: turns (degrees) of the frame the detector also searches when a full detection finds no face: the
#: detectors miss heads tilted past ~40 degrees (book.mkv turned 45: 4 of 10 frames), and once found
#: a tilted face is followed by the mesh on an upright-turned crop. Only on empty frames: each turn
#: costs a detector pass, and on the shared clips the turned passes add false faces beside real ones
DEFAULT_TURNS = (-40.0, 40.0)
#: frames kept to trace a new face back to where it appeared (about a second of video). A face the
#: full detections miss while it is small or half turned can be there long before one finds it: in
#: classroom.gif a 12-16 px face first detected at frame 8 was in frames 0-7 too, untracked and
#: unchanged in the release. The mesh around the face's box finds it there
TRACE_BACK_FRAMES = 30
#: at most this many bytes of those frames are kept (fewer frames of a large picture: 30 frames of
#: 4K video would hold 750 MB), never fewer than the frames between two full detections
TRACE_BACK_BYTES = 256 * 2**20

_models = threading.local()


def shared_detector(
    detectors: Sequence[str] = DEFAULT_DETECTORS, *, min_face_px: int = 12, model_dir: str | Path | None = None
) -> FaceDetector:
    """A :class:`FaceDetector` built once per thread for these settings and reused (graphs load slowly).

    mediapipe graphs must not be called from two threads at once, hence one cache per thread.
    """
    from clinrelease.models import configured_model_dir

    cache = _models.__dict__.setdefault("detectors", {})
    key = (tuple(detectors), int(min_face_px), str(configured_model_dir(model_dir)))
    if key not in cache:
        cache[key] = FaceDetector(detectors, min_face_px=min_face_px, model_dir=model_dir)
    return cache[key]


def shared_mesher() -> LandmarkModel:
    """The face-mesh model, built once per thread and reused."""
    if not hasattr(_models, "mesher"):
        _models.mesher = LandmarkModel()
    return _models.mesher


def _mesh_box(points: np.ndarray) -> np.ndarray:
    # the mesh stops at mid-forehead: reach up to the hair line so boxes match detector boxes
    box = landmark_box(points)
    box[1] -= 0.15 * (box[3] - box[1])
    return box


def _last_roll(track: FaceTrack) -> float:
    """The in-plane tilt of a track's last meshed face (degrees), to turn the next crop upright."""
    last = track.faces[max(track.faces)] if track.faces else None
    return roll_degrees(last.landmarks) if last is not None and last.landmarks is not None else 0.0


def _overlaps(a: np.ndarray, b: np.ndarray) -> bool:
    return box_iou(a, b) > 0.2


def _with_last_flag(frames: Iterable[np.ndarray]) -> Iterator[tuple[int, np.ndarray, bool]]:
    """``(index, frame, is_last)`` with a one-frame look-ahead."""
    iterator = iter(frames)
    try:
        current = next(iterator)
    except StopIteration:
        return
    index = 0
    for following in iterator:
        yield index, current, False
        current, index = following, index + 1
    yield index, current, True


class _FrameFaces:
    """The faces found in one frame so far: boxes, scores, meshes (no two overlapping)."""

    def __init__(self) -> None:
        self.boxes: list[np.ndarray] = []
        self.scores: list[float] = []
        self.meshes: list[np.ndarray | None] = []

    def covers(self, box: np.ndarray) -> bool:
        return any(_overlaps(box, b) for b in self.boxes)

    def add(self, box: np.ndarray, score: float, mesh: np.ndarray | None) -> None:
        self.boxes.append(np.asarray(box, np.float32))
        self.scores.append(float(score))
        self.meshes.append(mesh)


def analyze_faces(
    frames: Iterable[np.ndarray],
    *,
    patient_rule: str = "largest",
    min_face_px: int = 12,
    detectors: Sequence[str] = DEFAULT_DETECTORS,
    max_gap: int = 15,
    smooth_window: int = 7,
    model_dir: str | Path | None = None,
    detect_every: int = DEFAULT_DETECT_EVERY,
    sentinel: bool = True,
    prefetch: int = 4,
    clock: StageClock | None = None,
    hands: bool = False,
    turns: Sequence[float] = DEFAULT_TURNS,
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
    detect_every:
        Run the merged detector on every n-th frame (and wherever a tracked mesh is lost, the
        sentinel fires, and on the last frame); 1 runs it on every frame.
    sentinel:
        Between full detections, look for new faces with a cheap detector pass on a downscaled
        frame (:meth:`FaceDetector.quick_boxes`); a face no track covers triggers a full detection.
    prefetch:
        Frames decoded ahead in a background thread (0: decode in the calling thread).
    clock:
        When given, seconds spent in "detect" (merged detector), "sentinel", "landmarks" and
        "hands" are added to it.
    hands:
        Also find hands on every frame with a face and give each face the outlines of the hands in
        front of it (``TrackedFace.occluders``), which the swap leaves in place
        (:mod:`clinrelease.face.occlusion`); every hand found is kept (``FaceAnalysis.hands``) for
        the text cleaner, which leaves it in place too.
    turns:
        Where a full detection finds no face, search the frame turned by these angles (degrees) too
        (:data:`DEFAULT_TURNS`). Every mesh runs on a crop turned upright by the face's tilt (the
        track's last mesh, or the detector's eye points), and its points are turned back.

    Returns
    -------
    FaceAnalysis
        Tracks with per-frame boxes and smoothed 478-point meshes, roles assigned.
    """
    if detect_every < 1:
        raise InputError(f"detect_every must be at least 1, got {detect_every}")
    detector = shared_detector(detectors, min_face_px=min_face_px, model_dir=model_dir)
    mesher = shared_mesher()
    clock = clock or StageClock()
    tracker = FaceTracker(max_gap)
    count, rows, columns = 0, 0, 0
    # the latest frames, to trace new faces back to where they appeared (sized on the first frame)
    history: collections.deque[tuple[int, np.ndarray]] | None = None
    finder = HandFinder() if hands else None
    hand_outlines: dict[int, list[np.ndarray]] = {}
    # the hand graph runs on a thread of its own beside the face models, on the same frames in the
    # same order as run inline (its tracker carries state from frame to frame)
    hand_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="clinrelease-hands") if finder is not None else None

    def find_hands(frame: np.ndarray) -> list[np.ndarray]:
        with clock.time("hands"):
            return finder.outlines(frame)

    source = threaded(frames, depth=prefetch, name="decode") if prefetch > 0 else iter(frames)
    try:
        for index, frame, last in _with_last_flag(source):
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise InputError(f"frame {index} is not an RGB uint8 image (shape {frame.shape}, {frame.dtype})")
            count, (rows, columns) = index + 1, frame.shape[:2]
            if history is None:
                history = collections.deque(maxlen=max(detect_every, min(TRACE_BACK_FRAMES, TRACE_BACK_BYTES // max(frame.nbytes, 1))))
            found = _FrameFaces()
            live = tracker.active_boxes(index)
            # a frame with a live track has its hands searched whatever the detectors find
            hands_found = hand_thread.submit(find_hands, frame) if hand_thread is not None and live else None
            lost = False
            # follow every live track with the mesh on a crop where it was last seen
            for track_id, box in live.items():
                with clock.time("landmarks"):
                    points = mesher.landmarks(frame, box, roll=_last_roll(tracker.track(track_id)))
                if points is None:
                    lost = True
                elif not found.covers(_mesh_box(points)):
                    found.add(_mesh_box(points), 0.9, points)
            full = last or lost or index % detect_every == 0
            if not full and sentinel:
                with clock.time("sentinel"):
                    full = any(not found.covers(b) for b in detector.quick_boxes(frame))
            if full:
                _add_detections(frame, detector, mesher, found, clock, turns)
            if hands_found is None and hand_thread is not None and found.boxes:
                hands_found = hand_thread.submit(find_hands, frame)
            if hands_found is not None:
                outlines = hands_found.result()
                if outlines:
                    hand_outlines[index] = outlines
            ids = tracker.update(index, found.boxes, found.scores)
            for track_id, points in zip(ids, found.meshes):
                tracker.track(track_id).faces[index].landmarks = points
            if full:
                for track_id in set(ids) - set(live):
                    track = tracker.track(track_id)
                    if min(track.faces) == index:  # a face no track followed: where did it appear?
                        _trace_back(track, history, tracker, detector, mesher, clock)
            history.append((index, frame))
    finally:
        if hasattr(source, "close"):
            source.close()
        if hand_thread is not None:
            hand_thread.shutdown(wait=True, cancel_futures=True)
        if finder is not None:
            finder.close()
    tracks = tracker.finish()
    for track in tracks:
        fill_gaps(track, max_gap)
        smooth_track(track, smooth_window)
        for index, face in track.faces.items():
            face.occluders = overlapping(hand_outlines.get(index, []), face.box)
    assign_roles(tracks, patient_rule)
    return FaceAnalysis(frames=count, rows=rows, columns=columns, tracks=tracks, hands=hand_outlines)


def _add_detections(
    frame: np.ndarray, detector: FaceDetector, mesher: LandmarkModel, found: _FrameFaces, clock: StageClock, turns: Sequence[float] = ()
) -> None:
    """Run the merged detector (on the turned frame too where it finds nothing and no track
    follows a face) and add each face not yet found, meshed where possible."""
    with clock.time("detect"):
        detections = detector.detect(frame, () if found.boxes else turns, turn_if_none=True)
    for det in detections:
        if found.covers(det.box):
            continue  # already followed by its track's mesh
        with clock.time("landmarks"):
            points = mesher.landmarks(frame, det.box, roll=det.roll)
        box = det.box if points is None else _mesh_box(points)
        if found.covers(box):
            continue  # two detections of one face (the mesh tells)
        found.add(box, det.score, points)


def _trace_back(
    track: FaceTrack,
    earlier: collections.deque[tuple[int, np.ndarray]],
    tracker: FaceTracker,
    detector: FaceDetector,
    mesher: LandmarkModel,
    clock: StageClock,
) -> None:
    """Extend a track first seen at a full detection backwards over the ``earlier`` frames kept.

    Each earlier frame is searched with the mesh around the face's box in the following frame, then
    with the merged detector, then with YuNet on an upsampled crop around the box (a face too small
    for the full-frame pass, where the track says to look); the walk stops at the first frame where
    none finds it, or where the face would overlap another track's face there.
    """
    from clinrelease.verify.reid import face_locator

    first = min(track.faces)
    box, score = track.faces[first].box, track.faces[first].score
    later = track.faces[first].landmarks
    others = [t for t in tracker.tracks() if t is not track]
    for index, frame in reversed(earlier):
        with clock.time("landmarks"):
            points = mesher.landmarks(frame, box, roll=roll_degrees(later) if later is not None else 0.0)
        if points is not None:
            new_box = _mesh_box(points)
        else:
            with clock.time("detect"):
                near = [(d.box, d.roll) for d in detector.detect(frame) if _overlaps(d.box, box)]
                if not near:
                    row = face_locator().locate(frame, box)
                    if row is not None and row[14] >= detector.agree_score:
                        near = [(np.array([row[0], row[1], row[0] + row[2], row[1] + row[3]], np.float32), 0.0)]
            if not near:
                return
            with clock.time("landmarks"):
                points = mesher.landmarks(frame, near[0][0], roll=near[0][1])
            new_box = near[0][0] if points is None else _mesh_box(points)
        if any(index in t.faces and _overlaps(new_box, t.faces[index].box) for t in others):
            return
        track.faces[index] = TrackedFace(track.track_id, index, np.asarray(new_box, np.float32), score, points)
        box = new_box
        later = points if points is not None else later


def anonymize_frames(
    frames: Iterable[np.ndarray],
    analysis: FaceAnalysis,
    *,
    patient: Anonymizer,
    bystander: Anonymizer,
    prefetch: int = 4,
    clock: StageClock | None = None,
    methods: FaceMethods | None = None,
) -> Iterator[np.ndarray]:
    """Pass 2: yield each frame with the patient's and bystanders' faces anonymized, lazily, in order.

    Parameters
    ----------
    frames:
        The video's RGB ``uint8`` frames again, in order.
    analysis:
        The result of :func:`analyze_faces` on the same frames.
    patient, bystander:
        Anonymizers for the patient's and the other tracks.
    prefetch:
        With ``prefetch > 0`` decoding and anonymizing each run in a thread of their own, up to
        ``prefetch`` frames ahead of the consumer (the encoder), so the three stages overlap.
    clock:
        When given, seconds spent anonymizing are added to its "render" stage.
    methods:
        Per face and frame, how swapped faces that are small or turned away are anonymized
        (:func:`clinrelease.face.small.plan_methods`); None swaps every face alike. With the plan's
        recognizers, small swapped faces and bystanders' faces are checked as they are rendered
        (:class:`~clinrelease.face.small.SizeAwareAnonymizer`, :mod:`clinrelease.face.bystander`).
    """
    if methods is not None:
        from clinrelease.face.bystander import guarded_bystanders
        from clinrelease.face.small import size_aware

        # what is released is checked as it is rendered; the surrogate screening compares plain swaps
        bystander = guarded_bystanders(bystander, patient, methods)
        patient, bystander = size_aware(patient, methods, guard=True), size_aware(bystander, methods, guard=True)
    work = _anonymized(threaded(frames, depth=prefetch, name="decode") if prefetch > 0 else frames, analysis, patient, bystander, clock)
    return threaded(work, depth=prefetch, name="anonymize") if prefetch > 0 else work


def _anonymized(
    frames: Iterable[np.ndarray], analysis: FaceAnalysis, patient: Anonymizer, bystander: Anonymizer, clock: StageClock | None
) -> Iterator[np.ndarray]:
    clock = clock or StageClock()
    try:
        with clock.time("render"):
            for track in analysis.tracks:
                (patient if track.role == PATIENT else bystander).prepare(analysis, track.track_id)
        roles = {t.track_id: t.role for t in analysis.tracks}
        for index, frame in enumerate(frames):
            faces = analysis.faces_in_frame(index)
            if not faces:
                yield frame  # nothing to change: no copy
                continue
            with clock.time("render"):
                out = np.array(frame, copy=True)
                others = [f for f in faces if roles[f.track_id] != PATIENT]
                mine = [f for f in faces if roles[f.track_id] == PATIENT]
                if others:
                    out = bystander.anonymize_frame(out, others)
                if mine:
                    out = patient.anonymize_frame(out, mine)
            yield out
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()


def frame_ranges(frames: Sequence[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2, 5, 7-8"``."""
    runs: list[list[int]] = []
    for frame in frames:
        if runs and frame == runs[-1][1] + 1:
            runs[-1][1] = frame
        else:
            runs.append([frame, frame])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


#: the face outline other stages must leave alone: the mesh's oval (brow to chin) grown by this
#: factor about its centre, up to the hair line and over the ears' edge
FACE_OUTLINE_SCALE = 1.25


def face_outlines(analysis: FaceAnalysis, index: int) -> list[np.ndarray]:
    """Outlines ``(m, 2)`` float32 (frame pixels) of every tracked face in frame ``index``: the mesh's
    oval grown by :data:`FACE_OUTLINE_SCALE`, or the face's box where it has no mesh."""
    from clinrelease.face.geometry import ring_points
    from clinrelease.face.landmarks import mesh_indices

    outlines = []
    for face in analysis.faces_in_frame(index):
        if face.landmarks is not None:
            outlines.append(ring_points(face.landmarks, mesh_indices()["oval"], FACE_OUTLINE_SCALE))
        else:
            x0, y0, x1, y1 = (float(v) for v in face.box)
            outlines.append(np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], np.float32))
    return outlines


@dataclass
class ResidualFaces:
    """What :func:`residual_faces` found on the anonymized frames."""

    #: frames showing a face that no anonymized track covers
    frames: list[int] = field(default_factory=list)
    #: frames where a face-like pattern appeared only where the text cleaner painted a tracked
    #: person's clothing (see :func:`residual_faces`): named in the report, not counted as a face
    cleaned_patterns: list[int] = field(default_factory=list)


#: frames before and after a frame whose hands are kept out of its cleaning too: the hand model
#: loses a hand for a frame or two (crossed or fast hands), and a hand it lost was painted over
HAND_HOLD = 2


def hand_outlines(analysis: FaceAnalysis, index: int, hold: int = HAND_HOLD) -> list[np.ndarray]:
    """Outlines ``(m, 2)`` (frame pixels) of the hands found in frame ``index`` and in the ``hold``
    frames on either side of it."""
    return [outline for j in range(index - hold, index + hold + 1) for outline in analysis.hands.get(j, ())]


def residual_faces(
    frames: Iterable[np.ndarray],
    analysis: FaceAnalysis,
    *,
    originals: Iterable[np.ndarray] | None = None,
    painted: Callable[[int], Sequence[TextBox]] | None = None,
    detectors: Sequence[str] = DEFAULT_DETECTORS,
    margin: float = 0.3,
    model_dir: str | Path | None = None,
    sample_every: int = 1,
    prefetch: int = 4,
) -> ResidualFaces:
    """Fail-closed check: the anonymized frames where a detector finds a face that no anonymized
    track covers (its centre outside every track box of that frame, grown by ``margin``).

    With the ``originals`` (in step with ``frames``) and ``painted`` (the regions the text cleaner
    painted on a frame, :meth:`clinrelease.verify.ocr.TextScan.painted_at`), one kind of face is
    told apart: a pattern the cleaner made. A shirt's print with its letters painted out, or the
    hands held over it, can read as a face once the letters are gone; such a face overlaps a
    painted region, lies on a tracked person's body below their face, and the same detectors find
    no face at that place in the original frame. Anything else found stays a residual face.

    ``sample_every`` checks every n-th frame only (1: every frame); frames are decoded ``prefetch``
    ahead in a thread.
    """
    if sample_every < 1:
        raise InputError(f"sample_every must be at least 1, got {sample_every}")
    detector = shared_detector(detectors, model_dir=model_dir)
    found = ResidualFaces()
    pairs = zip(originals, frames) if originals is not None and painted is not None else ((None, f) for f in frames)
    source = threaded(pairs, depth=prefetch, name="decode") if prefetch > 0 else iter(pairs)
    try:
        for index, (original, frame) in enumerate(source):
            if index % sample_every:
                continue
            tracked = analysis.faces_in_frame(index)
            covered = [face.box if face.landmarks is None else _mesh_box(face.landmarks) for face in tracked]
            in_original: list[np.ndarray] | None = None
            pattern = False
            for det in detector.detect(frame):
                if any(_centre_in(det.box, b, margin) for b in covered):
                    continue
                if original is not None and _on_painted_clothing(det.box, painted(index), tracked):
                    if in_original is None:
                        in_original = [d.box for d in detector.detect(original)]
                    if not any(_centre_in(d, det.box, margin) for d in in_original):
                        pattern = True
                        continue
                found.frames.append(index)
                break
            else:
                if pattern:
                    found.cleaned_patterns.append(index)
    finally:
        if hasattr(source, "close"):
            source.close()
    return found


def _centre_in(box: np.ndarray, around: np.ndarray, margin: float) -> bool:
    """Whether ``box``'s centre lies in ``around`` grown by ``margin`` of its size on each side."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    gx, gy = margin * (around[2] - around[0]), margin * (around[3] - around[1])
    return around[0] - gx <= cx <= around[2] + gx and around[1] - gy <= cy <= around[3] + gy


def _on_painted_clothing(box: np.ndarray, painted: Sequence[TextBox], tracked: Sequence[TrackedFace]) -> bool:
    """Whether a found face ``box`` overlaps a painted region and has its centre on the body of a
    person tracked in the frame, below their face (:func:`clinrelease.verify.keypoints.on_body`)."""
    from clinrelease.verify.keypoints import on_body

    x0, y0, x1, y1 = (float(v) for v in box)
    if not any(tb.box[0] < x1 and x0 < tb.box[2] and tb.box[1] < y1 and y0 < tb.box[3] for tb in painted):
        return False
    return any(on_body(box, face.box) for face in tracked)

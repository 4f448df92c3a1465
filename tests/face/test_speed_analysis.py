"""Pass 1 with sparse detection: the mesh tracks between full detections, nothing is lost by it.

A face that appears between two full detections is traced back to the frame it appeared in, a face
that leaves is not extended, and the result matches detection on every frame.
"""

from __future__ import annotations

import numpy as np
import pytest

from _face_helpers import SHARED_MEDIA, carphone, clip_frames
from clinrelease.errors import InputError
from clinrelease.face.pipeline import analyze_faces, anonymize_frames, residual_faces, shared_detector, shared_mesher
from clinrelease.face.registry import get_anonymizer
from clinrelease.pipeline_threads import StageClock


@pytest.fixture(scope="module")
def talking():
    return carphone(20, 1)


def _blank(frame: np.ndarray) -> np.ndarray:
    return np.full_like(frame, 90)


def _face_frames(analysis) -> list[int]:
    return sorted({i for t in analysis.tracks for i in t.faces})


def test_sparse_detection_matches_detection_on_every_frame(talking):
    clock = StageClock()
    sparse = analyze_faces(talking, detect_every=5, clock=clock)
    dense = analyze_faces(talking, detect_every=1)
    assert _face_frames(sparse) == _face_frames(dense) == list(range(20))
    assert len(sparse.tracks) == len(dense.tracks) == 1
    a, b = sparse.patient.faces, dense.patient.faces
    # same meshes within a couple of pixels (the mesh runs on slightly different crops)
    err = np.mean([np.abs(a[i].landmarks - b[i].landmarks).mean() for i in range(20)])
    assert err < 2.0
    # the merged detector ran on far fewer frames than the mesh
    assert clock.calls["detect"] <= 6 and clock.calls["landmarks"] >= 20


@pytest.mark.parametrize("sentinel", [False, True])
def test_face_appearing_between_detections_is_traced_back_to_its_first_frame(talking, sentinel):
    # blank 0-2, face 3-12, blank 13-19: frames 0, 5, 10, 15 are the scheduled full detections
    frames = [_blank(f) if i < 3 or i > 12 else f for i, f in enumerate(talking)]
    analysis = analyze_faces(frames, detect_every=5, sentinel=sentinel)
    assert _face_frames(analysis) == list(range(3, 13))
    assert all(f.landmarks is not None for f in analysis.patient.faces.values())


def test_face_in_the_last_frames_only_is_found(talking):
    frames = [_blank(f) for f in talking[:8]] + talking[8:11]
    analysis = analyze_faces(frames, detect_every=10, sentinel=False)
    assert _face_frames(analysis) == [8, 9, 10]


def test_every_face_frame_is_anonymized_with_sparse_detection(talking):
    frames = [_blank(f) if i < 3 else f for i, f in enumerate(talking[:10])]
    analysis = analyze_faces(frames, detect_every=5, sentinel=False)
    out = list(anonymize_frames(frames, analysis, patient=get_anonymizer("blur"), bystander=get_anonymizer("blur")))
    assert len(out) == 10
    assert all(np.array_equal(out[i], frames[i]) for i in range(3))  # nothing to hide: untouched
    assert all(np.abs(out[i].astype(int) - frames[i]).max() > 20 for i in range(3, 10))
    assert residual_faces(out, analysis).frames == []
    assert residual_faces(frames, analysis.__class__(frames=10, rows=144, columns=176), sample_every=3).frames == [3, 6, 9]


def test_models_are_built_once_per_thread_and_reused(talking):
    assert shared_detector() is shared_detector()
    assert shared_mesher() is shared_mesher()
    assert shared_detector(min_face_px=16) is not shared_detector(min_face_px=12)


def test_bad_settings_and_frames_are_input_errors(talking):
    with pytest.raises(InputError, match="detect_every"):
        analyze_faces(talking, detect_every=0)
    with pytest.raises(InputError, match="sample_every"):
        residual_faces(talking, analyze_faces(talking[:1]), sample_every=0)
    # a bad frame after good ones: the error names it, decoded in the prefetch thread or not
    with pytest.raises(InputError, match="frame 2"):
        analyze_faces([talking[0], talking[1], np.zeros((4, 4), np.uint8)])


def test_decode_error_in_the_prefetch_thread_reaches_the_caller(talking):
    def frames():
        yield talking[0]
        raise InputError("corrupt video bitstream near frame 2")

    with pytest.raises(InputError, match="near frame 2"):
        analyze_faces(frames())


@pytest.mark.skipif(not SHARED_MEDIA.is_dir(), reason=f"shared media {SHARED_MEDIA} is absent (CI has it beside the clone)")
def test_signing_clip_sparse_detection_covers_every_frame_like_dense():
    frames = list(clip_frames(str(SHARED_MEDIA / "asl" / "book.mkv"), 40))
    sparse = analyze_faces(frames, detect_every=10)
    dense = analyze_faces(frames, detect_every=1)
    assert _face_frames(sparse) == _face_frames(dense) == list(range(40))
    assert sparse.patient is not None and len(sparse.patient.faces) == 40


@pytest.mark.parametrize("length", [1, 2, 3, 6, 7, 30, 600])
def test_smoothing_without_scipy_signal_matches_savgol_filter(length):
    from scipy.signal import savgol_filter

    from clinrelease.face.landmarks import smooth_sequence

    points = np.random.default_rng(length).normal(300, 40, (length, 478, 2)).astype(np.float32)
    window = min(7, length if length % 2 else length - 1)
    expected = points if window <= 2 else savgol_filter(points, window, 2, axis=0, mode="interp")
    assert np.allclose(smooth_sequence(points), expected, atol=1e-3)


@pytest.mark.parametrize("shape", [(1, 1), (1, 4), (4, 1), (3, 3), (3, 5), (6, 4), (6, 6), (8, 9)])
def test_track_assignment_is_optimal_like_scipy(shape):
    from scipy.optimize import linear_sum_assignment

    from clinrelease.face.track import min_cost_assignment

    rng = np.random.default_rng(sum(shape))
    for _ in range(20):
        cost = rng.random(shape)
        rows, cols = min_cost_assignment(cost)
        ref_rows, ref_cols = linear_sum_assignment(cost)
        assert len(rows) == min(shape) and len(set(cols.tolist())) == len(cols)
        assert np.isclose(cost[rows, cols].sum(), cost[ref_rows, ref_cols].sum())


def _face_mesh_of_size(width: float) -> np.ndarray:
    """A real face mesh (carphone's), scaled about its centre to ``width`` pixels between the outer eye corners."""
    mesh = analyze_faces(carphone(1, 1)).patient.faces[0].landmarks.astype(np.float64)
    centre = mesh[:468].mean(axis=0)
    return (mesh - centre) * width / np.linalg.norm(mesh[263] - mesh[33]) + 300.0


def _turn(mesh: np.ndarray, degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    centre = mesh[:468].mean(axis=0)
    return (mesh - centre) @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) + centre


def test_track_smoothing_in_blocks_in_place_equals_smoothing_the_whole_run_at_once():
    """A long run is smoothed 256 frames at a time, written back in place: the same meshes as
    :func:`smooth_shapes` over the whole run (a face wandering and turning, with detector noise)."""
    from clinrelease.face.base import FaceTrack, TrackedFace
    from clinrelease.face.landmarks import smooth_shapes
    from clinrelease.face.track import smooth_track

    rng = np.random.default_rng(7)
    face = _face_mesh_of_size(80.0)
    drift = np.cumsum(rng.normal(0, 2, (700, 2)), axis=0)
    turn = np.cumsum(rng.normal(0, 1.5, 700))
    raw = np.stack([_turn(face, turn[i]) + drift[i] + rng.normal(0, 1.0, face.shape) for i in range(700)]).astype(np.float32)
    track = FaceTrack(0)
    for i in range(700):
        track.faces[i] = TrackedFace(0, i, np.zeros(4, np.float32), landmarks=raw[i].copy())
    arrays = [track.faces[i].landmarks for i in range(700)]
    smooth_track(track, 7, block=256)
    got = np.stack([track.faces[i].landmarks for i in range(700)])
    assert np.abs(got - smooth_shapes(raw, raw[0], 7)).max() < 0.01
    assert np.abs(got - raw).mean() > 0.3  # it did smooth
    assert all(track.faces[i].landmarks is arrays[i] for i in range(700))  # no second copy kept


def test_a_head_turning_fast_keeps_its_mesh_on_the_face():
    """A real face mesh (80 px between the outer eye corners) turned 13 degrees a frame, a head
    tilting from -40 to 40 degrees and back, with a pixel of detector noise: smoothing the points
    averaged each mesh with its neighbours' and left it degrees behind the face (the swap then drew
    the surrogate's eyes on the forehead); smoothing the shape keeps every mesh on its own frame's
    pose and still takes most of the noise out."""
    from clinrelease.face.base import FaceTrack, TrackedFace
    from clinrelease.face.geometry import fit_similarity
    from clinrelease.face.landmarks import smooth_sequence
    from clinrelease.face.track import smooth_track

    face = _face_mesh_of_size(80.0)
    angles = np.concatenate([np.linspace(-40, 40, 7), np.linspace(40, -40, 7)[1:]])
    rng = np.random.default_rng(3)
    truth = np.stack([_turn(face, angle) for angle in angles])
    noisy = (truth + rng.normal(0, 1.0, truth.shape)).astype(np.float32)
    track = FaceTrack(0)
    for i in range(len(angles)):
        track.faces[i] = TrackedFace(0, i, np.zeros(4, np.float32), landmarks=noisy[i].copy())
    smooth_track(track, 7)
    got = np.stack([track.faces[i].landmarks for i in range(len(angles))]).astype(np.float64)

    def worst_turn(meshes: np.ndarray) -> float:
        # how far each mesh is turned from the true one (a similarity fitted on the face points)
        return max(abs(np.degrees(np.arctan2(m[1, 0], m[0, 0]))) for m in (fit_similarity(a[:468], b[:468]) for a, b in zip(meshes, truth)))

    assert worst_turn(got) < 0.5 < 3.0 < worst_turn(smooth_sequence(noisy, 7))
    assert np.abs(got - truth).mean() < 0.8 * np.abs(noisy - truth).mean()

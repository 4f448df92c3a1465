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


def test_track_smoothing_in_blocks_in_place_equals_whole_run_savgol():
    from scipy.signal import savgol_filter

    from clinrelease.face.base import FaceTrack, TrackedFace
    from clinrelease.face.track import smooth_track

    raw = np.random.default_rng(7).normal(300, 30, (700, 478, 2)).astype(np.float32)
    track = FaceTrack(0)
    for i in range(700):
        track.faces[i] = TrackedFace(0, i, np.zeros(4, np.float32), landmarks=raw[i].copy())
    arrays = [track.faces[i].landmarks for i in range(700)]
    smooth_track(track, 7, block=256)
    got = np.stack([track.faces[i].landmarks for i in range(700)])
    assert np.allclose(got, savgol_filter(raw, 7, 2, axis=0, mode="interp"), atol=1e-3)
    assert all(track.faces[i].landmarks is arrays[i] for i in range(700))  # no second copy kept

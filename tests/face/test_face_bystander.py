"""Bystanders' faces checked as they are rendered (clinrelease.face.bystander): two real seated clips
side by side, the second person a bystander whose textured blur a recognizer can still take for
them; real swap, real recognizers."""

from __future__ import annotations

import numpy as np
import pytest

from _face_helpers import KEY_A, SHARED_MEDIA, clip_frames
from clinrelease.face.bystander import BYSTANDER_SWAP
from clinrelease.face.pipeline import analyze_faces, anonymize_frames
from clinrelease.face.small import GUARD_MARGIN, plan_methods
from clinrelease.face.swap import SwapAnonymizer
from clinrelease.face.textured_blur import TexturedBlurAnonymizer, flat_filled, flat_over


@pytest.fixture(scope="module")
def two_people():
    from clinrelease.fixtures import two_people

    paths = [SHARED_MEDIA / "asl" / f"{name}.mkv" for name in ("again", "book")]
    if not all(p.is_file() for p in paths):
        pytest.skip(f"shared media {paths} are not present")
    left, right = ([f.copy() for f in clip_frames(str(p), 4, 3)] for p in paths)
    frames = two_people(left, right)
    analysis = analyze_faces(frames, prefetch=0)
    bystanders = [t for t in analysis.tracks if t.role != "patient"]
    assert analysis.patient is not None and len(bystanders) == 1
    return frames, analysis, bystanders[0]


@pytest.fixture(scope="module")
def recognizers():
    from clinrelease.verify.reid import get_recognizer

    return {name: get_recognizer(name) for name in ("dlib", "sface")}


def _similarities(report, track, recognizer: str = "sface") -> list[float]:
    return [s.similarity for s in report.results[recognizer].samples if s.track_id == track.track_id]


def _release(frames, analysis, plan):
    swap = SwapAnonymizer(key=KEY_A, pseudonym="patient-1")
    return list(anonymize_frames(frames, analysis, patient=swap, bystander=TexturedBlurAnonymizer(), prefetch=0, methods=plan))


def test_a_bystander_the_blur_leaves_recognizable_gets_a_surrogate_of_their_own(two_people, recognizers) -> None:
    from clinrelease.verify.reid import verify_reid

    frames, analysis, bystander = two_people
    unguarded = _release(frames, analysis, plan_methods(analysis))
    sface = recognizers["sface"]
    before = _similarities(verify_reid(frames, unguarded, analysis, recognizers=["sface"], sample_every=1, prefetch=0), bystander)
    # the textured blur of a full-size face keeps enough of it for SFace to come within the margin
    assert max(before) >= sface.threshold - GUARD_MARGIN, before
    plan = plan_methods(analysis, guard=recognizers)
    out = _release(frames, analysis, plan)
    guarded = plan.guarded[bystander.track_id]
    # once swapped the bystander keeps the swap: no flicker between a blur and a person
    assert guarded == list(range(guarded[0], len(frames)))
    assert {plan.by_track[bystander.track_id][i] for i in guarded} == {BYSTANDER_SWAP}
    assert plan.to_dict()["frames_by_method"][BYSTANDER_SWAP] == {str(bystander.track_id): guarded}
    after = verify_reid(frames, out, analysis, recognizers=list(recognizers), sample_every=1, prefetch=0)
    for name, rec in recognizers.items():
        similarities = _similarities(after, bystander, name)
        assert len(similarities) == len(frames) and not any(map(rec.is_match, similarities)), (name, similarities)
    for index in guarded:
        face = bystander.faces[index]
        assert not flat_over(flat_filled(frames[index], out[index]), face.box)
        # swapped, not blurred
        assert not (out[index] == unguarded[index])[int(face.box[1]) : int(face.box[3]), int(face.box[0]) : int(face.box[2])].all()


def test_a_bystander_the_blur_already_takes_away_is_left_as_the_blur_renders_it(two_people, recognizers) -> None:
    frames, analysis, bystander = two_people
    # recognizers at a limit nothing reaches: the blur is far enough everywhere
    lax = {name: rec.at(1.01 if rec.higher_is_same else -1.0) for name, rec in recognizers.items()}
    plan = plan_methods(analysis, guard=lax)
    out = _release(frames, analysis, plan)
    assert plan.guarded == {} and bystander.track_id not in plan.by_track
    assert all(np.array_equal(a, b) for a, b in zip(out, _release(frames, analysis, plan_methods(analysis))))


def test_a_small_bystander_is_swapped_at_recognizer_scale_so_the_swap_carries_a_new_identity(recognizers) -> None:
    """classroom.gif: bystanders' faces of 17-25 px. Drawn straight at that size, the escalated swap
    stayed within the guard's reach in 6 of the 9 frames of the largest of them (and the blur went
    over it); rendered upsampled, as the patient's small faces are, it clears the guard."""
    from clinrelease.face.small import SWAP_MIN_FACE_PX, TEXTURED_BLUR

    path = SHARED_MEDIA / "groups" / "classroom.gif"
    if not path.is_file():
        pytest.skip(f"shared media {path} is not present")
    frames = [f[: f.shape[0] // 2 * 2, : f.shape[1] // 2 * 2].copy() for f in clip_frames(str(path), 12, 2)]
    analysis = analyze_faces(frames, prefetch=0, patient_rule="most_present", min_face_px=16)
    bystanders = [t for t in analysis.tracks if t.role != "patient"]
    largest = max(bystanders, key=lambda t: t.median_size)
    assert largest.median_size < SWAP_MIN_FACE_PX
    plan = plan_methods(analysis, guard=recognizers)
    out = _release(frames, analysis, plan)
    methods = plan.by_track[largest.track_id]
    assert sorted(methods) == sorted(largest.faces)
    assert sum(m == BYSTANDER_SWAP for m in methods.values()) >= 0.75 * len(methods), methods
    for track in bystanders:
        for index, face in track.faces.items():
            if plan.by_track.get(track.track_id, {}).get(index) != TEXTURED_BLUR:
                continue
            # the last step is the full blur over the swap, never a flat patch
            assert not flat_over(flat_filled(frames[index], out[index]), face.box)

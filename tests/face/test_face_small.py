"""Size- and turn-aware anonymization of swapped faces (clinrelease.face.small): a face under 40 px is
swapped at recognizer scale, a face turned past the profile's limit gets the profile's fallback, per
face and frame (real frames of book.mkv, shrunk as a far camera films it; real swap and recognizers)."""

from __future__ import annotations

import numpy as np
import pytest

from _face_helpers import KEY_A, SHARED_MEDIA, clip_frames, shrunk_asl_clip
from clinrelease.face.pipeline import SWAP_MIN_FACE_PX, analyze_faces, anonymize_frames
from clinrelease.face.small import BLURRED_SWAP, SWAP, TEXTURED_BLUR, UPSCALED_SWAP, face_size, plan_methods, size_aware
from clinrelease.face.surrogates import frontal_offset
from clinrelease.face.swap import SwapAnonymizer
from clinrelease.face.textured_blur import TexturedBlurAnonymizer, flat_filled, flat_over


@pytest.fixture(scope="module")
def book():
    path = SHARED_MEDIA / "asl" / "book.mkv"
    if not path.is_file():
        pytest.skip(f"shared media {path} is not present")
    frames = [f.copy() for f in clip_frames(str(path), 4, 5)]
    return frames, analyze_faces(frames, min_face_px=12, prefetch=0)


@pytest.fixture(scope="module")
def tiny(book):
    from clinrelease.fixtures import scaled

    frames, full = book
    small = [f[: f.shape[0] // 2 * 2, : f.shape[1] // 2 * 2] for f in scaled(frames, 24.0 / full.patient.median_size)]
    return small, analyze_faces(small, min_face_px=12, prefetch=0)


@pytest.fixture(scope="module")
def tiny_eat():
    """eat.mkv (a broad grin, short hair) shrunk to a 24 px face: the upscaled swap of most keys is
    still within dlib's reach of the patient on some of its frames."""
    small = shrunk_asl_clip("eat", 24.0, 8, 3)
    return small, analyze_faces(small, min_face_px=12, prefetch=0)


#: the surrogate of KEY_A's sequence for "patient-1" whose swap on eat.mkv at 24 px comes within
#: the guard's margin of the patient on some frames only (dlib 0.59-0.70 over its eight frames)
SOME_CLOSE = 8
#: the surrogate whose plain swap on again.mkv at 44 px is the patient's on some frames (2-7) and clear
#: of the guard's margin on the others (the first counter of KEY_A's sequence that does, since the
#: meshes' pose is no longer smoothed through a turn)
MID_CLOSE = 26


def _swap(counter: int = 0) -> SwapAnonymizer:
    return SwapAnonymizer(key=KEY_A, pseudonym="patient-1", counter=counter)


def test_a_face_under_40_px_is_swapped_at_recognizer_scale_and_is_another_person_with_its_head_kept(tiny) -> None:
    from clinrelease.verify.keypoints import verify_keypoints
    from clinrelease.verify.reid import verify_reid

    frames, analysis = tiny
    patient = analysis.patient
    assert patient is not None and patient.median_size < SWAP_MIN_FACE_PX
    plan = plan_methods(analysis)
    meshed = [i for i, f in sorted(patient.faces.items()) if f.landmarks is not None]
    assert meshed and all(plan.by_track[patient.track_id][i] == UPSCALED_SWAP for i in meshed)
    assert plan.to_dict()["frames_by_method"][UPSCALED_SWAP] == {str(patient.track_id): meshed}
    out = list(anonymize_frames(frames, analysis, patient=_swap(), bystander=TexturedBlurAnonymizer(), prefetch=0, methods=plan))
    for index in meshed:
        face = patient.faces[index]
        changed = (out[index] != frames[index]).any(axis=2)
        ys, xs = np.nonzero(changed)
        cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
        # the swap changed the face and nothing beyond its warped ring
        assert changed.sum() >= 0.5 * face_size(face) ** 2, index
        assert (np.abs(xs - cx) <= 1.6 * face_size(face) + 1).all() and (np.abs(ys - cy) <= 1.6 * face_size(face) + 1).all()
        assert not flat_over(flat_filled(frames[index], out[index]), face.box)
    reid = verify_reid(frames, out, analysis, recognizers=["dlib", "sface"], sample_every=1, prefetch=0)
    for name, result in reid.results.items():
        assert result.frames_checked >= 2 and result.frames_matched == 0, (name, result.worst_similarity)
    keypoints = verify_keypoints(frames, out, sample_every=1, face=False)
    # the larger reach moves the face outline: head AP 0.65-0.98 measured at 24 px (0.89-0.99 with the
    # plain swap, which dlib still matched); a blur of the face loses the head (0.03)
    assert keypoints.head_ap is not None and keypoints.head_ap >= 0.5, keypoints.head_ap


def test_a_face_the_swap_can_carry_is_rendered_exactly_as_the_swap_renders_it(book) -> None:
    frames, analysis = book
    plan = plan_methods(analysis)
    assert set(plan.by_track[analysis.patient.track_id].values()) == {SWAP} and plan.to_dict()["frames_by_method"] == {}
    plain = list(anonymize_frames(frames, analysis, patient=_swap(), bystander=TexturedBlurAnonymizer(), prefetch=0))
    aware = list(anonymize_frames(frames, analysis, patient=_swap(), bystander=TexturedBlurAnonymizer(), prefetch=0, methods=plan))
    assert all(np.array_equal(a, b) for a, b in zip(plain, aware))


def test_a_face_turned_past_the_limit_gets_the_profiles_fallback_in_those_frames_only(book) -> None:
    frames, analysis = book
    patient = analysis.patient
    yaw = {i: abs(frontal_offset(f.landmarks)) for i, f in patient.faces.items()}
    # a limit between this clip's least and most turned frames: some frames are past it, some not
    limit = float(np.median(sorted(yaw.values())))
    turned = sorted(i for i, v in yaw.items() if v > limit)
    assert 0 < len(turned) < len(yaw)
    blur = plan_methods(analysis, profile_view="blur", yaw_limit=limit)
    assert blur.turned == {patient.track_id: turned}
    assert {i for i, m in blur.by_track[patient.track_id].items() if m == TEXTURED_BLUR} == set(turned)
    anyway = plan_methods(analysis, profile_view="swap_anyway", yaw_limit=limit)
    assert anyway.turned == blur.turned and set(anyway.by_track[patient.track_id].values()) == {SWAP}
    out = list(anonymize_frames(frames, analysis, patient=_swap(), bystander=TexturedBlurAnonymizer(), prefetch=0, methods=blur))
    swapped = list(anonymize_frames(frames, analysis, patient=_swap(), bystander=TexturedBlurAnonymizer(), prefetch=0))
    for index in range(len(frames)):
        # turned frames are blurred with grain (never flat), the others swapped as usual
        assert np.array_equal(out[index], swapped[index]) == (index not in turned), index
        assert not flat_over(flat_filled(frames[index], out[index]), patient.faces[index].box)


def test_profile_settings_outside_the_choices_are_refused(book) -> None:
    from clinrelease.errors import ConfigError

    with pytest.raises(ConfigError, match="faces.small_face must be one of upscaled_swap, textured_blur, swap"):
        plan_methods(book[1], small_face="pixelate")
    with pytest.raises(ConfigError, match="faces.profile_view must be one of blur, swap_anyway, quarantine"):
        plan_methods(book[1], profile_view="hide")


def test_a_small_face_the_swap_leaves_within_reach_of_the_patient_is_blurred_over_in_those_frames_only(tiny_eat) -> None:
    from clinrelease.verify.reid import get_recognizer, verify_reid

    frames, analysis = tiny_eat
    patient = analysis.patient
    recognizers = {name: get_recognizer(name) for name in ("dlib", "sface")}
    # without the guard: the swap alone, as the surrogate screening compares it (this key's second
    # surrogate: its swap is too close on some frames and clear on others)
    plain_plan = plan_methods(analysis)
    plain = list(anonymize_frames(frames, analysis, patient=_swap(SOME_CLOSE), bystander=TexturedBlurAnonymizer(), prefetch=0, methods=plain_plan))
    unguarded = verify_reid(frames, plain, analysis, recognizers=list(recognizers), sample_every=1, prefetch=0)
    assert unguarded.results["dlib"].frames_matched >= 1  # the swap alone is still the patient for dlib
    plan = plan_methods(analysis, guard=recognizers)
    out = list(anonymize_frames(frames, analysis, patient=_swap(SOME_CLOSE), bystander=TexturedBlurAnonymizer(), prefetch=0, methods=plan))
    guarded = plan.guarded[patient.track_id]
    methods = plan.by_track[patient.track_id]
    assert set(unguarded.results["dlib"].matched_frames) <= set(guarded) and len(guarded) < len(frames)
    assert {methods[i] for i in guarded} <= {BLURRED_SWAP, TEXTURED_BLUR}
    assert plan.to_dict()["guarded_frames_by_track"] == {str(patient.track_id): sorted(guarded)}
    assert plan.blurred_frames(patient.track_id) == frozenset(guarded)
    for index in range(len(frames)):
        # the frames the swap took clear of the patient are rendered as without the guard
        assert np.array_equal(out[index], plain[index]) == (index not in guarded), index
        assert not flat_over(flat_filled(frames[index], out[index]), patient.faces[index].box)
    reid = verify_reid(frames, out, analysis, recognizers=list(recognizers), sample_every=1, prefetch=0)
    for name, result in reid.results.items():
        assert result.frames_checked >= 4 and result.frames_matched == 0, (name, result.worst_similarity)
    # the screening compares the plain swaps: its anonymizer does not guard
    assert not size_aware(_swap(), plan).guard and size_aware(_swap(), plan, guard=True).guard


@pytest.fixture(scope="module")
def mid_again():
    """again.mkv shrunk to a 44 px face: above the small-face size, yet the plain swap of KEY_A's
    surrogate :data:`MID_CLOSE` is still the patient for dlib or SFace on some frames."""
    small = shrunk_asl_clip("again", 44.0, 8, 3)
    return small, analyze_faces(small, min_face_px=12, prefetch=0)


def test_a_plain_swap_just_above_the_small_face_size_that_is_still_the_patient_is_replaced_in_those_frames_only(mid_again) -> None:
    from clinrelease.face.small import GUARD_MAX_FACE_PX
    from clinrelease.verify.reid import get_recognizer, verify_reid

    frames, analysis = mid_again
    patient = analysis.patient
    sizes = [face_size(f) for f in patient.faces.values()]
    assert SWAP_MIN_FACE_PX <= min(sizes) and max(sizes) < GUARD_MAX_FACE_PX
    recognizers = {name: get_recognizer(name) for name in ("dlib", "sface")}
    plain_plan = plan_methods(analysis)
    plain = list(anonymize_frames(frames, analysis, patient=_swap(MID_CLOSE), bystander=TexturedBlurAnonymizer(), prefetch=0, methods=plain_plan))
    unguarded = verify_reid(frames, plain, analysis, recognizers=list(recognizers), sample_every=1, prefetch=0)
    matched = set().union(*(r.matched_frames for r in unguarded.results.values()))
    assert matched, "the plain swap alone should still be the patient on some frames"
    plan = plan_methods(analysis, guard=recognizers)
    out = list(anonymize_frames(frames, analysis, patient=_swap(MID_CLOSE), bystander=TexturedBlurAnonymizer(), prefetch=0, methods=plan))
    guarded = plan.guarded[patient.track_id]
    assert matched <= set(guarded) and len(guarded) < len(frames)
    assert {plan.by_track[patient.track_id][i] for i in guarded} <= {UPSCALED_SWAP, BLURRED_SWAP, TEXTURED_BLUR}
    for index in range(len(frames)):
        assert np.array_equal(out[index], plain[index]) == (index not in guarded), index
        assert not flat_over(flat_filled(frames[index], out[index]), patient.faces[index].box)
    reid = verify_reid(frames, out, analysis, recognizers=list(recognizers), sample_every=1, prefetch=0)
    for name, result in reid.results.items():
        assert result.frames_checked >= 6 and result.frames_matched == 0, (name, result.worst_similarity)


def test_a_guard_chain_that_clears_nothing_draws_its_rendering_farthest_from_the_patient_not_its_last(book) -> None:
    import cv2

    from clinrelease.face.small import GUARD_MARGIN, clearance, first_clear
    from clinrelease.verify.reid import FaceReference, get_recognizer

    frames, analysis = book
    face = analysis.patient.faces[0]
    recognizers = {name: get_recognizer(name) for name in ("dlib", "sface")}
    reference = FaceReference(frames[0], face)
    softened = cv2.GaussianBlur(frames[0], (0, 0), 1.0)
    unchanged = frames[0].copy()
    # both are still the patient; the softened one a little less so
    assert clearance(recognizers, reference, unchanged) < clearance(recognizers, reference, softened) < GUARD_MARGIN
    method, out, clear = first_clear(recognizers, reference, iter([("softened", softened), ("unchanged", unchanged)]))
    assert (method, clear) == ("softened", False) and out is softened
    # the first rendering that clears the margin is taken, and nothing after it is rendered
    swapped = next(iter(anonymize_frames(frames[:1], analysis, patient=_swap(), bystander=TexturedBlurAnonymizer(), prefetch=0)))
    assert clearance(recognizers, reference, swapped) >= GUARD_MARGIN

    def renderings():
        yield "softened", softened
        yield "swapped", swapped
        raise AssertionError("rendered past the first clear rendering")

    method, out, clear = first_clear(recognizers, reference, renderings())
    assert (method, clear) == ("swapped", True) and out is swapped


#: the surrogate whose plain swap on again.mkv at 48 px clears the guard's margin as rendered on a
#: frame where, once encoded, it is the patient's face again
ENCODED_CLOSE = 1


def test_the_guard_judges_a_small_face_as_the_encoder_will_leave_it(tmp_path) -> None:
    """A swap's new identity at 40-60 px sits in its finest detail, which the encoder rounds away: a
    frame the guard passed as rendered was matched to the patient in the released file. The guard
    also judges the face softened as the encoder softens it (never farther than as rendered), and
    that frame is no longer passed."""
    from clinrelease.dicom.video import open_video
    from clinrelease.face.small import GUARD_MARGIN, clearance, encoded_look
    from clinrelease.fixtures import write_mp4
    from clinrelease.verify.reid import FaceReference, get_recognizer

    frames = shrunk_asl_clip("again", 48.0, 8, 3)
    analysis = analyze_faces(frames, min_face_px=12, prefetch=0)
    patient = analysis.patient
    plain = list(anonymize_frames(frames, analysis, patient=_swap(ENCODED_CLOSE), bystander=TexturedBlurAnonymizer(), prefetch=0, methods=plan_methods(analysis)))
    write_mp4(tmp_path / "released.mp4", plain, 25.0, {})
    released = list(open_video(tmp_path / "released.mp4").frames())
    recognizers = {name: get_recognizer(name) for name in ("dlib", "sface")}
    missed = 0
    for index, face in sorted(patient.faces.items()):
        reference = FaceReference(frames[index], face)
        rendered = clearance(recognizers, reference, plain[index])
        judged = clearance(recognizers, reference, plain[index], face.box)
        assert judged <= rendered + 1e-9, index
        if rendered >= GUARD_MARGIN and clearance(recognizers, reference, released[index]) < 0:
            missed += 1  # passed as rendered, the patient once encoded
            assert judged < GUARD_MARGIN, (index, rendered, judged)
    assert missed >= 1
    # the softening stays on the face and its surroundings
    face = patient.faces[0]
    changed = np.argwhere((encoded_look(plain[0], face.box) != plain[0]).any(axis=2))
    x0, y0, x1, y1 = face.box
    w, h = x1 - x0, y1 - y0
    assert len(changed) and changed[:, 1].min() >= x0 - w - 1 and changed[:, 1].max() <= x1 + w + 1
    assert changed[:, 0].min() >= y0 - h - 1 and changed[:, 0].max() <= y1 + h + 1

"""Bystanders' treatment: blur plus grain in a feathered oval carries no identity and paints no flat patch
(real faces: the carphone clip; the recognizers and the hard-video bench's flat-fill measure)."""

from __future__ import annotations

import numpy as np
import pytest

from _face_helpers import carphone
from clinrelease.face.baselines import BlurAnonymizer, face_ellipse
from clinrelease.face.pipeline import analyze_faces
from clinrelease.face.textured_blur import MIN_GRAIN, TexturedBlurAnonymizer, flat_filled
from clinrelease.verify.reid import compare_face, get_recognizer


@pytest.fixture(scope="module")
def clip():
    frames = carphone(count=4, step=10)
    return frames, analyze_faces(frames, prefetch=0)


def test_a_blurred_face_with_grain_leaves_no_flat_patch_where_a_plain_blur_leaves_one(clip) -> None:
    frames, analysis = clip
    for index, frame in enumerate(frames):
        faces = analysis.faces_in_frame(index)
        assert faces, index
        x0, y0, x1, y1 = np.round(faces[0].box).astype(int)
        plain = BlurAnonymizer().anonymize_frame(frame.copy(), faces)
        grained = TexturedBlurAnonymizer().anonymize_frame(frame.copy(), faces)
        area = (x1 - x0) * (y1 - y0)
        # the plain blur is what the bench flags (a flat patch over the face), the grained one is not
        assert flat_filled(frame, plain)[y0:y1, x0:x1].sum() >= 0.05 * area, index
        assert flat_filled(frame, grained)[y0:y1, x0:x1].sum() == 0, index
        grey = grained[y0:y1, x0:x1].astype(np.float32).mean(axis=2)
        assert np.abs(np.diff(grey, axis=1)).mean() >= 0.5 * MIN_GRAIN / 2  # grain, not a smooth blob


def test_a_blurred_face_with_grain_is_no_longer_the_person_and_only_its_oval_changes(clip) -> None:
    frames, analysis = clip
    recognizers = {name: get_recognizer(name) for name in ("dlib", "sface")}
    compared = 0
    for index, frame in enumerate(frames):
        faces = analysis.faces_in_frame(index)
        out = TexturedBlurAnonymizer().anonymize_frame(frame.copy(), faces)
        for name, rec in recognizers.items():
            cmp = compare_face(rec, frame, out, faces[0])
            if cmp is not None:
                compared += 1
                assert not rec.is_match(cmp[0]), (index, name, cmp)
        # nothing changes outside the ellipse and its fade band
        (cx, cy), (ax, ay), _ = face_ellipse(faces[0], *frame.shape[:2])
        band = 0.2 * max(ax, ay) + 2
        ys, xs = np.nonzero((out != frame).any(axis=2))
        assert (((xs - cx) / (ax + band)) ** 2 + ((ys - cy) / (ay + band)) ** 2 <= 1.0).all()
        # the grain is drawn from the track and frame: the same frame gives the same output
        assert np.array_equal(out, TexturedBlurAnonymizer().anonymize_frame(frame.copy(), faces))
    assert compared >= 4


def test_profiles_choose_the_bystander_treatment_and_the_face_on_ones_never_a_flat_one() -> None:
    from clinrelease.face.registry import get_anonymizer
    from clinrelease.profiles import load_profile

    for name in ("pd_gait", "pd_motor", "pd_face"):
        assert load_profile(name).anonymizer.bystander == "textured_blur", name
    assert isinstance(get_anonymizer("textured_blur"), TexturedBlurAnonymizer)


def test_the_grain_on_a_tiny_face_is_skin_texture_strong_not_as_strong_as_its_eyes_and_brows(clip) -> None:
    """carphone shrunk to a 24 px face: its detail finer than 2 px is its features (eyes, brows), far
    above a skin's texture; grain that strong speckled the oval, so it is held at MAX_GRAIN."""
    import cv2

    from clinrelease.face.textured_blur import MAX_GRAIN, fine_detail, grain_level

    frames, analysis = clip
    factor = 24.0 / analysis.patient.median_size
    small = [cv2.resize(f, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA) for f in frames]
    tiny = analyze_faces(small, min_face_px=12, prefetch=0)
    face = tiny.patient.faces[0]
    rows, columns = small[0].shape[:2]
    (cx, cy), (ax, ay), _ = face_ellipse(face, rows, columns, 1.0)
    inside = np.zeros((rows, columns), np.uint8)
    cv2.ellipse(inside, (cx, cy), (ax, ay), 0, 0, 360, 1, -1)
    assert fine_detail(small[0], inside > 0) > MAX_GRAIN  # the features, not skin
    assert grain_level(small[0], inside > 0) == MAX_GRAIN
    assert grain_level(small[0], np.zeros((rows, columns), bool)) == MIN_GRAIN  # nothing around: the floor
    out = TexturedBlurAnonymizer().anonymize_frame(small[0].copy(), [face])
    assert fine_detail(out, inside > 0) <= 1.2 * MAX_GRAIN

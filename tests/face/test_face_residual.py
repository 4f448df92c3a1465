"""The residual-face check on released frames: a face no anonymized track covers fails the item,
except a face-like pattern the text cleaner made on a tracked person's clothing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from _face_helpers import SHARED_MEDIA, clip_frames
from clinrelease.face.pipeline import analyze_faces, residual_faces, shared_detector
from clinrelease.models import model_path
from clinrelease.verify.ocr import TextBox


def _print_on(frames: list[np.ndarray], x: int, y: int, width: int) -> tuple[list[np.ndarray], list[np.ndarray], TextBox]:
    """``frames`` with a photo of a face printed at (x, y), ``width`` wide (a shirt's print as the
    cleaner leaves it), the same with a burned-in label across the print's eyes and nose (the
    original: no detector finds a face under it), and the label's region."""
    astronaut = cv2.imread(str(model_path("sample_astronaut")))[:, :, ::-1]
    x0, y0, x1, y1 = shared_detector().detect(astronaut)[0].box.astype(int)
    face = astronaut[max(0, y0 - 20) : y1 + 10, max(0, x0 - 10) : x1 + 10]
    face = cv2.resize(face, (width, round(width * face.shape[0] / face.shape[1])), interpolation=cv2.INTER_AREA)
    top, height = y + round(0.3 * face.shape[0]), round(0.45 * face.shape[0])
    label = (x - 10, top, x + width + 10, top + height)
    released, original = [], []
    for frame in frames:
        shown = frame.copy()
        shown[y : y + face.shape[0], x : x + width] = face
        hidden = shown.copy()
        cv2.rectangle(hidden, label[:2], label[2:], (255, 255, 255), -1)
        cv2.putText(hidden, "ID 4711", (x - 5, top + round(0.3 * face.shape[0])), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 2)
        released.append(shown)
        original.append(hidden)
    return released, original, TextBox(label, "", 0.0, 0)


@pytest.fixture(scope="module")
def signer() -> list[np.ndarray]:
    path = SHARED_MEDIA / "asl" / "book.mkv"
    if not path.is_file():
        pytest.skip(f"shared media {path} is not present")
    return [f.copy() for f in clip_frames(str(path), 3, 10)]


def test_a_face_print_revealed_where_the_cleaner_painted_the_patients_shirt_is_a_pattern_not_a_residual_face(signer):
    released, original, label = _print_on(signer, 300, 290, 70)
    analysis = analyze_faces(original, min_face_px=16, prefetch=0)
    assert [len(t.faces) for t in analysis.tracks] == [3]  # the signer; the print is hidden under the label
    found = residual_faces(released, analysis, originals=original, painted=lambda i: [label], prefetch=0)
    assert (found.frames, found.cleaned_patterns) == ([], [0, 1, 2])
    # told nothing of the cleaner, the check fails the frames
    assert residual_faces(released, analysis, prefetch=0).frames == [0, 1, 2]


def test_a_revealed_face_stays_a_residual_face_where_any_of_the_patterns_marks_is_missing(signer):
    released, original, label = _print_on(signer, 300, 290, 70)
    analysis = analyze_faces(original, min_face_px=16, prefetch=0)
    # the detectors find it in the original too: a face, whatever was painted
    seen = residual_faces(released, analysis, originals=released, painted=lambda i: [label], prefetch=0)
    assert seen.frames == [0, 1, 2] and not seen.cleaned_patterns
    # nothing was painted where it is
    elsewhere = TextBox((20, 20, 120, 50), "", 0.0, 0)
    assert residual_faces(released, analysis, originals=original, painted=lambda i: [elsewhere], prefetch=0).frames == [0, 1, 2]
    # off the tracked person's body (on the chair beside her)
    released, original, label = _print_on(signer, 520, 300, 70)
    assert residual_faces(released, analysis, originals=original, painted=lambda i: [label], prefetch=0).frames == [0, 1, 2]

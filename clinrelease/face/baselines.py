"""The paper's baseline anonymizers: Gaussian blur, pixelation, solid mask over an ellipse per face."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clinrelease.face.base import FaceAnalysis, TrackedFace


def face_ellipse(face: TrackedFace, rows: int, columns: int, grow: float = 1.25) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int, int, int]]:
    """Centre, half-axes and clipped bounding box of the ellipse that covers a face with margin.

    The mesh box (when there is one) misses the upper forehead and hair line, so the ellipse reaches
    further up than down.
    """
    box = face.box
    if face.landmarks is not None:
        box = np.array([*face.landmarks.min(axis=0), *face.landmarks.max(axis=0)], np.float32)
    w, h = box[2] - box[0], box[3] - box[1]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2 - 0.08 * h
    ax, ay = grow * w / 2, grow * h * 0.58
    x0, y0 = int(max(0, cx - ax)), int(max(0, cy - ay))
    x1, y1 = int(min(columns, cx + ax + 1)), int(min(rows, cy + ay + 1))
    return (int(round(cx)), int(round(cy))), (max(1, int(round(ax))), max(1, int(round(ay)))), (x0, y0, x1, y1)


def _ellipse_mask(centre: tuple[int, int], axes: tuple[int, int], region: tuple[int, int, int, int]) -> np.ndarray:
    import cv2

    x0, y0, x1, y1 = region
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.ellipse(mask, (centre[0] - x0, centre[1] - y0), axes, 0, 0, 360, 255, -1)
    return mask > 0


@dataclass
class _EllipseAnonymizer:
    """Shared loop: replace the pixels of each face's ellipse by ``_fill`` of its bounding region."""

    name: str = "ellipse"
    grow: float = 1.25

    def prepare(self, analysis: FaceAnalysis, track_id: int) -> None:
        """Nothing to fit: baselines work frame by frame."""

    def anonymize_frame(self, frame: np.ndarray, faces: list[TrackedFace]) -> np.ndarray:
        """Return ``frame`` with every face's ellipse replaced."""
        rows, columns = frame.shape[:2]
        for face in faces:
            centre, axes, region = face_ellipse(face, rows, columns, self.grow)
            x0, y0, x1, y1 = region
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            patch = frame[y0:y1, x0:x1]
            mask = _ellipse_mask(centre, axes, region)
            patch[mask] = self._fill(patch.copy(), max(axes))[mask]
        return frame

    def _fill(self, patch: np.ndarray, radius: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class BlurAnonymizer(_EllipseAnonymizer):
    """Strong Gaussian blur (sigma = ``strength`` x face radius) inside the face ellipse."""

    name: str = "blur"
    strength: float = 0.5

    def _fill(self, patch: np.ndarray, radius: int) -> np.ndarray:
        import cv2

        sigma = max(2.0, self.strength * radius)
        # blurring twice with reflect borders keeps the edge pixels from leaking detail back in
        out = cv2.GaussianBlur(patch, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
        return cv2.GaussianBlur(out, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


@dataclass
class PixelateAnonymizer(_EllipseAnonymizer):
    """Mosaic of ``blocks`` cells across the face."""

    name: str = "pixelate"
    blocks: int = 8

    def _fill(self, patch: np.ndarray, radius: int) -> np.ndarray:
        import cv2

        h, w = patch.shape[:2]
        cells = max(1, self.blocks)
        small = cv2.resize(patch, (max(1, w * cells // max(w, h)), max(1, h * cells // max(w, h))), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


@dataclass
class MaskAnonymizer(_EllipseAnonymizer):
    """Solid ``color`` (RGB) over the face ellipse."""

    name: str = "mask"
    color: tuple[int, int, int] = (128, 128, 128)

    def _fill(self, patch: np.ndarray, radius: int) -> np.ndarray:
        out = np.empty_like(patch)
        out[...] = np.asarray(self.color, np.uint8)
        return out

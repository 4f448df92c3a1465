"""Strong blur plus grain inside a feathered face oval: a face that carries no identity and is no flat fill.

A plain blur of a face leaves a region so smooth that it reads as a painted patch (the hard-video
bench's flat-fill detector finds it over every blurred face), and a mask is one. Here the face's
ellipse is blurred as :class:`~clinrelease.face.baselines.BlurAnonymizer` does (sigma half the face
radius: no feature survives), then grain is added whose strength is the face's own fine-detail
level (one figure per face, so no feature's position travels into it; between :data:`MIN_GRAIN` and
:data:`MAX_GRAIN`) and whose pattern is drawn
from the track and frame alone (never from the face's pixels). The ellipse fades into the frame over
a band outside it, so no edge outlines the head. Used for bystanders, for faces too small or too
turned for the swap (:mod:`clinrelease.face.small`), where a profile chooses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clinrelease.face.base import FaceAnalysis, TrackedFace
from clinrelease.face.baselines import BlurAnonymizer, face_ellipse

#: a pixel is flat-filled when the 5x5 standard deviation around it is below FLAT_STD grey levels and
#: the release changed it by more than FILL_CHANGE (a solid or blurred-flat patch painted over a face)
FLAT_STD = 1.5
FILL_CHANGE = 20.0
#: grain floor (grey levels, standard deviation): a face with hardly any fine detail (a tiny or
#: defocused one) still gets visible grain, so the region is never flat (the bench's limit is 1.5)
MIN_GRAIN = 3.0
#: grain ceiling (grey levels): the detail finer than 2 px of a full-size face is its skin's texture
#: (6-11 grey levels on the shared clips), but on a 24 px face it is the eyes, brows and lips (15-21),
#: and grain that strong speckled the oval (the hard-video sheets; the issue's "speckles")
MAX_GRAIN = 8.0
#: scale of the grain's correlation (pixels, Gaussian sigma): film-grain sized, below a feature's size
GRAIN_SIGMA = 0.7


def flat_filled(original: np.ndarray, released: np.ndarray) -> np.ndarray:
    """``(h, w)`` bool: pixels the release turned into a flat fill (see :data:`FLAT_STD`)."""
    import cv2

    grey = cv2.cvtColor(released, cv2.COLOR_RGB2GRAY).astype(np.float32)
    mean = cv2.blur(grey, (5, 5))
    std = np.sqrt(np.maximum(cv2.blur(grey * grey, (5, 5)) - mean * mean, 0))
    changed = np.abs(grey - cv2.cvtColor(original, cv2.COLOR_RGB2GRAY).astype(np.float32)) > FILL_CHANGE
    return (std < FLAT_STD) & changed


def flat_over(flat: np.ndarray, box) -> bool:
    """Whether a :func:`flat_filled` mask covers a face's ``box`` (x0, y0, x1, y1) in earnest: at
    least 16 pixels and 5% of the box (a few smooth pixels of a swapped cheek are not a fill)."""
    rows, columns = flat.shape
    x0, y0, x1, y1 = np.clip(np.round(np.asarray(box, np.float64)).astype(int), 0, [columns, rows, columns, rows])
    return bool(flat[y0:y1, x0:x1].sum() >= max(16, 0.05 * (x1 - x0) * (y1 - y0)))


def fine_detail(patch: np.ndarray, inside: np.ndarray) -> float:
    """Standard deviation (grey levels) of the patch's detail finer than ~2 px, over ``inside``."""
    import cv2

    grey = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY).astype(np.float32)
    detail = grey - cv2.GaussianBlur(grey, (0, 0), 2.0)
    return float(detail[inside].std()) if inside.any() else 0.0


def grain_level(patch: np.ndarray, inside: np.ndarray) -> float:
    """The grain strength for a region: the patch's :func:`fine_detail` over ``inside``, kept within
    :data:`MIN_GRAIN` and :data:`MAX_GRAIN`."""
    return min(MAX_GRAIN, max(MIN_GRAIN, fine_detail(patch, inside)))


def grain(shape: tuple[int, int], strength: float, seed: int) -> np.ndarray:
    """Correlated Gaussian noise ``(h, w)`` float32 with standard deviation ``strength``."""
    import cv2

    noise = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    noise = cv2.GaussianBlur(noise, (0, 0), GRAIN_SIGMA)
    return noise * (strength / max(float(noise.std()), 1e-6))


@dataclass
class TexturedBlurAnonymizer:
    """Blur plus grain in a feathered ellipse per face (see the module's docstring).

    Parameters
    ----------
    strength:
        Blur sigma as a fraction of the face radius (:class:`BlurAnonymizer`'s).
    grow:
        Ellipse size over the face (:func:`~clinrelease.face.baselines.face_ellipse`).
    feather:
        Width of the fade outside the ellipse, as a fraction of its larger half-axis.
    """

    strength: float = 0.5
    grow: float = 1.25
    feather: float = 0.2
    name: str = "textured_blur"

    def prepare(self, analysis: FaceAnalysis, track_id: int) -> None:
        """Nothing to fit: each frame is treated on its own."""

    def anonymize_frame(self, frame: np.ndarray, faces: list[TrackedFace]) -> np.ndarray:
        """Return ``frame`` (RGB uint8, modified in place) with every face blurred and grained."""
        import cv2

        rows, columns = frame.shape[:2]
        blur = BlurAnonymizer(strength=self.strength)
        for face in faces:
            (cx, cy), (ax, ay), _ = face_ellipse(face, rows, columns, self.grow)
            band = max(1.0, self.feather * max(ax, ay))
            x0, y0 = int(max(0, cx - ax - band)), int(max(0, cy - ay - band))
            x1, y1 = int(min(columns, cx + ax + band + 1)), int(min(rows, cy + ay + band + 1))
            if x1 - x0 < 2 or y1 - y0 < 2:
                continue
            patch = frame[y0:y1, x0:x1]
            ellipse = np.zeros(patch.shape[:2], np.uint8)
            cv2.ellipse(ellipse, (cx - x0, cy - y0), (ax, ay), 0, 0, 360, 1, -1)
            outside = cv2.distanceTransform(1 - ellipse, cv2.DIST_L2, 3)
            alpha = np.clip(1.0 - outside / band, 0.0, 1.0)[..., None]
            level = grain_level(patch, ellipse > 0)
            noise = grain(patch.shape[:2], level, face.track_id * 1_000_003 + face.frame_index)
            filled = blur._fill(patch.copy(), max(ax, ay)).astype(np.float32) + noise[..., None]
            patch[...] = np.clip(alpha * filled + (1.0 - alpha) * patch + 0.5, 0, 255).astype(np.uint8)
        return frame

"""Skin of a surrogate texture: what in the donor's face oval is skin, and the texture with the rest filled.

A donor photo brings more than a face into the oval the swap draws: hair over the forehead and
temples, earrings, beard, glasses rims, cast shadows. Drawn onto a patient these read as streaks
of someone else's hair on a mask. The skin reference is measured where a frontal face is nearly
always bare (cheeks, nose bridge, chin); a pixel of the face's periphery (everything outside the
eyes, brows, nose and lips) that is far from it in CIE Lab is not skin, and is filled from the
skin around it (normalized convolution: the local average of skin pixels), so the oval holds one
face's skin from edge to edge. The eyes, brows, nose and lips are never touched: they are the
features that make the surrogate someone else. Before that, a composite counts each donor where its
photo shows skin or features (:func:`skin_weight`), so one donor's hair or background inside the
oval does not ghost into the others' skin.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from clinrelease.face.landmarks import mesh_indices

__all__ = ["FIELD_SUPPORT", "clean_texture", "feature_region", "gaussian_taps", "normalized_blur", "own_face", "skin_mask", "skin_weight", "usable_skin"]

#: mesh points where a frontal face shows bare skin: mid-cheeks, nose bridge, upper chin
REFERENCE_POINTS = (205, 425, 50, 280, 6, 197, 199, 175)
#: how far below the reference skin's lightness a pixel may fall (shading across a face) before it
#: is taken for hair or a cast shadow (CIE L units)
MAX_DARKER = 35.0
#: largest hue difference from the reference skin (radians, about 17 degrees)
MAX_HUE = 0.3
#: allowed chroma relative to the reference skin's
CHROMA_RATIO = (0.45, 1.7)
#: CIE L below or above which a grey pixel (chroma under CLIPPED_CHROMA) is clipped black or white
CLIPPED_L = (12.0, 96.0)
CLIPPED_CHROMA = 8.0
#: largest local spread of lightness (CIE L units) of skin; hair strands and rims spread more
MAX_TEXTURE = 7.0


@lru_cache(maxsize=1)
def _feature_points() -> np.ndarray:
    from mediapipe.python.solutions import face_mesh_connections as fmc

    sets = (fmc.FACEMESH_LEFT_EYE, fmc.FACEMESH_RIGHT_EYE, fmc.FACEMESH_LEFT_EYEBROW, fmc.FACEMESH_RIGHT_EYEBROW, fmc.FACEMESH_LIPS, fmc.FACEMESH_NOSE)
    return np.array(sorted({i for edges in sets for edge in edges for i in edge}), np.int32)


def _fill(shape: tuple[int, int], polygons: list[np.ndarray]) -> np.ndarray:
    import cv2

    out = np.zeros(shape, np.uint8)
    for p in polygons:
        cv2.fillPoly(out, [np.round(np.asarray(p) * 16).astype(np.int32)], 1, lineType=cv2.LINE_AA, shift=4)
    return out > 0


def feature_region(shape: tuple[int, int], landmarks: np.ndarray, margin: float = 0.03) -> np.ndarray:
    """(h, w) bool: the eyes, brows, nose and lips (their convex hull, grown by ``margin`` face heights)."""
    import cv2

    pts = np.asarray(landmarks, np.float32)
    hull = cv2.convexHull(pts[_feature_points()]).reshape(-1, 2)
    region = _fill(shape, [hull])
    face_h = float(np.ptp(pts[mesh_indices()["oval"], 1]))
    grow = max(1, int(round(margin * face_h)))
    return cv2.dilate(region.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))) > 0


def _lab(rgb: np.ndarray) -> np.ndarray:
    import cv2

    lab = cv2.cvtColor(np.ascontiguousarray(rgb, np.uint8), cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[..., 0] *= 100.0 / 255.0
    lab[..., 1:] -= 128.0
    return lab


def skin_mask(texture: np.ndarray, landmarks: np.ndarray, within_oval: bool = True) -> np.ndarray:
    """(h, w) bool: pixels of the face oval (of the whole picture with ``within_oval`` False) that
    look like the face's own skin (features excluded).

    Shading changes a skin's lightness and, a little, its chroma, but hardly its hue; hair is far
    darker, or of another hue or saturation, or strand-textured where skin is smooth.
    """
    import cv2

    rows, cols = texture.shape[:2]
    pts = np.asarray(landmarks, np.float32)
    oval = _fill((rows, cols), [pts[mesh_indices()["oval"]]])
    face_h = float(np.ptp(pts[mesh_indices()["oval"], 1]))
    ref = np.zeros((rows, cols), np.uint8)
    for i in REFERENCE_POINTS:
        cv2.circle(ref, tuple(int(round(v)) for v in pts[i]), max(2, int(0.035 * face_h)), 1, -1)
    lab = _lab(texture)
    features = feature_region((rows, cols), pts)
    sample = lab[(ref > 0) & oval]
    if len(sample) < 16:
        return oval & ~features
    light, a, b = (float(v) for v in np.median(sample, axis=0))
    hue, chroma = np.arctan2(b, a), np.hypot(a, b)
    px_hue = np.arctan2(lab[..., 2], lab[..., 1])
    px_chroma = np.hypot(lab[..., 1], lab[..., 2])
    hue_off = np.abs(np.angle(np.exp(1j * (px_hue - hue))))
    ratio = px_chroma / max(chroma, 1.0)
    # local texture: the spread of lightness over a window about a fifth of an eye wide
    win = max(3, int(round(0.02 * face_h)) | 1)
    mean = cv2.blur(lab[..., 0], (win, win))
    texture_sd = np.sqrt(np.maximum(cv2.blur(lab[..., 0] ** 2, (win, win)) - mean**2, 0.0))
    grey = chroma < 4.0  # a greyscale donor: hue says nothing
    skin = (lab[..., 0] >= light - MAX_DARKER) & (texture_sd <= MAX_TEXTURE)
    if not grey:
        skin &= (hue_off <= MAX_HUE) & (ratio >= CHROMA_RATIO[0]) & (ratio <= CHROMA_RATIO[1])
    skin = cv2.morphologyEx(skin.astype(np.uint8), cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)) > 0
    return skin & ~features & (oval if within_oval else True)


def own_face(texture: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(h, w) bool: what in the picture of a face is the face's own, its skin and its features;
    the rest of the oval (hair, a rim, a burned-in label over the forehead) is not, and neither is a
    clipped pixel (black or white, grey: it says nothing of the skin's colour or shading), wherever
    it lies."""
    import cv2

    lab = _lab(texture)
    clipped = ((lab[..., 0] < CLIPPED_L[0]) | (lab[..., 0] > CLIPPED_L[1])) & (np.hypot(lab[..., 1], lab[..., 2]) < CLIPPED_CHROMA)
    # with its anti-aliased edge
    clipped = cv2.dilate(clipped.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    return (skin_mask(texture, landmarks) | feature_region(texture.shape[:2], landmarks)) & ~clipped


#: weight in a composite of what a donor's face oval holds besides skin and features: each donor's
#: outline lies a little elsewhere on the mean shape, and averaged at full weight their hair and
#: background edges drew faint dark lines down the composite's cheeks and temples
STRAY_WEIGHT = 0.02


def skin_weight(image: np.ndarray, landmarks: np.ndarray, stray: float = STRAY_WEIGHT) -> np.ndarray:
    """(h, w) float32: how much each pixel of a donor photo counts in a composite: 1 on the face's
    skin and features and outside the face oval, ``stray`` on what else lies in the oval (a strand
    of hair over a temple, the background past a narrow cheek), feathered by a pixel."""
    import cv2

    shape = image.shape[:2]
    pts = np.asarray(landmarks, np.float32)
    keep = skin_mask(image, pts) | feature_region(shape, pts) | ~_fill(shape, [pts[mesh_indices()["oval"]]])
    return cv2.GaussianBlur(np.where(keep, 1.0, stray).astype(np.float32), (0, 0), 1.0)


def usable_skin(texture: np.ndarray, landmarks: np.ndarray) -> float:
    """Fraction of the face oval's periphery (outside the features) that is skin."""
    rows, cols = texture.shape[:2]
    pts = np.asarray(landmarks, np.float32)
    periphery = _fill((rows, cols), [pts[mesh_indices()["oval"]]]) & ~feature_region((rows, cols), pts)
    return float((skin_mask(texture, landmarks) & periphery).sum()) / max(int(periphery.sum()), 1)


#: the fill's local skin average (Gaussian sigma), the fringe of skin beside a hole left out of it,
#: and the feather of the fill into the skin it meets (face heights)
FILL_SIGMA = 0.05
FILL_FRINGE = 0.015
FILL_FEATHER = 0.01

#: weight sum below which :func:`normalized_blur` fades towards 0 instead of dividing by almost nothing
FIELD_SUPPORT = 0.1


def gaussian_taps(sigma: float) -> np.ndarray:
    """1-D Gaussian taps (float32, odd length, truncated at 3 sigma)."""
    import cv2

    radius = max(1, int(np.ceil(3.0 * sigma)))
    return cv2.getGaussianKernel(2 * radius + 1, sigma).astype(np.float32).ravel()


def normalized_blur(
    image: np.ndarray, weight: np.ndarray, sigma: float, support: float = FIELD_SUPPORT, around: np.ndarray | float = 0.0
) -> np.ndarray:
    """Local weighted average of ``image`` (h, w, c) over the pixels ``weight`` marks (normalized
    convolution with a Gaussian of ``sigma`` pixels); fades towards ``around`` (a value per channel)
    where the weights nearby sum to less than ``support``, far from the pixels it was measured on.
    The swap's shading field is this over the patient's skin, fading towards the skin's mean colour."""
    import cv2

    taps = gaussian_taps(sigma)
    blur = lambda x: cv2.sepFilter2D(x, cv2.CV_32F, taps, taps, borderType=cv2.BORDER_CONSTANT)  # noqa: E731
    w = weight.astype(np.float32)
    around = np.asarray(around, np.float32)
    # OpenCV hands a one-channel image back without its channel axis
    num = blur((image.astype(np.float32) - around) * w[..., None]).reshape(image.shape)
    den = blur(w)
    return num / np.maximum(den, support)[..., None] + around


def clean_texture(texture: np.ndarray, landmarks: np.ndarray, reach: float = 0.0) -> np.ndarray:
    """``texture`` with everything in the face oval (and ``reach`` face heights past it) that is not
    skin or a facial feature replaced by the skin around it.

    The fill is the face's median skin colour, feathered by a pixel into the skin it meets.
    """
    import cv2

    rows, cols = texture.shape[:2]
    pts = np.asarray(landmarks, np.float32)
    oval_idx = mesh_indices()["oval"]
    centre = pts[oval_idx].mean(axis=0)
    grown = centre + (1.0 + reach) * (pts[oval_idx] - centre)
    area = _fill((rows, cols), [grown if reach > 0 else pts[oval_idx]])
    features = feature_region((rows, cols), pts)
    skin = skin_mask(texture, landmarks)
    replace = area & ~(skin | features)
    if not replace.any():
        return texture
    img = texture.astype(np.float32)
    face_h = float(np.ptp(pts[oval_idx, 1]))
    median = np.median(img[skin], axis=0) if skin.sum() >= 16 else img[area].mean(axis=0)
    # the skin's own shading carried into the hole (its local average), measured a fringe away from
    # what is filled: hair and brows shade the skin right beside them, and one flat colour left a
    # bright band along the outline with a jagged edge where the shaded skin met it; deep in a wide
    # hole (a forehead under a fringe) the fill fades to the face's median skin
    source = skin & ~(cv2.dilate(replace.astype(np.uint8), _disc(FILL_FRINGE * face_h)) > 0)
    fill = normalized_blur(img, source, FILL_SIGMA * face_h, support=0.5, around=median) if source.sum() >= 16 else median
    alpha = cv2.GaussianBlur(replace.astype(np.float32), (0, 0), max(1.0, FILL_FEATHER * face_h))
    alpha = np.maximum(np.where(replace, 1.0, 0.0), np.minimum(2.0 * alpha, 1.0)) * (~features)
    out = img * (1.0 - alpha[..., None]) + fill * alpha[..., None]
    return out.round().clip(0, 255).astype(np.uint8)


def _disc(radius: float) -> np.ndarray:
    import cv2

    r = max(1, int(round(radius)))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))

"""What one swapped face is drawn from, shared by both renderers (:mod:`clinrelease.face.swap`,
OpenCV frame by frame; :mod:`clinrelease.face.swap_torch`, batched): the face's plan and the colour
match's constants. Neither renderer imports the other's module for them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clinrelease.face.surrogates import LUMA as surrogate_luma

__all__ = ["CHROMA_GAIN", "DETAIL_GAIN", "LUMA", "LUMA_GAIN", "FacePlan", "blend_weights", "colour_transfer", "detail_gain"]


@dataclass
class FacePlan:
    """Everything needed to render one swapped face, independent of the renderer (OpenCV or torch)."""

    region: tuple[int, int, int, int]
    inside: np.ndarray  # (h, w) bool, pixels inside the ring
    map_surrogate: np.ndarray  # (h, w, 2) float32, texture pixels
    map_patient: np.ndarray  # (h, w, 2) float32, frame pixels
    alpha: np.ndarray  # (h, w) float32, weight of the surrogate
    stats: np.ndarray  # (h, w) bool, skin pixels used for the colour match
    lighting_sigma: float = 0.0  # pixels; Gaussian scale of the shading field taken from the patient
    detail_sigma: float = 0.0  # pixels; neighbourhood of the per-pixel detail gain (0: one gain for the face)
    #: the surrogate's weight in each band of a Laplacian-pyramid blend across the outline, finest
    #: first (:func:`blend_weights`), and what the patient keeps of that blend (0 in the eyes, the
    #: mouth, under a hand; ``alpha`` is the finest weight times ``kept``); empty: one alpha blend
    blend: tuple[np.ndarray, ...] = ()
    kept: np.ndarray | None = None


#: luma weights splitting a colour change into brightness and colour difference (the composites' own)
LUMA = surrogate_luma.astype(np.float32)
#: bounds on the brightness contrast gain, and on the colour-difference gain (never above 1: the
#: surrogate's colour variation is only ever toned down, so a dark orange texel cannot overshoot into
#: a teal speck on a greyer patient's skin)
LUMA_GAIN = (0.6, 1.6)
CHROMA_GAIN = (0.6, 1.0)


def colour_transfer(luma_gain: float, chroma_gain: float) -> np.ndarray:
    """The (3, 3) RGB matrix that scales a colour deviation's brightness by ``luma_gain`` and its
    colour difference (the deviation minus its brightness) by ``chroma_gain``."""
    to_luma = np.outer(np.ones(3, np.float32), LUMA)
    return (luma_gain * to_luma + chroma_gain * (np.eye(3, dtype=np.float32) - to_luma)).astype(np.float32)


#: bounds on the gain of the surrogate's detail (everything finer than the shading field: brows, lash
#: lines, nostrils, lip outlines, skin folds). A studio portrait drawn into a soft exam video keeps its
#: dark, hard features through the colour match, whose brightness spread is mostly the face's broad
#: shading; the released faces read as drawn masks. The detail is scaled to the patient's own detail
#: in the same face region, never up, and never below the lower bound (the surrogate's features
#: are its identity).
DETAIL_GAIN = (0.4, 1.0)


def detail_gain(surrogate_rms, patient_rms, ceiling: float = DETAIL_GAIN[1]):
    """The gain on the surrogate's detail: the patient's detail over the surrogate's (root mean
    square brightness, less each one's shading field), within :data:`DETAIL_GAIN` and at most
    ``ceiling``. Floats give a float; arrays (NumPy or torch) of local energies give a gain per pixel."""
    if isinstance(surrogate_rms, float | int):
        return float(np.clip(patient_rms / max(surrogate_rms, 1e-3), DETAIL_GAIN[0], ceiling))
    return (patient_rms / surrogate_rms.clip(1e-3, None)).clip(DETAIL_GAIN[0], ceiling)


#: the smallest side (pixels) of a blend band: a small face's region has fewer levels
MIN_BAND_PX = 3


def blend_weights(edge: np.ndarray, levels: int) -> tuple[np.ndarray, ...]:
    """The surrogate's weight in each band of a Laplacian-pyramid blend across the face's outline,
    with ``levels`` coarser bands (finest first, each half the size of the one before, as
    ``cv2.pyrDown`` makes them).

    The finest band's weight is ``edge``, the surrogate's fade across the outline; each coarser one
    is the band before smoothed down the pyramid, but never below ``edge`` sampled there: outside
    the face the coarse bands (broad shading, the step between two skins) ease in over a wider band
    than the fine ones (texture, edges), while inside it every band stays the surrogate's. One alpha
    for all bands left a visible edge at the jaw and temples where the surrogate's skin met the
    patient's (issue 17's seam). The eyes, the mouth and a hand are left to the plan's ``kept``.
    """
    import cv2

    weights = [np.asarray(edge, np.float32)]
    for level in range(1, levels + 1):
        if min(weights[-1].shape) < 2 * MIN_BAND_PX:
            break
        smooth = cv2.pyrDown(weights[-1])
        step, (h, w) = 2**level, smooth.shape
        weights.append(np.maximum(smooth, weights[0][::step, ::step][:h, :w]))
    return tuple(weights)

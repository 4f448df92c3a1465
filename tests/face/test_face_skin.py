"""The surrogate's skin: hair, beards and shadows in a donor's face oval, found and filled."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from clinrelease.errors import ConfigError
from clinrelease.face.landmarks import mesh_indices
from clinrelease.face.skin import clean_texture, feature_region, skin_mask, usable_skin
from clinrelease.face.surrogates import DonorPool, composite, default_pool
from clinrelease.models import package_dir


def _portrait(pid: str):
    return package_dir("openpeople") / "data/curated" / pid / "assets/studio_portrait.jpg"


def _lab(rgb):
    import cv2

    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(float)
    lab[..., 0] *= 100 / 255
    lab[..., 1:] -= 128
    return lab


def test_a_fringe_over_the_forehead_is_filled_with_the_faces_own_skin():
    import cv2

    donor = default_pool().donors[0]
    surrogate = composite([donor])
    texture, pts = surrogate.texture.copy(), surrogate.landmarks
    # a band of dark brown hair from the hairline down to just above the brows
    oval = pts[mesh_indices()["oval"]]
    top, brow = float(oval[:, 1].min()), float(pts[[105, 334], 1].min())
    band = np.zeros(texture.shape[:2], np.uint8)
    cv2.rectangle(band, (0, int(top)), (texture.shape[1], int(brow - 0.03 * np.ptp(oval[:, 1]))), 1, -1)
    band = (band > 0) & _inside(texture.shape[:2], oval) & ~feature_region(texture.shape[:2], pts)
    texture[band] = (70, 45, 30)
    assert not skin_mask(texture, pts)[band].any()
    cleaned = clean_texture(texture, pts)
    cheek = _lab(cleaned)[_cheeks(texture.shape[:2], pts)]
    filled = _lab(cleaned)[band]
    # the band now has the cheeks' colour (within a shading step), and the brows, eyes, nose and
    # lips are untouched
    assert np.abs(np.median(filled, axis=0) - np.median(cheek, axis=0))[1:].max() < 6
    assert abs(np.median(filled[:, 0]) - np.median(cheek[:, 0])) < 15
    features = feature_region(texture.shape[:2], pts)
    assert np.array_equal(cleaned[features], texture[features])


def test_clean_portrait_is_hardly_touched():
    donor = default_pool().donors[1]
    surrogate = composite([donor])
    assert usable_skin(surrogate.texture, surrogate.landmarks) > 0.8


def test_a_bearded_donor_is_refused_with_the_reason(tmp_path):
    shutil.copy(_portrait("P001"), tmp_path / "clean.jpg")
    shutil.copy(_portrait("P005"), tmp_path / "beard.jpg")
    with pytest.raises(ConfigError, match="beard") as info:
        DonorPool.load(tmp_path)
    assert info.value.path.name == "beard.jpg"


def _inside(shape, polygon):
    import cv2

    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.round(polygon).astype(np.int32)], 1)
    return m > 0


def _cheeks(shape, pts):
    import cv2

    m = np.zeros(shape, np.uint8)
    r = max(2, int(0.04 * np.ptp(pts[mesh_indices()["oval"], 1])))
    for i in (205, 425):
        cv2.circle(m, tuple(int(v) for v in pts[i]), r, 1, -1)
    return m > 0


def test_normalized_blur_of_one_channel_is_the_same_as_of_that_channel_among_three():
    """OpenCV hands a one-channel image back without its channel axis; the blur keeps the axis, so a
    weight map blurred alone matches the same map blurred as one channel of a colour image."""
    from clinrelease.face.skin import normalized_blur

    surrogate = composite([default_pool().donors[0]])
    texture, pts = surrogate.texture.astype(np.float32), surrogate.landmarks
    skin = skin_mask(surrogate.texture, pts)
    alone = normalized_blur(texture[..., :1], skin, 6.0)
    among = normalized_blur(texture, skin, 6.0)[..., :1]
    assert alone.shape == texture.shape[:2] + (1,)
    assert np.allclose(alone, among, atol=1e-3)


def test_hair_along_the_outline_is_filled_with_the_skins_shading_not_one_flat_colour():
    """A band of hair inside the face outline, on a face lit from one side, is filled with skin as
    light or dark as the skin beside it: one flat colour had left a bright rim along the shaded side
    of the face, with a jagged edge where it met the skin."""
    import cv2

    surrogate = composite([default_pool().donors[0]])
    pts = surrogate.landmarks
    oval = pts[mesh_indices()["oval"]]
    # light falling off from the right of the picture to its left
    x = np.arange(surrogate.texture.shape[1], dtype=float)
    ramp = np.interp(x, [oval[:, 0].min(), oval[:, 0].max()], [0.45, 1.0])[None, :, None]
    texture = (surrogate.texture * ramp).round().astype(np.uint8)
    inside = _inside(texture.shape[:2], oval)
    band_px = max(2, int(0.04 * np.ptp(oval[:, 1])))
    band = inside & ~(cv2.erode(inside.astype(np.uint8), np.ones((2 * band_px + 1,) * 2, np.uint8)) > 0)
    band &= ~feature_region(texture.shape[:2], pts)
    texture[band] = (60, 40, 28)
    cleaned = _lab(clean_texture(texture, pts))
    skin_next = inside & ~band & (cv2.dilate(band.astype(np.uint8), np.ones((4 * band_px + 1,) * 2, np.uint8)) > 0)
    skin_next &= ~feature_region(texture.shape[:2], pts)
    middle = float(oval[:, 0].mean())
    columns = np.arange(texture.shape[1])[None, :].repeat(texture.shape[0], 0)

    def left_minus_right(mask):
        return float(np.median(cleaned[..., 0][mask & (columns < middle)]) - np.median(cleaned[..., 0][mask & (columns >= middle)]))

    skin_step = left_minus_right(skin_next)
    assert skin_step < -8  # the shaded left cheek is darker than the lit right one
    # the fill follows it (a flat fill's step is 0)
    assert left_minus_right(band) < 0.6 * skin_step
    # and meets the skin beside it without a rim: within a few L units along the band's inner edge
    edge = inside & ~band & (cv2.dilate(band.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
    rim = cv2.dilate(edge.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert abs(float(np.median(cleaned[..., 0][rim & band])) - float(np.median(cleaned[..., 0][edge]))) < 4

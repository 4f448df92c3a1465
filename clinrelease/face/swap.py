"""The default anonymizer: swap each face to a key-chosen composite surrogate (texture and shape).

Per track, the patient's neutral shape is the per-point median of the similarity-aligned meshes;
the surrogate's mean shape, aligned to it, gives an identity offset. Each frame's new geometry is the
frame's mesh plus ``identity_strength`` times that offset, turned and scaled with the head, so
expression, head pose and eye/mouth state stay the patient's while the face shape (brows, jaw line,
nose, proportions) becomes the surrogate's. The surrogate texture is warped onto the new geometry
(piecewise affine over mesh + an outer ring), colour-matched to the patient's skin (mean/spread, then
the patient's low-frequency shading field, so skin tone and lighting are the patient's while the
surrogate's features survive) and blended with a feathered mask that fades in inside the new face
outline (``reach`` > 0 lets it reach past). Small faces, whose texture says little, get a larger
shape offset (``small_face_boost``; its local part only, so a narrower surrogate is not stretched
into a caricature). The ring band between the new face outline and the ring
(outside both the old and the new outline, so its triangles never fold) carries the patient's own
pixels warped to meet the new outline (the warp's displacement smoothed, so the patient's cheek edge
bends nowhere), and the eyes with their lids and the lips carry the patient's own
pixels, each moved whole to where the new geometry puts it, so gaze, blinks and every mouth
movement survive.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from clinrelease.errors import ConfigError
from clinrelease.face.base import PATIENT, FaceAnalysis, TrackedFace
from clinrelease.face.baselines import BlurAnonymizer
from clinrelease.face.generator import GeneratorPool
from clinrelease.face.geometry import (
    RING_SCALE,
    apply_affine,
    fit_similarity,
    warp_maps,
)
from clinrelease.face.landmarks import brow_angles, brow_directions, brow_groups, mesh_indices
from clinrelease.face.params import SwapParams, check_swap_arguments
from clinrelease.face.pools import load_pool
from clinrelease.face.skin import normalized_blur, own_face
from clinrelease.face.surrogates import (
    DISTINCTIVENESS,
    MODE_AMPLITUDE,
    DonorPool,
    Surrogate,
    choose_surrogate,
    default_pool,
    sequence_member,
)
from clinrelease.face.swap_plan import (
    CHROMA_GAIN,
    LUMA,
    LUMA_GAIN,
    FacePlan,
    blend_weights,
    colour_transfer,
    detail_gain,
)

#: mesh points used for similarity fits (the 468 face points; irises move with gaze)
FIT_POINTS = slice(0, 468)


#: meshes a track's neutral shape is estimated from at most (evenly spaced over the track)
NEUTRAL_SAMPLES = 400


def neutral_shape(meshes: list[np.ndarray], iterations: int = 2, max_meshes: int = NEUTRAL_SAMPLES) -> np.ndarray:
    """A track's neutral face: per-point median of its meshes after similarity alignment.

    A long track is sampled down to ``max_meshes`` evenly spaced meshes: the median has settled long
    before that, and aligning every mesh of a 10-minute video held ~45 MiB per copy (the peak memory
    then grew with the video's length).
    """
    if len(meshes) > max_meshes:
        meshes = [meshes[int(i)] for i in np.linspace(0, len(meshes) - 1, max_meshes)]
    ref = np.asarray(meshes[len(meshes) // 2], np.float64)
    for _ in range(iterations):
        aligned = np.stack([apply_affine(fit_similarity(m[FIT_POINTS], ref[FIT_POINTS]), m) for m in meshes])
        ref = np.median(aligned, axis=0)
    return ref.astype(np.float32)


@lru_cache(maxsize=1)
def expression_groups() -> tuple[np.ndarray, ...]:
    """Mesh points whose shape is expression, not identity: the lips, each eye and each iris."""
    from mediapipe.python.solutions import face_mesh_connections as fmc

    sets = (fmc.FACEMESH_LIPS, fmc.FACEMESH_LEFT_EYE, fmc.FACEMESH_RIGHT_EYE, fmc.FACEMESH_LEFT_IRIS, fmc.FACEMESH_RIGHT_IRIS)
    return tuple(np.array(sorted({i for edge in edges for i in edge})) for edges in sets)


def identity_offset(neutral: np.ndarray, surrogate_shape: np.ndarray, mouth_reach: float = 0.0) -> np.ndarray:
    """Surrogate shape minus neutral shape, after aligning the surrogate onto the neutral face.

    The lips and eyes move as a whole to where the surrogate has them, but keep the patient's
    shape: donors photographed smiling would otherwise stretch every patient's mouth into a smile,
    and mouth and eye shape are the expression a facial exam measures.

    The face around the lips carries the donors' smile too (raised cheeks beside the mouth
    corners): with ``mouth_reach`` > 0 (a fraction of the face height) the points that near the lips
    move with the lips as well, easing (smoothstep) into the surrogate's own offset at that distance.
    The face mesh then reads the patient's mouth corners instead of a grin, at the price of the
    surrogate's shape around the mouth (see ``bench/anonymize.py --swap mouth_reach=...``).
    """
    m = fit_similarity(surrogate_shape[FIT_POINTS], neutral[FIT_POINTS])
    offset = apply_affine(m, surrogate_shape) - neutral
    lips = expression_groups()[0]
    if mouth_reach > 0:
        face_h = max(float(np.ptp(neutral[mesh_indices()["oval"], 1])), 1.0)
        gap = np.linalg.norm(neutral[:, None, :] - neutral[None, lips, :], axis=-1).min(axis=1) / face_h
        t = np.clip(gap / mouth_reach, 0.0, 1.0)[:, None]
        rigid = offset[lips].mean(axis=0)
        offset = rigid + t * t * (3.0 - 2.0 * t) * (offset - rigid)
    for group in expression_groups():
        offset[group] = offset[group].mean(axis=0)
    return offset.astype(np.float32)


def level_brows(neutral: np.ndarray, offset: np.ndarray, max_turn: float) -> np.ndarray:
    """``offset`` with each eyebrow turned back about its own centre until its angle against the eyes
    (:func:`~clinrelease.face.landmarks.brow_angles`) is within ``max_turn`` radians of the patient's;
    where the brow sits, its length and its arch stay the surrogate's.

    A brow's angle is expression as much as identity: a surrogate whose inner brows sat a few degrees
    higher than the patient's drew a worried face over a smile, a few degrees lower an angry one
    (issue 17), and the small-face boost (:func:`exaggerated`) turned them further.
    """
    out = np.asarray(offset, np.float32).copy()
    new = np.asarray(neutral, np.float64)[:, :2] + out[:, :2]
    turns = brow_angles(new) - brow_angles(neutral)
    directions, axis, _ = brow_directions(new)
    for group, turn, direction in zip(brow_groups(), turns, directions):
        back = float(turn - np.clip(turn, -max_turn, max_turn))
        if back == 0.0:
            continue
        # in image pixels (y down) a turn by +r raises the inner end of a brow that points along the
        # eye line's direction and lowers it on the other side
        r = back if np.dot(direction, axis) > 0 else -back
        c, s = np.cos(r), np.sin(r)
        centre = new[group].mean(axis=0)
        turned = (new[group] - centre) @ np.array([[c, s], [-s, c]]) + centre
        out[group, :2] = (turned - np.asarray(neutral, np.float64)[group, :2]).astype(np.float32)
    return out


def exaggerated(offset: np.ndarray, neutral: np.ndarray, gain: float) -> np.ndarray:
    """``offset`` with its local part scaled by ``gain``: what an affine map of the face does not
    explain (where the features sit against each other, the curve of the jaw) grows, while the
    affine part (a longer or narrower face) stays the surrogate's. Exaggerated whole, a surrogate
    face narrower than the patient's came out gaunt and stretched, a caricature of a face."""
    if gain == 1.0:
        return offset
    points = np.concatenate([np.asarray(neutral, np.float64), np.ones((len(neutral), 1))], axis=1)
    coef, *_ = np.linalg.lstsq(points[FIT_POINTS], np.asarray(offset, np.float64)[FIT_POINTS], rcond=None)
    affine = points @ coef
    return (offset + (gain - 1.0) * (offset - affine)).astype(np.float32)


#: relaxation rounds :func:`unfold_offset` spends at most
UNFOLD_ROUNDS = 300
#: rounds without fewer folds after which :func:`unfold_offset` stops
UNFOLD_PATIENCE = 30
#: a triangle shrunk below this fraction of its area in the neutral face counts as folded too
MIN_AREA_RATIO = 0.1


def _signed_areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    p = np.asarray(points, np.float64)[triangles]
    return 0.5 * np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])


def unfold_offset(neutral: np.ndarray, offset: np.ndarray, triangles: np.ndarray, frontal: np.ndarray) -> np.ndarray:
    """``offset`` relaxed until ``neutral + offset`` folds none of the mesh ``triangles``.

    ``frontal`` is the face the triangles were laid on (the surrogate's shape): a triangle the
    neutral face already shows turned over (the far side of a turned head) is left as it is.

    The surrogate's shape and the patient's lips and eyes (which keep their own shape) do not always
    fit together: where the patient's mouth is wider than the surrogate's, the lip corners land
    beyond the points around them and the triangles between turn over. A folded triangle draws its
    texture mirrored and overlaps its neighbours, which shows as specks and streaks that change from
    frame to frame (on book.mkv the offset folded 158 of the mesh's 910 triangles). Each round moves
    the offset of every point of a folded (or nearly collapsed, see :data:`MIN_AREA_RATIO`) triangle,
    and of the points next to them, halfway to the mean of its neighbours' offsets; lips and eyes
    then move as a whole again. It stops when nothing is folded or the last folds have not given way
    for :data:`UNFOLD_PATIENCE` rounds. The rest of the offset, and so the surrogate's shape, is
    untouched.
    """
    tris = np.asarray(triangles)
    before = _signed_areas(neutral, tris)
    usable = (np.abs(before) > 1e-6) & (np.sign(before) == np.sign(_signed_areas(frontal, tris)))
    tris, before = tris[usable], before[usable]
    edges = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    edges = np.concatenate([edges, edges[:, ::-1]])
    degree = np.bincount(edges[:, 0], minlength=len(neutral)).astype(np.float64)
    out = np.asarray(offset, np.float64).copy()
    groups = expression_groups()
    fewest, stalled = len(tris) + 1, 0
    for _ in range(UNFOLD_ROUNDS):
        after = _signed_areas(neutral + out, tris)
        folded = after * np.sign(before) < MIN_AREA_RATIO * np.abs(before)
        count = int(folded.sum())
        # done when nothing is folded, or when the last few folds (a rigid eye or lip group against
        # its own iris, say) have not given way for a while
        fewest, stalled = (count, 0) if count < fewest else (fewest, stalled + 1)
        if count == 0 or stalled >= UNFOLD_PATIENCE:
            break
        moving = np.zeros(len(neutral), bool)
        moving[tris[folded].ravel()] = True
        moving[edges[moving[edges[:, 0]], 1]] = True  # and their neighbours: the fold spreads out
        neighbours = out[edges[:, 1]]
        total = np.stack([np.bincount(edges[:, 0], weights=neighbours[:, c], minlength=len(out)) for c in (0, 1)], axis=1)
        mean = total / np.maximum(degree, 1.0)[:, None]
        out[moving] = 0.5 * out[moving] + 0.5 * mean[moving]
        for group in groups:
            out[group] = out[group].mean(axis=0)
    return out.astype(np.float32)


def swapped_geometry(mesh: np.ndarray, neutral: np.ndarray, offset: np.ndarray, strength: float) -> np.ndarray:
    """One frame's new mesh: the frame's mesh plus the identity offset turned and scaled with the head."""
    lin = fit_similarity(neutral[FIT_POINTS], mesh[FIT_POINTS])[:, :2]
    return (mesh + strength * offset @ lin.T.astype(np.float32)).astype(np.float32)


def outer_ring(mesh: np.ndarray, new_mesh: np.ndarray, oval: np.ndarray) -> np.ndarray:
    """The ring around the face that bounds the warped region, outside both the old and the new outline.

    Each ring point lies :data:`~clinrelease.face.geometry.RING_SCALE` times as far from the
    patient's oval centre as the farther of the two outline points; a new outline reaching past a
    ring built from the old one alone folds the band's triangles (streaks along the jaw line).
    """
    centre = mesh[oval].mean(axis=0)
    old, new = mesh[oval] - centre, new_mesh[oval] - centre
    far = np.where((np.linalg.norm(new, axis=1) > np.linalg.norm(old, axis=1))[:, None], new, old)
    return (centre + RING_SCALE * far).astype(np.float32)


#: default reach of the surrogate past the face outline (fraction of the face height). 0: the
#: surrogate fades out at its own outline, and beyond it the patient's hair, ears and background
#: are warped to meet it; past the outline a donor texture holds the donor's hair and background
REACH = SwapParams.reach
#: the lip contour inside which the frame keeps the patient's own mouth: the outer one keeps the
#: lips themselves (their colour, folds and every movement), so a donor's lips never draw a smile
#: or a parted mouth the patient does not make (issue 17)
LIPS_KEPT = "outer_lips"
#: each eye's contour and, point for point, the mesh's next ring out around it (in order: outer corner,
#: lower lid, inner corner, upper lid)
EYE_LIDS = {
    "right_eye": (
        np.array([33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246], np.int32),
        np.array([130, 25, 110, 24, 23, 22, 26, 112, 243, 190, 56, 28, 27, 29, 30, 247], np.int32),
    ),
    "left_eye": (
        np.array([263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466], np.int32),
        np.array([359, 255, 339, 254, 253, 252, 256, 341, 463, 414, 286, 258, 257, 259, 260, 467], np.int32),
    ),
}
#: how far from the eye contour towards that ring the patient's own eye reaches once the eye is
#: closing (see :func:`lid_share`): the whole upper lid with its lash line (a blink is the upper lid
#: closing), half the lower lid. Inside the contour alone a closing lid slid under the surrogate's
#: open lid and lash line, and the mesh read the released eye as open: the eye-aspect-ratio series of
#: eat.mkv's slow blink correlated 0.51 with the original's (0.89 with the lids kept,
#: tests/face/test_face_swap.py). The lids carry identity too (kept on every frame, SFace matched eat.mkv's
#: patient on 80% of frames under one key, 50% before), so an open eye keeps the surrogate's lids
LID_REACH = np.array([0.5] * 9 + [1.0] * 7, np.float32)[:, None]
#: the eye opening, as a fraction of the track's neutral one, at and below which the patient's lids
#: are kept whole; above it they give way to the surrogate's, gone at the neutral opening
CLOSED_OPENING = 0.6


def eye_opening(mesh: np.ndarray, group: str) -> float:
    """Lid gap over eye width of eye ``group`` (the mean gap between facing lid points)."""
    contour = np.asarray(mesh, np.float64)[EYE_LIDS[group][0]]
    width = max(float(np.linalg.norm(contour[0] - contour[8])), 1e-6)
    return float(np.linalg.norm(contour[1:8] - contour[15:8:-1], axis=1).mean()) / width


def lid_share(mesh: np.ndarray, neutral: np.ndarray, group: str) -> float:
    """How much of the patient's own lids eye ``group`` keeps in this frame: 0 at the track's neutral
    opening (or wider), rising linearly to 1 at :data:`CLOSED_OPENING` of it (a blink, a squint)."""
    ratio = eye_opening(mesh, group) / max(eye_opening(neutral, group), 1e-6)
    return float(np.clip((1.0 - ratio) / (1.0 - CLOSED_OPENING), 0.0, 1.0))


def eye_lid_outline(mesh: np.ndarray, group: str, share: float = 1.0) -> np.ndarray:
    """The outline of the patient's own eye ``group`` ("left_eye", "right_eye") with ``share`` of its lids."""
    contour, ring = EYE_LIDS[group]
    return mesh[contour] + share * LID_REACH * (mesh[ring] - mesh[contour])


#: smoothing of the patient's warp (Gaussian sigma of its displacement, fraction of the face height)
SMOOTH_WARP = 0.03
#: width of the surrogate's fade-in (fraction of the face height)
FADE = 0.08
#: scale of the shading field carried over from the patient (Gaussian sigma, fraction of the face
#: height); 0 = mean/std colour match only
LIGHTING_SIGMA = 0.12
#: face height (pixels) below which the identity offset is exaggerated, up to ``1 + small_face_boost``
#: times at half that height
SMALL_FACE_PX = 120.0


def _ramp_inside(mask: np.ndarray, width: float) -> np.ndarray:
    """0 at the edge of ``mask`` rising linearly to 1 at ``width`` pixels inside it."""
    import cv2

    dist = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    return np.clip(dist / max(width, 1.0), 0.0, 1.0)


def _ramp_across(mask: np.ndarray, reach: float, width: float) -> np.ndarray:
    """0 at ``reach`` pixels outside ``mask``, rising linearly to 1 at ``width - reach`` pixels inside."""
    import cv2

    if reach <= 0:
        return _ramp_inside(mask, width)
    inner = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
    outer = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 3)
    return np.clip((inner - outer + reach) / max(width, 1.0), 0.0, 1.0)


def plan_face(
    mesh: np.ndarray,
    new_mesh: np.ndarray,
    surrogate: Surrogate,
    rows: int,
    columns: int,
    *,
    reach: float = 0.0,
    lighting: float = 0.0,
    occluders: Sequence[np.ndarray] = (),
    lids: dict[str, float] | None = None,
    detail: float = 0.0,
    blend_levels: int = 0,
) -> FacePlan | None:
    """Warp maps and blend masks that put ``surrogate`` on the face at ``mesh`` with geometry ``new_mesh``.

    Parameters
    ----------
    reach:
        How far past the new face outline the surrogate reaches (fraction of the face height): the
        band outside the mesh's oval (brow to hairline, jaw line, cheek edges) carries identity too.
    lighting:
        Scale of the patient's shading field put onto the surrogate (fraction of the face height);
        0 matches colour by mean and spread only.
    occluders:
        Outlines (frame pixels) of things in front of the face, hands above all: the frame keeps
        its own pixels there and they are left out of the colour statistics.
    lids:
        Share of each eye's lids the frame keeps (:func:`lid_share`, by eye group); all of them when None.
    detail:
        Neighbourhood (fraction of the face height) over which the surrogate's detail is toned to
        the patient's own; 0 tones it by one gain for the whole face.
    blend_levels:
        Coarser bands of the blend past the face's edge (:func:`~clinrelease.face.swap_plan.blend_weights`).
    """
    import cv2

    idx = mesh_indices()
    ring = outer_ring(mesh, new_mesh, idx["oval"])
    dst = np.concatenate([new_mesh, ring])
    src_patient = np.concatenate([mesh, ring])
    src_surrogate = np.concatenate([surrogate.landmarks, surrogate.ring])
    maps = warp_maps(dst, [src_surrogate, src_patient], surrogate.triangles, rows, columns)
    if maps is None:
        return None
    x0, y0, x1, y1 = maps.region
    h, w = y1 - y0, x1 - x0
    origin = np.array([x0, y0], np.float32)
    face_h = float(np.ptp(new_mesh[idx["oval"], 1]))

    def poly(points: np.ndarray) -> np.ndarray:
        m = np.zeros((h, w), np.uint8)
        cv2.fillPoly(m, [np.round((points - origin) * 16).astype(np.int32)], 1, lineType=cv2.LINE_AA, shift=4)
        return m > 0

    face = poly(new_mesh[idx["oval"]])
    openings = {LIPS_KEPT: poly(new_mesh[idx[LIPS_KEPT]])} | {
        group: poly(eye_lid_outline(new_mesh, group, 1.0 if lids is None else lids[group])) for group in EYE_LIDS
    }
    holes = openings[LIPS_KEPT] | openings["left_eye"] | openings["right_eye"]
    # the surrogate fades in across the outline (reaching ``reach`` past it) and out around the
    # eye/mouth openings; colour statistics come from the skin well inside the outline only
    keep_holes = _ramp_inside(~holes, 0.025 * face_h)
    edge = _ramp_across(face, reach * face_h, FADE * face_h)
    if reach > 0:
        # past the outline the surrogate brings its skin (forehead, jaw line), not its hair: the
        # donors' hair, toned like the patient's skin, drew a dark hood round small faces
        skin = cv2.remap(surrogate.skin, maps.maps[0], None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        edge = np.where(face, edge, edge * skin)
    edge = np.where(maps.inside, edge, 0.0).astype(np.float32)
    kept = keep_holes.astype(np.float32)
    stats = maps.inside & (_ramp_inside(face, FADE * face_h) * keep_holes > 0.5)
    inside = maps.inside
    map_patient = _openings_moved_whole(_smooth_map(maps.maps[1], maps.inside, (x0, y0), SMOOTH_WARP * face_h), mesh, new_mesh, (x0, y0), openings, 0.025 * face_h)
    if len(occluders):
        front = np.zeros((h, w), bool)
        for outline in occluders:
            front |= poly(np.asarray(outline, np.float32))
        # the frame's own pixels stay under the outline (not the patient's warped ones: they would
        # bend the fingers with the face), with a pixel-wide feather of the swap towards it
        inside = inside & ~front
        kept = kept * _ramp_inside(~front, 1.5).astype(np.float32)
        stats &= ~front
    blend = blend_weights(edge, blend_levels) if blend_levels > 0 else ()
    return FacePlan(
        maps.region, inside, maps.maps[0], map_patient, edge * kept, stats, float(lighting * face_h), float(detail * face_h), blend, kept if blend else None
    )


def own_face_statistics(plan: FacePlan, frame: np.ndarray, new_mesh: np.ndarray) -> FacePlan:
    """``plan`` with its colour statistics and shading field measured on the patient's own face
    only: what covers part of the face oval in the frame (a burned-in label over the forehead, hair,
    a rim) is left out, as hands are (``occluders`` of :func:`plan_face`).

    A black label across the forehead had made the patient's skin look far more contrasted than it
    is, and the surrogate was drawn with black eye sockets and nostrils to match.
    """
    import cv2

    x0, y0 = plan.region[:2]
    patient = cv2.remap(frame, plan.map_patient, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return replace(plan, stats=plan.stats & own_face(patient, new_mesh - np.array([x0, y0], np.float32)))


def _smooth_map(remap: np.ndarray, inside: np.ndarray, origin: tuple[int, int], sigma: float) -> np.ndarray:
    """``remap`` (h, w, 2: the frame x, y each pixel of the region at ``origin`` reads) with its
    displacement smoothed by a Gaussian of ``sigma`` pixels (no displacement outside ``inside``,
    where nothing moves).

    The piecewise-affine warp bends a straight line at every triangle edge it crosses: the patient's
    cheek edge, pulled to the new outline through the ring's long thin triangles, came out zigzag."""
    import cv2

    if sigma < 0.5:
        return remap
    h, w = remap.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    grid = np.stack([xx + origin[0], yy + origin[1]], axis=-1)
    moved = np.where(inside[..., None], remap - grid, 0.0).astype(np.float32)
    return (grid + cv2.GaussianBlur(moved, (0, 0), sigma)).astype(np.float32)


def _openings_moved_whole(
    map_patient: np.ndarray, mesh: np.ndarray, new_mesh: np.ndarray, origin: tuple[int, int], openings: dict[str, np.ndarray], ramp: float
) -> np.ndarray:
    """``map_patient`` with the patient's lips and eyes (``openings``: their regions in the new
    geometry, by mesh group; and the fade band around them) read by one translation each, the one
    their mesh points moved by.

    The identity offset moves each of these groups as a whole, so the patient's mouth and eyes in
    the new geometry are the originals shifted; the piecewise warp would instead read them through
    the surrogate's triangles, which a closed-mouthed surrogate lays across the lips: on an open or
    grinning mouth those triangles stretch and fold, and the teeth came out jagged and dark-rimmed.
    """
    import cv2

    idx = mesh_indices()
    out = map_patient.copy()
    h, w = out.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    grow = int(np.ceil(ramp)) + 1
    kernel = np.ones((2 * grow + 1, 2 * grow + 1), np.uint8)
    for group, region in openings.items():
        if not region.any():
            continue
        region = cv2.dilate(region.astype(np.uint8), kernel) > 0
        shift = (np.asarray(new_mesh, np.float64)[idx[group]] - np.asarray(mesh, np.float64)[idx[group]]).mean(axis=0)
        out[region, 0] = xx[region] + origin[0] - float(shift[0])
        out[region, 1] = yy[region] + origin[1] - float(shift[1])
    return out


def colour_gain(surrogate: np.ndarray, patient: np.ndarray, stats: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Means and transfer matrix that move the surrogate's skin colour onto the patient's:
    ``(pixel - mean_s) @ matrix.T + mean_p``.

    Brightness contrast follows the ratio of the two skins' luma spreads; colour differences are
    scaled by the ratio of their spreads too, but never amplified (see :data:`CHROMA_GAIN`).
    """
    if stats.sum() < 16:
        z = np.zeros(3, np.float32)
        return z, z, np.eye(3, dtype=np.float32)
    s, p = surrogate[stats].astype(np.float64), patient[stats].astype(np.float64)
    mu_s, mu_p = s.mean(axis=0), p.mean(axis=0)
    ds, dp = s - mu_s, p - mu_p
    ys, yp = ds @ LUMA, dp @ LUMA
    cs, cp = ds - ys[:, None], dp - yp[:, None]
    luma_gain = np.clip((yp.std() + 1.0) / (ys.std() + 1.0), *LUMA_GAIN)
    chroma_gain = np.clip((np.sqrt((cp**2).sum(axis=1).mean()) + 1.0) / (np.sqrt((cs**2).sum(axis=1).mean()) + 1.0), *CHROMA_GAIN)
    return mu_s.astype(np.float32), mu_p.astype(np.float32), colour_transfer(float(luma_gain), float(chroma_gain))


#: softness steps (Gaussian sigma, frame pixels) :func:`video_softness` chooses from; the largest
#: is the most a surrogate is ever blurred
SOFTNESS_STEPS = (0.0, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
#: share of the video's softness the surrogate is given. All of it (1.0-2.0 px on the shared clips)
#: took the seam to the original's (gradient ratio 1.65 -> 1.03) but SFace matched the patient on
#: half the frames (the surrogate's identity rests on its texture); half of it still took SFace over
#: its threshold on again.mkv (0.33 -> 0.38, tests/face/test_face_swap.py); a quarter keeps it (0.34).
#: On again.mkv the unsoftened surrogate has 5x the original face's fine detail, softened 3x
SOFTNESS_SHARE = 0.25


def _fine_detail(grey: np.ndarray, where: np.ndarray) -> float:
    """Mean squared difference of ``grey`` from its 1-pixel Gaussian blur over ``where``."""
    import cv2

    return float(((grey - cv2.GaussianBlur(grey, (0, 0), 1.0)) ** 2)[where].mean())


def video_softness(frame: np.ndarray, texture: np.ndarray, plan: FacePlan) -> float:
    """How soft the video's picture of the face is next to the surrogate's: the smallest Gaussian
    blur (frame pixels, one of :data:`SOFTNESS_STEPS`) that brings the warped surrogate's finest
    detail down to the patient's own over the face's skin and features.

    Studio portraits drawn into a compressed, softly focused exam video were visibly sharper than
    the face's surroundings: eyes, brows and nostrils drawn in dark, hard lines, and the blend band
    showed the edge between the two pictures (seam).
    """
    import cv2

    if plan.stats.sum() < 16:
        return 0.0
    grey = lambda img: cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY).astype(np.float32)  # noqa: E731
    sur = grey(cv2.remap(texture, plan.map_surrogate, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
    target = _fine_detail(grey(cv2.remap(frame, plan.map_patient, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)), plan.stats)
    for sigma in SOFTNESS_STEPS:
        if _fine_detail(cv2.GaussianBlur(sur, (0, 0), sigma) if sigma else sur, plan.stats) <= target:
            return sigma
    return SOFTNESS_STEPS[-1]


def _blend(sur: np.ndarray, pat: np.ndarray, plan: FacePlan) -> np.ndarray:
    """The surrogate over the patient by the plan's alpha, or band by band across the outline where
    the plan has blend weights (then the patient's eyes, mouth and hands by ``kept``)."""
    import cv2

    if not plan.blend:
        a = plan.alpha[..., None]
        return a * sur + (1.0 - a) * pat
    kept, patient = plan.kept[..., None], pat
    bands = []
    for weight in plan.blend[:-1]:
        down_s, down_p = cv2.pyrDown(sur), cv2.pyrDown(pat)
        size = (sur.shape[1], sur.shape[0])
        detail_s, detail_p = sur - cv2.pyrUp(down_s, dstsize=size), pat - cv2.pyrUp(down_p, dstsize=size)
        bands.append(weight[..., None] * detail_s + (1.0 - weight[..., None]) * detail_p)
        sur, pat = down_s, down_p
    out = plan.blend[-1][..., None] * sur + (1.0 - plan.blend[-1][..., None]) * pat
    for band in reversed(bands):
        out = cv2.pyrUp(out, dstsize=(band.shape[1], band.shape[0])) + band
    return kept * out + (1.0 - kept) * patient


def render_plan(frame: np.ndarray, texture: np.ndarray, plan: FacePlan) -> None:
    """Render one planned face into ``frame`` (RGB uint8, modified in place) with OpenCV."""
    import cv2

    x0, y0, x1, y1 = plan.region
    sur = cv2.remap(texture, plan.map_surrogate, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    pat = cv2.remap(frame, plan.map_patient, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    mu_s, mu_p, matrix = colour_gain(sur, pat, plan.stats)
    sur = (sur - mu_s) @ matrix.T + mu_p
    if plan.lighting_sigma >= 1.0 and plan.stats.sum() >= 16:
        # the patient's shading field replaces the surrogate's own (lighting direction, shadows)
        # while the surrogate's finer texture (features, skin) stays, as contrasted as the patient's
        shade_s = normalized_blur(sur, plan.stats, plan.lighting_sigma, around=mu_p)
        shade_p = normalized_blur(pat, plan.stats, plan.lighting_sigma, around=mu_p)
        detail_s, detail_p = sur - shade_s, pat - shade_p
        rms = lambda d: float(np.sqrt(np.mean(np.square(d[plan.stats] @ LUMA))))  # noqa: E731
        rms_s, rms_p = rms(detail_s), rms(detail_p)
        gain = detail_gain(rms_s, rms_p)
        if plan.detail_sigma >= 1.0:
            # each feature as contrasted as the patient's own in its neighbourhood, never more than
            # the face's contrast as a whole allows (see SwapAnonymizer's detail_reach)
            energy = lambda d, r: np.sqrt(normalized_blur(np.square(d @ LUMA)[..., None], plan.stats, plan.detail_sigma, around=r**2)[..., 0])  # noqa: E731
            gain = detail_gain(energy(detail_s, rms_s), energy(detail_p, rms_p), ceiling=gain)[..., None]
        sur = shade_p + gain * detail_s
    out = np.clip(_blend(sur, pat, plan) + 0.5, 0, 255).astype(np.uint8)
    patch = frame[y0:y1, x0:x1]
    patch[plan.inside] = out[plan.inside]


@dataclass
class _TrackState:
    surrogate: Surrogate | None
    neutral: np.ndarray | None = None
    offset: np.ndarray | None = None
    #: the video's softness on this track's face (:func:`video_softness`), measured on its first swapped frame
    softness: float | None = None


@dataclass
class SwapAnonymizer:
    """Swap faces to composite surrogates chosen by the release key.

    Parameters
    ----------
    key, pseudonym:
        Release key and the patient's pseudonym; they choose the patient's surrogate
        (:func:`~clinrelease.face.surrogates.choose_surrogate`). Bystander tracks get surrogates of
        their own (pseudonym ``"<pseudonym>/bystander/<track id>"``).
    counter:
        Which surrogate of the key's sequence the patient gets (0 = the first; see
        :func:`~clinrelease.face.surrogates.surrogate_seed`); bystanders always get their first.
    surrogate:
        A fixed surrogate for every track instead of the key-driven choice.
    pool:
        Donor pool (a :class:`DonorPool`, a folder, ``"generator"`` or a
        :class:`~clinrelease.face.generator.GeneratorPool`); the built-in default pool when None.
    k:
        Donors per composite.
    identity_strength:
        0 = surrogate texture on the patient's own face shape ... 1 = the surrogate's full face shape.
    distinctiveness, mode_amplitude:
        How far key-chosen surrogates are pushed from the pool's average face, and the largest
        key-drawn shape change (see :func:`~clinrelease.face.surrogates.choose_surrogate`).
    reach:
        How far past the face outline the surrogate reaches (fraction of the face height).
    lighting:
        Scale of the patient's shading field put onto the surrogate (fraction of the face height;
        0 = mean/std colour match only).
    small_face_boost:
        Extra identity offset for small faces: a track whose neutral face is under
        :data:`SMALL_FACE_PX` tall gets the local part of its shape offset scaled up, to
        ``1 + small_face_boost`` at half that height (small faces carry little texture, so shape must
        do more of the work; see :func:`exaggerated`).
    detail_reach:
        Neighbourhood (fraction of the face height) over which the surrogate's features (brows, lash
        lines, nostrils) are toned to the patient's own, so a faint brow on a soft video stays faint;
        0 (the default) tones the whole face by one gain. Off by default because it costs
        de-identification margin: on the shared clips at 0.05 SFace matched the patient on some
        frames of two clips that one gain for the face kept clear (``bench/realism.py --swap
        detail_reach=0.05``).
    mouth_reach:
        How far around the lips (fraction of the face height) the patient's own shape is kept, so
        the surrogate's smiling cheeks do not turn the mouth corners up; 0 keeps only the lips
        (see :func:`identity_offset`). Since the offset's folds are relaxed (:func:`unfold_offset`)
        the full-shape swap reads only +0.03-0.04 outer-eye distances of mouth-corner lift on the
        shared clips (+0.096 before); with identity_strength 0.5, 0.15 takes it to +0.008 and the lip
        shape error to 0.025. It costs de-identification margin, so profiles where the face is the
        signal (pd_face) turn it on and the others leave it off.
    brow_turn:
        The most each eyebrow may turn from the patient's own angle against the eyes (degrees; see
        :func:`level_brows`): the surrogate's brows keep their place, length and arch, the patient's
        brows their tilt, so a relaxed patient is not drawn worried or angry. 90 takes the
        surrogate's angle. It costs de-identification margin (a few more candidates screened on the
        shared clips), and the screening's stronger stage gives it up
        (:data:`~clinrelease.face.surrogate_choice.STRONGER_SWAP`).
    blend_levels:
        Coarser bands of the blend past the face's edge (:func:`~clinrelease.face.swap_plan.blend_weights`):
        the broad step between the surrogate's skin and the patient's eases out over a band twice as
        wide with each level, while texture and edges keep the plan's narrow fade. 0 (the default)
        blends the whole picture with one alpha. Off by default because it costs de-identification
        margin: the coarse bands carry some of the patient's outline into the face's rim, and the
        screening then needs later surrogates for some patients (``bench/surrogate_keys.py``;
        ``bench/realism.py --swap blend_levels=3`` shows the seam it removes).
    backend:
        "opencv" (frame by frame) or "torch" (see :mod:`clinrelease.face.swap_torch`).
    device:
        torch device for the torch backend ("cpu", "cuda").
    """

    key: bytes | None = None
    pseudonym: str | None = None
    counter: int = 0
    surrogate: Surrogate | None = None
    pool: DonorPool | GeneratorPool | str | Path | None = None
    # the defaults and ranges are declared once, in clinrelease.face.params.SwapParams
    k: int = SwapParams.k_donors
    identity_strength: float = SwapParams.identity_strength
    distinctiveness: float = DISTINCTIVENESS
    mode_amplitude: float = MODE_AMPLITUDE
    reach: float = REACH
    # the patient's own shading and skin tone: without it the surrogate keeps its donors' light and
    # colour and reads as a mask pasted on (issue 17)
    lighting: float = SwapParams.lighting
    small_face_boost: float = SwapParams.small_face_boost
    mouth_reach: float = SwapParams.mouth_reach
    detail_reach: float = SwapParams.detail_reach
    brow_turn: float = SwapParams.brow_turn
    blend_levels: int = SwapParams.blend_levels
    backend: str = "opencv"
    device: str = "cpu"
    name: str = "swap"
    _tracks: dict[int, _TrackState] = field(default_factory=dict, repr=False)
    _fallback: BlurAnonymizer = field(default_factory=BlurAnonymizer, repr=False)

    def __post_init__(self) -> None:
        check_swap_arguments(
            k=self.k, identity_strength=self.identity_strength, distinctiveness=self.distinctiveness, mode_amplitude=self.mode_amplitude,
            reach=self.reach, lighting=self.lighting, small_face_boost=self.small_face_boost, mouth_reach=self.mouth_reach,
            detail_reach=self.detail_reach, brow_turn=self.brow_turn, blend_levels=self.blend_levels,
        )  # fmt: skip
        if self.backend not in ("opencv", "torch"):
            raise ConfigError(f"unknown swap backend {self.backend!r}; use 'opencv' or 'torch'")
        if self.surrogate is None and (self.key is None or not self.pseudonym):
            raise ConfigError("the swap anonymizer needs a release key and the patient's pseudonym (or a surrogate)")
        if isinstance(self.key, str):
            self.key = bytes.fromhex(self.key)
        if self.pool is not None:
            self.pool = load_pool(self.pool)

    def surrogate_for(self, role: str, track_id: int) -> Surrogate:
        """The surrogate a track gets: the patient's for PATIENT tracks, one of its own otherwise."""
        if self.surrogate is not None:
            return self.surrogate
        pool = self.pool if self.pool is not None else default_pool()
        who = self.pseudonym if role == PATIENT else f"{self.pseudonym}/bystander/{track_id}"
        counter = self.counter if role == PATIENT else 0
        if isinstance(pool, GeneratorPool):
            return pool.surrogate(self.key, sequence_member(who, counter))
        return choose_surrogate(
            pool, self.key, who, self.k, distinctiveness=self.distinctiveness, mode_amplitude=self.mode_amplitude, counter=counter
        )

    def prepare(self, analysis: FaceAnalysis, track_id: int) -> None:
        """Fit the track's neutral shape and its identity offset towards its surrogate."""
        track = next(t for t in analysis.tracks if t.track_id == track_id)
        meshes = [f.landmarks for _, f in sorted(track.faces.items()) if f.landmarks is not None]
        if not meshes:
            # no mesh anywhere on the track (a tiny or turned face): fail safe with a blur
            self._tracks[track_id] = _TrackState(None)
            return
        surrogate = self.surrogate_for(track.role, track_id)
        neutral = neutral_shape(meshes)
        offset = exaggerated(identity_offset(neutral, surrogate.landmarks, self.mouth_reach), neutral, self.offset_gain(neutral))
        offset = level_brows(neutral, offset, np.radians(float(self.brow_turn)))
        mesh_triangles = surrogate.triangles[(surrogate.triangles < len(neutral)).all(axis=1)]
        offset = unfold_offset(neutral, offset, mesh_triangles, surrogate.landmarks)
        self._tracks[track_id] = _TrackState(surrogate, neutral, offset.astype(np.float32))

    def offset_gain(self, neutral: np.ndarray) -> float:
        """How much the identity offset is exaggerated for a track with this neutral face (1 = not)."""
        height = float(np.ptp(neutral[mesh_indices()["oval"], 1]))
        small = np.clip((SMALL_FACE_PX - height) / (0.5 * SMALL_FACE_PX), 0.0, 1.0)
        return 1.0 + float(self.small_face_boost) * float(small)

    def plans(self, frame: np.ndarray, faces: list[TrackedFace]) -> tuple[list[tuple[FacePlan, Surrogate]], list[TrackedFace]]:
        """Render plans for the faces of ``frame`` that can be swapped, and the faces that need the blur fallback."""
        rows, columns = frame.shape[:2]
        planned, fallback = [], []
        for face in faces:
            state = self._tracks.get(face.track_id)
            if state is None or state.surrogate is None or face.landmarks is None:
                fallback.append(face)
                continue
            new = swapped_geometry(face.landmarks, state.neutral, state.offset, float(self.identity_strength))
            lids = {group: lid_share(face.landmarks, state.neutral, group) for group in EYE_LIDS}
            plan = plan_face(
                face.landmarks, new, state.surrogate, rows, columns, reach=self.reach, lighting=self.lighting, occluders=face.occluders, lids=lids,
                detail=self.detail_reach, blend_levels=int(self.blend_levels),
            )
            if plan is None:
                fallback.append(face)
            else:
                plan = own_face_statistics(plan, frame, new)
                oval = mesh_indices()["oval"]
                scale = float(np.ptp(new[oval, 1])) / max(float(np.ptp(state.surrogate.landmarks[oval, 1])), 1.0)
                scale = max(scale, 1e-3) if np.isfinite(scale) else 1.0
                planned.append((plan, state.surrogate.for_scale(scale, state.softness or 0.0)))
        return planned, fallback

    def _measure_softness(self, frame: np.ndarray, faces: list[TrackedFace]) -> None:
        """Measure the video's softness on each track's first swapped frame (kept for the whole
        track: one blur for the track, so the surrogate's texture does not pulse from frame to frame)."""
        todo = [f for f in faces if (s := self._tracks.get(f.track_id)) is not None and s.surrogate is not None and s.softness is None]
        for face in todo:
            planned, _ = self.plans(frame, [face])
            if planned:
                plan, surrogate = planned[0]
                self._tracks[face.track_id].softness = SOFTNESS_SHARE * video_softness(frame, surrogate.texture, plan)

    def anonymize_frame(self, frame: np.ndarray, faces: list[TrackedFace]) -> np.ndarray:
        """Swap every face of ``frame`` (RGB uint8, modified in place)."""
        self._measure_softness(frame, faces)
        planned, fallback = self.plans(frame, faces)
        if self.backend == "torch" and planned:
            from clinrelease.face.swap_torch import render_batch

            frame[...] = render_batch([frame], [planned], device=self.device)[0]
        else:
            for plan, surrogate in planned:
                render_plan(frame, surrogate.texture, plan)
        if fallback:
            self._fallback.anonymize_frame(frame, fallback)
        return frame

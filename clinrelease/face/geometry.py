"""2-D geometry for mesh warps: similarity fits, the ring of points around a face, piecewise-affine maps.

A piecewise-affine warp is described by destination points, source points and triangles. For every
destination pixel inside the mesh, :func:`warp_maps` gives the source coordinates, so that one
``cv2.remap`` (or ``torch.nn.functional.grid_sample``) renders the warp.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: how far beyond the face oval the warped region reaches (ring radius / oval radius). Where the
#: surrogate's face is narrower than the patient's, the frame between the outline and the ring is
#: stretched to close the gap; a wider ring spreads that stretch thinner (1.35 drew the hair beside
#: a narrow face into shimmering streaks: flicker 1.89x the original's on book.mkv, 1.65x at 1.6)
RING_SCALE = 1.6


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` onto ``dst``.

    Returns a ``(2, 3)`` matrix ``M`` with ``dst ~ src @ M[:, :2].T + M[:, 2]`` (Umeyama's method).
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    ms, md = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - ms, dst - md
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rot = u @ sign @ vt
    var = (s**2).sum() / len(src)
    scale = (sig * np.diag(sign)).sum() / var if var > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = md - m[:, :2] @ ms
    return m


def apply_affine(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a ``(2, 3)`` affine matrix to points ``(N, 2)``."""
    return (np.asarray(pts, np.float64) @ m[:, :2].T + m[:, 2]).astype(np.float32)


def ring_points(landmarks: np.ndarray, oval: np.ndarray, scale: float = RING_SCALE) -> np.ndarray:
    """Points on the face oval pushed outward from its centre: the outer edge of the warped region."""
    pts = landmarks[oval]
    centre = pts.mean(axis=0)
    return (centre + scale * (pts - centre)).astype(np.float32)


def triangulate(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles ``(M, 3)`` of a point set (used once per surrogate, on its frontal shape)."""
    from scipy.spatial import Delaunay

    return Delaunay(np.asarray(points, np.float64)).simplices.astype(np.int32)


@dataclass
class WarpMaps:
    """Source coordinates for each pixel of a destination region, for one or more sources."""

    #: destination region in frame pixels (x0, y0, x1, y1), x1/y1 exclusive
    region: tuple[int, int, int, int]
    #: True where a pixel lies inside the mesh
    inside: np.ndarray  # (h, w) bool
    #: one (h, w, 2) float32 map per source, in that source's pixel coordinates
    maps: list[np.ndarray]


#: triangles whose doubled area (pixels^2) is below this are degenerate: solved by least squares
_DEGENERATE_AREA = 1e-9


def _inverse_vertex_matrices(dst: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Inverses ``(M, 3, 3)`` of each triangle's vertex matrix (columns ``[x, y, 1]`` of its corners).

    Closed form (adjugate over determinant) for all triangles at once; the rare zero-area triangle
    gets its pseudo-inverse instead, as before, so that its (coverless) maps stay finite.
    """
    p = dst[tris]  # (M, 3, 2)
    x0, y0 = p[:, 0, 0], p[:, 0, 1]
    x1, y1 = p[:, 1, 0], p[:, 1, 1]
    x2, y2 = p[:, 2, 0], p[:, 2, 1]
    det = x0 * (y1 - y2) + x1 * (y2 - y0) + x2 * (y0 - y1)  # doubled signed area
    # inverse of V = [[x0, x1, x2], [y0, y1, y2], [1, 1, 1]]; rows are the barycentric coefficients
    adj = np.empty((len(tris), 3, 3))
    adj[:, 0] = np.stack([y1 - y2, x2 - x1, x1 * y2 - x2 * y1], axis=1)
    adj[:, 1] = np.stack([y2 - y0, x0 - x2, x2 * y0 - x0 * y2], axis=1)
    adj[:, 2] = np.stack([y0 - y1, x1 - x0, x0 * y1 - x1 * y0], axis=1)
    degenerate = np.abs(det) < _DEGENERATE_AREA
    inv = adj / np.where(degenerate, 1.0, det)[:, None, None]
    if degenerate.any():
        v = np.concatenate([p, np.ones((len(tris), 3, 1))], axis=2).transpose(0, 2, 1)  # (M, 3, 3)
        inv[degenerate] = np.linalg.pinv(v[degenerate])
    return inv


def _triangle_affines(dst: np.ndarray, src: np.ndarray, tris: np.ndarray, inverse: np.ndarray | None = None) -> np.ndarray:
    """Per-triangle affine matrices ``(M, 2, 3)`` mapping destination to source coordinates.

    Parameters
    ----------
    inverse:
        :func:`_inverse_vertex_matrices` of ``dst``, when already computed (it does not depend on
        the source, so one serves every source of a warp).
    """
    inv = _inverse_vertex_matrices(dst, tris) if inverse is None else inverse
    s = src[tris].astype(np.float64).transpose(0, 2, 1)  # (M, 2, 3): source x row, y row
    return s @ inv


#: how far (in barycentric units, i.e. triangle sizes) a pixel may lie outside its triangle and still
#: take that triangle's affine unclamped
MAX_EXTRAPOLATION = 0.5


def _holding_triangles(inverse: np.ndarray, dst: np.ndarray, tris: np.ndarray, px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each point ``(px, py)``, the index of the triangle that holds it (the largest smallest
    barycentric coordinate; zero-area triangles never), and its barycentric coordinates there."""
    p = dst[tris]
    area = np.abs((p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 2, 0] - p[:, 0, 0]) * (p[:, 1, 1] - p[:, 0, 1]))
    rows = inverse.astype(np.float32)  # (T, 3, 3)
    best = np.empty(len(px), np.int32)
    out = np.empty((len(px), 3), np.float32)
    for start in range(0, len(px), 1024):  # (points, triangles, 3) at most 1024 points at a time
        x = px[start : start + 1024, None, None].astype(np.float32)
        y = py[start : start + 1024, None, None].astype(np.float32)
        bary = rows[None, :, :, 0] * x + rows[None, :, :, 1] * y + rows[None, :, :, 2]
        worst = bary.min(axis=2)
        worst[:, area < 1e-6] = -np.inf
        chosen = worst.argmax(axis=1)
        best[start : start + len(chosen)] = chosen
        out[start : start + len(chosen)] = bary[np.arange(len(chosen)), chosen]
    return best, out


def warp_maps(
    dst: np.ndarray, sources: list[np.ndarray], tris: np.ndarray, rows: int, columns: int
) -> WarpMaps | None:
    """Piecewise-affine maps from destination points to each source's points over ``tris``.

    Returns None when the mesh lies outside the frame.
    """
    import cv2

    dst = np.asarray(dst, np.float64)
    x0 = int(max(0, np.floor(dst[:, 0].min())))
    y0 = int(max(0, np.floor(dst[:, 1].min())))
    x1 = int(min(columns, np.ceil(dst[:, 0].max()) + 1))
    y1 = int(min(rows, np.ceil(dst[:, 1].max()) + 1))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    # rasterize triangle ids (id + 1; 0 = outside) at 1/16 px precision
    ids = np.zeros((y1 - y0, x1 - x0), np.int32)
    local = np.round((dst - [x0, y0]) * 16).astype(np.int32)
    for k, tri in enumerate(local[tris]):
        cv2.fillConvexPoly(ids, tri, k + 1, lineType=cv2.LINE_8, shift=4)
    # pixel centres on a shared edge can fall outside both triangles: ~70 single pixels on a 640x480
    # face, where the unwarped frame would show through as speckles. A closing finds them; each
    # takes a neighbouring triangle (its affine extends continuously across the shared edge).
    kernel = np.ones((3, 3), np.uint8)
    gaps = (cv2.morphologyEx((ids > 0).astype(np.uint8), cv2.MORPH_CLOSE, kernel) > 0) & (ids == 0)
    if gaps.any():
        ids[gaps] = cv2.dilate(ids.astype(np.float32), kernel)[gaps].astype(np.int32)  # ids < 2**24: exact
    inside = ids > 0
    ys, xs = np.nonzero(inside)
    k = ids[ys, xs] - 1
    px, py = (xs + x0).astype(np.float64), (ys + y0).astype(np.float64)
    inverse = _inverse_vertex_matrices(dst, tris)
    # barycentric coordinates of each pixel centre in its triangle. A pixel the rasterizer gave to a
    # triangle much smaller than a pixel (eyes and lips of a small face, slivers) can lie several
    # triangle sizes outside it, and that triangle's affine extrapolated so far lands anywhere in the
    # source (isolated wrong-coloured specks that jump from frame to frame): such pixels take the
    # triangle that holds them, and are clamped onto it where none does. Pixels just outside a normal
    # triangle keep its exact affine.
    per_pixel = inverse.reshape(-1, 9).astype(np.float32)[k]  # (P, 9): row i, column j at 3 i + j
    bary = per_pixel[:, 0::3] * px[:, None].astype(np.float32) + per_pixel[:, 1::3] * py[:, None].astype(np.float32) + per_pixel[:, 2::3]
    far = np.nonzero((bary < -MAX_EXTRAPOLATION).any(axis=1))[0]
    if len(far):
        # a sliver drawn after its neighbours paints pixels along its edges that lie in those
        # neighbours; such a pixel takes the triangle that holds it (or the nearest to holding it)
        k[far], bary[far] = _holding_triangles(inverse, dst, tris, px[far], py[far])
        far = far[(bary[far] < -MAX_EXTRAPOLATION).any(axis=1)]
    if len(far):
        clamped = np.clip(bary[far].astype(np.float64), 0.0, None)
        total = clamped.sum(axis=1, keepdims=True)
        clamped = np.where(total > 0, clamped / np.where(total > 0, total, 1.0), 1.0 / 3.0)
        corners = tris[k[far]]  # (F, 3)
    maps = []
    for src in sources:
        src = np.asarray(src, np.float64)
        aff = _triangle_affines(dst, src, tris, inverse).reshape(-1, 6)[k]  # (P, 6)
        m = np.zeros((y1 - y0, x1 - x0, 2), np.float32)
        m[ys, xs, 0] = aff[:, 0] * px + aff[:, 1] * py + aff[:, 2]
        m[ys, xs, 1] = aff[:, 3] * px + aff[:, 4] * py + aff[:, 5]
        if len(far):
            m[ys[far], xs[far]] = (clamped[:, :, None] * src[corners]).sum(axis=1)
        maps.append(m)
    return WarpMaps((x0, y0, x1, y1), inside, maps)

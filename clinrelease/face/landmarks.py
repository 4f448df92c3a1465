"""Dense face landmarks: mediapipe's 478-point face mesh on a tracked crop, smoothed over time."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

#: number of mesh points (468 face + 10 iris)
N_POINTS = 478

#: mesh indices of the five alignment points YuNet, ArcFace and SFace use: right eye, left eye, nose
#: tip, right and left mouth corner (the subject's right is the image's left); eye centres are the
#: midpoints of the eye corners
_FIVE_EYE_R = (33, 133)
_FIVE_EYE_L = (263, 362)
_FIVE_NOSE = 1
_FIVE_MOUTH_R = 61
_FIVE_MOUTH_L = 291


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """Reduce a face mesh (468/478 points, pixels) to the five alignment points, ``float32 (5, 2)``.

    Five points given are returned as they are.
    """
    pts = np.asarray(landmarks, dtype=np.float32)[:, :2]
    if pts.shape[0] == 5:
        return pts
    if pts.shape[0] < 468:
        raise ValueError(f"expected 5 or 468/478 landmarks, got {pts.shape[0]}")
    return np.stack(
        [
            pts[list(_FIVE_EYE_R)].mean(axis=0),
            pts[list(_FIVE_EYE_L)].mean(axis=0),
            pts[_FIVE_NOSE],
            pts[_FIVE_MOUTH_R],
            pts[_FIVE_MOUTH_L],
        ]
    ).astype(np.float32)


@lru_cache(maxsize=1)
def brow_groups() -> tuple[np.ndarray, np.ndarray]:
    """Mesh points of each eyebrow (its upper and lower edge)."""
    from mediapipe.python.solutions import face_mesh_connections as fmc

    return tuple(np.array(sorted({i for edge in edges for i in edge}), np.int32) for edges in (fmc.FACEMESH_RIGHT_EYEBROW, fmc.FACEMESH_LEFT_EYEBROW))


#: the outer corners of the two eyes, the line each brow's angle is measured against
OUTER_EYE_CORNERS = (33, 263)


def brow_directions(mesh: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each brow's direction from its outer towards its inner end (unit vectors, one row a brow, as
    :func:`brow_groups`), the unit line from one outer eye corner to the other, and the face's up
    (image pixels: y grows downwards)."""
    m = np.asarray(mesh, np.float64)[:, :2]
    right, left = m[OUTER_EYE_CORNERS[0]], m[OUTER_EYE_CORNERS[1]]
    axis = (left - right) / max(float(np.linalg.norm(left - right)), 1e-9)
    up = np.array([axis[1], -axis[0]])
    centre = (left + right) / 2
    directions = []
    for group in brow_groups():
        points = m[group]
        mean = points.mean(axis=0)
        direction = np.linalg.svd(points - mean, full_matrices=False)[2][0]
        directions.append(direction if np.dot(centre - mean, direction) >= 0 else -direction)
    return np.array(directions), axis, up


def brow_angles(mesh: np.ndarray) -> np.ndarray:
    """Each eyebrow's angle against the line through the outer eye corners (radians, right then
    left): > 0 where the inner end sits higher than the outer (a worried face), < 0 lower (a frown)."""
    directions, axis, up = brow_directions(mesh)
    return np.arctan2(directions @ up, np.abs(directions @ axis))


@lru_cache(maxsize=1)
def mesh_indices() -> dict[str, np.ndarray]:
    """Ordered point indices of the mesh's outlines: face oval, lips, eyes, brows (closed polygons)."""
    from mediapipe.python.solutions import face_mesh_connections as fmc

    def ordered(edges: frozenset) -> np.ndarray:
        # the connection sets are undirected edges of one closed loop: walk it
        adj: dict[int, list[int]] = {}
        for a, b in edges:
            adj.setdefault(a, []).append(b)
            adj.setdefault(b, []).append(a)
        start = min(adj)
        loop, prev = [start], -1
        while True:
            nxt = next((n for n in adj[loop[-1]] if n != prev), None)
            if nxt is None or nxt == start:
                break
            prev = loop[-1]
            loop.append(nxt)
        return np.array(loop, np.int32)

    return {
        "oval": ordered(fmc.FACEMESH_FACE_OVAL),
        "left_eye": ordered(fmc.FACEMESH_LEFT_EYE),
        "right_eye": ordered(fmc.FACEMESH_RIGHT_EYE),
        "inner_lips": _INNER_LIPS,
        "outer_lips": _OUTER_LIPS,
        "left_iris": np.arange(473, 478, dtype=np.int32),
        "right_iris": np.arange(468, 473, dtype=np.int32),
    }


#: inner lip contour, in order around the mouth opening
_INNER_LIPS = np.array([78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95], np.int32)
#: outer lip contour, in order around the mouth
_OUTER_LIPS = np.array([61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185], np.int32)


#: mesh points on the face midline (forehead to chin), which mirror onto themselves
MIDLINE = (10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1, 0, 17, 152)

#: every mesh point on the midline (forehead, nose, lips, chin): the mesh's mirror fixes these
MIDLINE_POINTS = (0, 1, 2, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 94, 151, 152, 164, 168, 175, 195, 197, 199, 200)
#: first point of the mesh's second half (one side of the face, in the order of the other side's points)
_MIRROR_HALF = 248


@lru_cache(maxsize=1)
def mirror_permutation() -> np.ndarray:
    """Index ``perm`` (478,) such that ``points[perm]`` is the mesh of the mirrored face.

    mediapipe's mesh is symmetric by construction: apart from :data:`MIDLINE_POINTS`, the points
    below 248 lie on one side and pair, in ascending order, with 248..467 on the other; the iris
    rings (468-472, 473-477: centre first) run round in opposite directions. Derived by matching
    mirrored meshes of real faces; ``tests/face/test_face_landmarks.py`` checks that it is an involution and
    maps the mesh's triangulation onto itself.
    """
    perm = np.arange(478)
    one_side = [i for i in range(_MIRROR_HALF) if i not in MIDLINE_POINTS]
    other_side = np.arange(_MIRROR_HALF, 468)
    perm[one_side], perm[other_side] = other_side, one_side
    perm[468:473], perm[473:478] = [473, 476, 475, 474, 477], [468, 471, 470, 469, 472]
    perm.setflags(write=False)
    return perm


def frontal_shape(points: np.ndarray) -> np.ndarray:
    """The 2-D mesh of a face seen from straight ahead, from its 3-D mesh ``(478, 3)``.

    The face's plane of symmetry is found from the mirror pairs (:func:`mirror_permutation`): the
    vectors joining each point to its partner all run along the plane's normal. The smallest
    rotation that turns that normal onto the image's x axis undoes the head's turn (and roll; a nod
    stays, it does not make the two sides differ); the rotated mesh is projected back onto the image
    plane. The face's own asymmetries stay (they are part of who it is); only the view changes.
    """
    p = np.asarray(points, np.float64)
    if p.shape != (N_POINTS, 3):
        raise ValueError(f"frontal_shape needs a (478, 3) mesh with depth, got {p.shape}")
    pairs = p[:468] - p[mirror_permutation()[:468]]
    pairs = pairs[np.linalg.norm(pairs, axis=1) > 1e-6]
    _, _, vt = np.linalg.svd(pairs, full_matrices=False)
    normal = vt[0] * np.sign(vt[0][0]) if vt[0][0] != 0 else vt[0]
    axis = np.cross(normal, [1.0, 0.0, 0.0])
    sin, cos = np.linalg.norm(axis), float(normal[0])
    if sin < 1e-9:
        return p[:, :2].astype(np.float32)
    k = axis / sin
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    rot = np.eye(3) + sin * kx + (1.0 - cos) * (kx @ kx)  # Rodrigues: normal -> +x
    centre = p[:468].mean(axis=0)
    return ((p - centre) @ rot.T + centre)[:, :2].astype(np.float32)


def upright_rotation(points: np.ndarray) -> np.ndarray:
    """The 2x2 rotation that turns a face mesh so that its midline points straight down (+y)."""
    mid = np.asarray(points, np.float64)[list(MIDLINE)]
    _, _, vt = np.linalg.svd(mid - mid.mean(axis=0))
    down = vt[0] * np.sign(vt[0][1])
    angle = np.arctan2(down[0], down[1])
    return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


#: rolls (degrees) below this are meshed on the plain axis-aligned crop (mediapipe copes, and upright
#: faces keep the meshes they always had)
MIN_ROLL = 15.0


def roll_degrees(points: np.ndarray) -> float:
    """A face's in-plane tilt in degrees from its eye centres (a mesh or five points): the angle of
    the line from the eye on the image's left to the other, positive when the image's right eye is
    lower. Turning the image by it (``cv2.getRotationMatrix2D``'s sense) levels the eyes."""
    five = five_points(points)
    dx, dy = five[1] - five[0]
    return float(np.degrees(np.arctan2(dy, dx)))


def crop_box(box: np.ndarray, rows: int, columns: int, scale: float = 1.7) -> tuple[int, int, int, int]:
    """A square crop around ``box`` enlarged ``scale`` times, clipped to the frame."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = scale * max(box[2] - box[0], box[3] - box[1]) / 2
    x0, y0 = int(max(0, np.floor(cx - half))), int(max(0, np.floor(cy - half)))
    x1, y1 = int(min(columns, np.ceil(cx + half))), int(min(rows, np.ceil(cy + half)))
    return x0, y0, x1, y1


def landmark_box(points: np.ndarray) -> np.ndarray:
    """The ``(x0, y0, x1, y1)`` box of a landmark set."""
    return np.array([*points.min(axis=0), *points.max(axis=0)], np.float32)


class LandmarkModel:
    """mediapipe face mesh (with irises) run on a crop around a tracked face box.

    Parameters
    ----------
    min_crop_px:
        Crops smaller than this are upscaled first, so 30-60 px faces still get a mesh.
    """

    def __init__(self, min_crop_px: int = 256, min_confidence: float = 0.5) -> None:
        import mediapipe as mp

        self.min_crop_px = min_crop_px
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=True, min_detection_confidence=min_confidence
        )

    def landmarks(self, frame: np.ndarray, box: np.ndarray, *, depth: bool = False, roll: float = 0.0) -> np.ndarray | None:
        """478 points in frame pixels for the face in ``box``, or None when the mesh finds no face there.

        With ``depth`` the points are ``(478, 3)``: mediapipe's relative depth (towards the camera
        negative) in the same pixel scale as x. ``roll`` (degrees, the face's in-plane tilt as
        :func:`roll_degrees` measures it) turns the crop upright before the mesh sees it and the points
        back after, as mediapipe's own pipeline does from its detector's eye points: past about 40
        degrees the mesh's own detector no longer finds a face in an unturned crop. Rolls under
        :data:`MIN_ROLL` keep the plain axis-aligned crop.
        """
        import cv2

        if abs(roll) >= MIN_ROLL:
            return self._turned_landmarks(frame, box, roll, depth)
        rows, columns = frame.shape[:2]
        x0, y0, x1, y1 = crop_box(box, rows, columns)
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        crop = np.ascontiguousarray(frame[y0:y1, x0:x1])
        scale = max(1.0, self.min_crop_px / max(crop.shape[:2]))
        if scale > 1.0:
            crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        pts = self._mesh_points(crop)
        if pts is None:
            return None
        pts = pts / scale + np.array([x0, y0, 0.0], np.float32)
        return self._checked(pts, box, depth)

    def _turned_landmarks(self, frame: np.ndarray, box: np.ndarray, roll: float, depth: bool) -> np.ndarray | None:
        import cv2

        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        side = 1.7 * max(box[2] - box[0], box[3] - box[1])  # crop_box's square
        if side < 8:
            return None
        out = int(max(self.min_crop_px, round(side)))
        scale = out / side
        # frame -> upright crop: turn by the roll about the face's centre, scale, centre in the crop
        turn = cv2.getRotationMatrix2D((float(cx), float(cy)), float(roll), float(scale))
        turn[:, 2] += (out / 2 - cx, out / 2 - cy)
        crop = cv2.warpAffine(frame, turn, (out, out), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        pts = self._mesh_points(crop)
        if pts is None:
            return None
        back = cv2.invertAffineTransform(turn)
        xy = pts[:, :2] @ back[:, :2].T.astype(np.float32) + back[:, 2].astype(np.float32)
        pts = np.column_stack([xy, pts[:, 2] / scale]).astype(np.float32)
        return self._checked(pts, box, depth)

    def _mesh_points(self, crop: np.ndarray) -> np.ndarray | None:
        """The mesh ``(478, 3)`` in crop pixels (depth in the x scale), or None."""
        result = self._mesh.process(np.ascontiguousarray(crop))
        if not result.multi_face_landmarks:
            return None
        ch, cw = crop.shape[:2]
        return np.array([(p.x * cw, p.y * ch, p.z * cw) for p in result.multi_face_landmarks[0].landmark], np.float32)

    @staticmethod
    def _checked(pts: np.ndarray, box: np.ndarray, depth: bool) -> np.ndarray | None:
        # the mesh must describe the tracked face, not a neighbour that entered the crop
        centre = pts.mean(axis=0)
        bw, bh = box[2] - box[0], box[3] - box[1]
        if not (box[0] - 0.25 * bw <= centre[0] <= box[2] + 0.25 * bw and box[1] - 0.25 * bh <= centre[1] <= box[3] + 0.25 * bh):
            return None
        return pts if depth else np.ascontiguousarray(pts[:, :2])

    def close(self) -> None:
        """Release the mediapipe graph."""
        self._mesh.close()


#: the most the smoothing may move a face's place (a fraction of its size) or change its size (log
#: scale); beyond it the frame's own place and size are kept (see :func:`smooth_shapes`)
MAX_PLACE_SMOOTHING = 0.02


def smooth_shapes(points: np.ndarray, reference: np.ndarray, window: int = 7, order: int = 2) -> np.ndarray:
    """Savitzky-Golay smoothing of a face's meshes over time, its shape and its place apart from its
    turn: each mesh of ``points`` ``(T, P, 2)`` is centred on its face points' centroid, turned and
    scaled onto ``reference`` (fitted on the 468 face points); the aligned shapes, the centroids and
    the scales are smoothed (:func:`smooth_sequence`), the turn is not; each smoothed shape goes back
    by its frame's own turn to its smoothed place and size.

    Smoothing the points themselves averaged a turning head's meshes with their neighbours': a point
    on a head tilting 13 degrees a frame follows an arc, which a quadratic over seven frames misses
    by degrees, and the swap drew the surrogate's eyes on the forehead and its mouth over the
    patient's grin. Smoothing the turn's angle lags the same way where the head turns back. The turn
    fitted on 468 points is steady frame to frame; the shape and the place carry the mesh's jitter.
    """
    from clinrelease.face.geometry import fit_similarity

    data = np.asarray(points, np.float64)[:, :, :2]
    ref = np.asarray(reference, np.float64)[:468, :2]
    ref = ref - ref.mean(axis=0)
    centres = data[:, :468].mean(axis=1)  # (T, 2)
    centred = data - centres[:, None, :]
    fits = np.stack([fit_similarity(mesh[:468], ref)[:, :2] for mesh in centred])  # (T, 2, 2): scale x turn
    scales = np.sqrt(np.abs(np.linalg.det(fits)))
    turns = fits / scales[:, None, None]
    aligned = np.einsum("tpk,tjk->tpj", centred, turns) * scales[:, None, None]
    shapes = smooth_sequence(aligned.astype(np.float32), window, order).astype(np.float64)
    raw = np.concatenate([centres, np.log(scales)[:, None]], axis=1)  # (T, 3)
    place = smooth_sequence(raw[:, None, :], window, order)[:, 0].astype(np.float64)
    # where the filter moves the face more than its jitter (a fast turn, a sudden step), the frame
    # keeps its own place and size: a quadratic over the window cannot follow it there
    sizes = np.sqrt((ref**2).sum(axis=1).mean()) / scales  # each frame's face size: the reference's over its scale
    moved = np.maximum(np.linalg.norm(place[:, :2] - raw[:, :2], axis=1) / sizes, np.abs(place[:, 2] - raw[:, 2]))
    place = np.where((moved > MAX_PLACE_SMOOTHING)[:, None], raw, place)
    centres, scales = place[:, :2], np.exp(place[:, 2])
    # a turn's inverse is its transpose
    return (np.einsum("tpk,tkj->tpj", shapes / scales[:, None, None], turns) + centres[:, None, :]).astype(np.float32)


@lru_cache(maxsize=16)
def _savgol_projection(window: int, order: int) -> np.ndarray:
    """``(window, window)`` matrix: row ``i`` gives the fitted value at window position ``i``.

    The least-squares polynomial of degree ``order`` through ``window`` samples is a projection
    ``V (V^T V)^-1 V^T`` of the samples (``V`` the Vandermonde matrix of positions ``-h..h``).
    """
    x = np.arange(window, dtype=np.float64) - window // 2
    v = np.vander(x, order + 1, increasing=True)
    return v @ np.linalg.pinv(v)


def smooth_sequence(points: np.ndarray, window: int = 7, order: int = 2, block: int = 256) -> np.ndarray:
    """Savitzky-Golay smoothing of a landmark sequence ``(T, P, 2)`` along time.

    A quadratic fit over ``window`` frames removes detector jitter but follows fast mouth and eye
    motion better than a moving average. Sequences shorter than the window are returned as they are.
    Same result as ``scipy.signal.savgol_filter(points, w, order, axis=0, mode="interp")`` (the
    edges take the polynomial fitted to the first and last window), without importing scipy.signal,
    which takes seconds in a fresh worker process. Works in float32, ``block`` frames at a time.
    """
    t = points.shape[0]
    w = min(window, t if t % 2 == 1 else t - 1)
    if w <= order:
        return points.copy()
    proj = _savgol_projection(w, order).astype(np.float32)
    half = w // 2
    data = np.asarray(points, np.float32)
    out = np.empty_like(data)
    # interior: the centre row of the projection slid along time, in blocks so that a long video
    # needs no temporary copies of its whole landmark sequence (float32 is ample for pixels)
    for lo in range(half, t - half, block):
        hi = min(lo + block, t - half)
        windows = np.lib.stride_tricks.sliding_window_view(data[lo - half : hi + half], w, axis=0)  # (n, P, 2, w)
        out[lo:hi] = windows @ proj[half]
    out[:half] = np.tensordot(proj[:half], data[:w], axes=(1, 0))
    out[t - half :] = np.tensordot(proj[w - half :], data[t - w :], axes=(1, 0))
    return out

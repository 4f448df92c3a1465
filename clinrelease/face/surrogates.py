"""Surrogate identities: validated donor pools, k-Same composites, key-driven choice.

A surrogate is the aligned average of ``k`` donors' shapes and textures: every donor's face is
warped onto the donors' mean shape and the warped textures are averaged, so the surrogate is nobody
in particular and no single donor is recognizable. The release key and the patient's pseudonym pick
the donors by HMAC, so one patient always gets the same surrogate under one key.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from clinrelease.crypto.kdf import derive
from clinrelease.errors import ConfigError, MissingModelError
from clinrelease.face.geometry import WarpMaps, apply_affine, fit_similarity, ring_points, triangulate, warp_maps
from clinrelease.face.landmarks import frontal_shape, mesh_indices, upright_rotation
from clinrelease.face.skin import clean_texture, feature_region, skin_mask, skin_weight, usable_skin
from clinrelease.face.params import SwapParams

#: side of the square surrogate texture, pixels
TEXTURE_SIZE = 320
#: height of the mean face oval inside the texture, pixels
FACE_HEIGHT = 190
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".webm"}
#: largest nose-tip offset (fraction of the eye span) of a frontal donor face
MAX_NOSE_OFFSET = 0.25


@dataclass
class Donor:
    """One consented donor face: image and its 478-point mesh."""

    donor_id: str
    image: np.ndarray  # RGB uint8
    landmarks: np.ndarray  # (478, 2) float32, image pixels
    #: (478, 2) float32: the mesh turned to face the camera (:func:`frontal_shape`); None = ``landmarks``
    frontal: np.ndarray | None = None

    @property
    def shape(self) -> np.ndarray:
        """The donor's face shape as seen from the front (composites mix these)."""
        return self.landmarks if self.frontal is None else self.frontal

    @cached_property
    def greyscale(self) -> bool:
        """True for a black-and-white photo (stored as RGB): its channels agree within JPEG noise."""
        spread = np.ptp(np.asarray(self.image, np.int16), axis=2)
        return bool(np.percentile(spread, 99) <= GREY_SPREAD)

    @cached_property
    def skin_weight(self) -> np.ndarray:
        """(h, w) float32: how much each pixel of the photo counts in a composite (:func:`~clinrelease.face.skin.skin_weight`)."""
        return skin_weight(self.image, self.landmarks)


#: largest channel spread (grey levels, 99th percentile of pixels) of a greyscale photo
GREY_SPREAD = 6

#: ITU-R BT.601 luma weights of R, G, B
#: luma weights (ITU-R BT.601): brightness of an RGB colour
LUMA = np.array([0.299, 0.587, 0.114])


def _luma_chroma(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(..., 3)`` RGB to luma and the colour differences R - Y, B - Y (linear, invertible)."""
    y = rgb @ LUMA
    return y, np.stack([rgb[..., 0] - y, rgb[..., 2] - y], axis=-1)


def _rgb(luma: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_luma_chroma`."""
    r, b = luma + chroma[..., 0], luma + chroma[..., 1]
    g = (luma - LUMA[0] * r - LUMA[2] * b) / LUMA[1]
    return np.stack([r, g, b], axis=-1)


@dataclass
class Surrogate:
    """A composite identity in a fixed texture frame.

    ``donor_ids`` are internal (they go into the site's audit log, never into a release).
    """

    texture: np.ndarray  # (TEXTURE_SIZE, TEXTURE_SIZE, 3) RGB uint8, face in the mean shape
    landmarks: np.ndarray  # (478, 2) float32 mean shape in texture pixels
    donor_ids: tuple[str, ...]
    digest: str

    @cached_property
    def ring(self) -> np.ndarray:
        """The outer ring of the warped region in texture pixels."""
        return ring_points(self.landmarks, mesh_indices()["oval"])

    @cached_property
    def triangles(self) -> np.ndarray:
        """Triangulation of mesh + ring (Delaunay on the frontal mean shape)."""
        return triangulate(np.concatenate([self.landmarks, self.ring]))

    @cached_property
    def skin(self) -> np.ndarray:
        """(h, w) float32 on the texture: 1 where it shows the face's skin or features, in the face
        oval and past it (the forehead up to the hairline), 0 on hair and background."""
        import cv2

        keep = skin_mask(self.texture, self.landmarks, within_oval=False) | feature_region(self.texture.shape[:2], self.landmarks)
        return cv2.GaussianBlur(keep.astype(np.float32), (0, 0), 1.5)

    @cached_property
    def _prefiltered(self) -> dict[tuple[int, int, int], Surrogate]:
        return {}

    def for_scale(self, scale: float, softness: float = 0.0) -> Surrogate:
        """This surrogate with its texture low-passed for drawing at ``scale`` frame pixels per
        texture pixel, into a video whose own picture is ``softness`` frame pixels soft (a Gaussian's
        sigma; see :func:`clinrelease.face.swap.video_softness`).

        Sampling the texture straight at a small face (a 60 px face takes one texel in three)
        aliases: isolated dark texels turn into specks, and they shimmer as the face moves, which
        is flicker. Below ``scale`` 1/sqrt(2) the texture is blurred by a Gaussian of
        ``0.5 * sqrt(m**2 - 1)`` texels for ``m = 1 / scale`` rounded down to half octaves; the
        video's softness adds ``softness / scale`` texels (softness in quarter pixels, scale in quarter octaves). Each level is
        cached; shape, triangles and digest stay the same.
        """
        if not scale > 0:
            raise ValueError(f"scale must be positive, got {scale}")
        level = int(np.floor(2.0 * np.log2(max(1.0 / scale, 1.0))))
        soft = int(round(4.0 * max(float(softness), 0.0)))
        if level <= 0 and soft == 0:
            return self
        # texels per frame pixel, in quarter octaves, for the softness's share
        texels = int(round(4.0 * np.log2(1.0 / scale))) if soft else 0
        if (level, soft, texels) not in self._prefiltered:
            import cv2

            m = 2.0 ** (max(level, 0) / 2.0)
            sigma = float(np.hypot(0.5 * np.sqrt(m * m - 1.0), 0.25 * soft * 2.0 ** (texels / 4.0)))
            texture = cv2.GaussianBlur(self.texture, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
            blurred = Surrogate(texture, self.landmarks, self.donor_ids, self.digest)
            blurred.__dict__.update(ring=self.ring, triangles=self.triangles)
            self._prefiltered[(level, soft, texels)] = blurred
        return self._prefiltered[(level, soft, texels)]


@dataclass
class DonorPool:
    """A validated set of donors."""

    donors: list[Donor] = field(default_factory=list)
    source: str = ""

    def __len__(self) -> int:
        return len(self.donors)

    @classmethod
    def load(cls, folder: str | Path, *, min_face_px: int = 80) -> DonorPool:
        """Load and validate a folder of donor images or short videos (one frontal face each).

        Raises
        ------
        ConfigError
            When the folder is missing or holds fewer than two donors, or a file is unreadable, has
            no face or several, a face smaller than ``min_face_px`` or a face that is not frontal.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise ConfigError("donor pool folder does not exist", folder)
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
        if len(files) < 2:
            raise ConfigError("a donor pool needs at least two donor images or videos", folder)
        donors = [_donor_from_file(p, min_face_px) for p in files]
        return cls(donors, source=str(folder))


def _read_donor_image(path: Path) -> np.ndarray:
    import cv2

    if path.suffix.lower() in VIDEO_SUFFIXES:
        from clinrelease.dicom.video import open_video
        from clinrelease.errors import InputError

        try:
            for frame in open_video(path):
                return frame  # the first frame of a short donor video
        except InputError as exc:
            raise ConfigError(f"donor video cannot be decoded: {exc.message}", path) from exc
        raise ConfigError("donor video holds no frames", path)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ConfigError("donor file is not a readable image", path)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _donor_from_file(path: Path, min_face_px: int) -> Donor:
    image = _read_donor_image(path)
    faces = _shared_detector().detect(image)
    if not faces:
        raise ConfigError("no face found in the donor image", path)
    if len(faces) > 1:
        raise ConfigError(f"{len(faces)} faces found in the donor image; a donor image must show exactly one", path)
    return _skin_checked(_donor_from_box(image, faces[0].box, path.stem, min_face_px, path), path)


def _donor_from_box(image: np.ndarray, box: np.ndarray, donor_id: str, min_face_px: int, path: Path | str) -> Donor:
    size = float(max(box[2] - box[0], box[3] - box[1]))
    if size < min_face_px:
        raise ConfigError(f"the donor face is {size:.0f} px; at least {min_face_px} px is needed", path)
    mesh = _shared_landmarks().landmarks(image, box, depth=True)
    if mesh is None:
        raise ConfigError("the face mesh could not be fitted to the donor face", path)
    points = np.ascontiguousarray(mesh[:, :2])
    yaw = frontal_offset(points)
    if abs(yaw) > MAX_NOSE_OFFSET:
        raise ConfigError(
            f"the donor face is not frontal (nose offset {yaw:+.2f} of the eye span; at most {MAX_NOSE_OFFSET:.2f})", path
        )
    return Donor(donor_id, image, points, frontal_shape(mesh))


def _skin_checked(donor: Donor, path: Path | str) -> Donor:
    """``donor``, refused when too little of its face periphery is skin (a photo donor; generated
    faces have the generator's own forehead check)."""
    skin = usable_skin(donor.image, donor.landmarks)
    if skin < MIN_USABLE_SKIN:
        raise ConfigError(
            f"hair, a beard, glasses or shadow cover the donor's face: {skin:.0%} of the cheeks, temples, forehead and jaw "
            f"is skin, at least {MIN_USABLE_SKIN:.0%} is needed",
            path,
        )
    return donor


#: smallest fraction of a donor face's periphery (outside eyes, brows, nose and lips) that must be
#: skin: the swap fills the rest from the skin around it, which blurs a face that is mostly hair
MIN_USABLE_SKIN = 0.54


def frontal_offset(points: np.ndarray) -> float:
    """Horizontal nose-tip offset from the eyes' midpoint as a fraction of the eye span (0 = frontal)."""
    left, right, nose = points[33], points[263], points[1]
    span = float(np.linalg.norm(right - left)) or 1.0
    axis = (right - left) / span
    return float(np.dot(nose - (left + right) / 2, axis) / span)


@lru_cache(maxsize=1)
def _shared_detector():
    from clinrelease.face.detect import FaceDetector

    return FaceDetector(("mediapipe", "yunet"))


@lru_cache(maxsize=1)
def _shared_landmarks():
    from clinrelease.face.landmarks import LandmarkModel

    return LandmarkModel()


#: openpeople's synthetic people (MIT): the built-in pool. Its ten studio portraits less those both
#: recognizers take for one kept before them (P004, P010 ~ P002; P009 ~ P001); P005's beard fails
#: the skin check (:data:`MIN_USABLE_SKIN`) and is dropped when the pool loads
OPENPEOPLE_DONORS = ("P001", "P002", "P003", "P005", "P006", "P007", "P008")
#: longest side a built-in donor photo is kept at (pixels)
MAX_DONOR_SIDE = 1024


@lru_cache(maxsize=1)
def default_pool() -> DonorPool:
    """The built-in donors, available offline after install: the studio portraits of openpeople's
    synthetic people (:data:`OPENPEOPLE_DONORS`; MIT licence, nobody real), frontal, neutral and
    evenly lit, each vetted like a site's donor (one frontal face, skin over the periphery).

    Raises
    ------
    MissingModelError
        When the package that carries the portraits is not installed.
    """
    import cv2

    from clinrelease.models import package_dir

    people = package_dir("openpeople")
    if people is None:
        raise MissingModelError("the built-in donor pool needs the Python package 'openpeople' (pip install openpeople==0.1.2)")
    donors: list[Donor] = []
    for pid in OPENPEOPLE_DONORS:
        path = people / "data/curated" / pid / "assets/studio_portrait.jpg"
        image = cv2.imread(str(path))
        if image is None:
            raise MissingModelError(f"the built-in donor portrait {path} is missing; reinstall openpeople==0.1.2")
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if max(image.shape[:2]) > MAX_DONOR_SIDE:  # 2048 px portraits: the face stays ~170 px
            f = MAX_DONOR_SIDE / max(image.shape[:2])
            image = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
        faces = _shared_detector().detect(image)
        if len(faces) == 1:
            try:
                donors.append(_skin_checked(_donor_from_box(image, faces[0].box, pid, 80, path), path))
            except ConfigError:
                continue  # vetted like any donor: a portrait that fails is not used
    return DonorPool(donors, source="default")


@dataclass(frozen=True)
class ShapeMode:
    """A smooth, local change of face shape: mesh points near ``centres`` move by ``moves``.

    Each centre's displacement (in face heights, x right / y down in the frontal texture frame) fades
    with a Gaussian of ``radius`` face heights, so neighbouring points follow and the mesh never folds.
    """

    name: str
    centres: tuple[int, ...]
    moves: tuple[tuple[float, float], ...]
    radius: float

    def field(self, shape: np.ndarray, face_height: float) -> np.ndarray:
        """Displacement ``(N, 2)`` of every point of ``shape`` for amplitude 1 (one face height)."""
        out = np.zeros_like(shape, dtype=np.float64)
        r2 = 2.0 * (self.radius * face_height) ** 2
        for c, move in zip(self.centres, self.moves):
            w = np.exp(-((shape - shape[c]) ** 2).sum(axis=1) / r2)
            out += w[:, None] * np.asarray(move)
        return out * face_height


#: key-driven shape changes where identity lives (eye spacing, brow, nose, mouth, jaw, chin), on
#: mediapipe mesh indices: 468/473 iris centres, 105/334 brows, 1 nose tip, 129/358 nose wings,
#: 61/291 mouth corners, 0/17 lip middles, 152 chin, 172/397 jaw angles, 234/454 cheekbones
SHAPE_MODES: tuple[ShapeMode, ...] = (
    ShapeMode("eye_spacing", (468, 473), ((-1, 0), (1, 0)), 0.10),
    ShapeMode("eye_height", (468, 473, 105, 334), ((0, 1), (0, 1), (0, 1), (0, 1)), 0.12),
    ShapeMode("brow_height", (105, 334), ((0, -1), (0, -1)), 0.07),
    ShapeMode("nose_length", (1,), ((0, 1),), 0.08),
    ShapeMode("nose_width", (129, 358), ((-1, 0), (1, 0)), 0.05),
    ShapeMode("mouth_width", (61, 291), ((-1, 0), (1, 0)), 0.06),
    ShapeMode("mouth_height", (0, 17, 61, 291), ((0, 1), (0, 1), (0, 1), (0, 1)), 0.08),
    ShapeMode("chin_length", (152,), ((0, 1),), 0.12),
    ShapeMode("jaw_width", (172, 397), ((-1, 0), (1, 0)), 0.12),
    ShapeMode("cheek_width", (234, 454), ((-1, 0), (1, 0)), 0.12),
)


#: inner-lip gap (fraction of the face height) up to which a surrogate's own lips count as closed
#: and are kept as photographed (studio portraits: 0.0002-0.001; grinning composites 0.008-0.03)
CLOSED_LIPS = 0.004


def lip_gap(shape: np.ndarray) -> float:
    """Gap between the inner lips at the midline, as a fraction of the face height."""
    pts = np.asarray(shape, np.float64)
    return float(np.linalg.norm(pts[13] - pts[14]) / max(float(np.ptp(pts[mesh_indices()["oval"], 1])), 1.0))


#: lip colour relative to the surrogate's skin (R, G, B): redder and darker
LIP_TINT = (0.93, 0.78, 0.78)


def neutral_lips(texture: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """``texture`` with closed, neutral lips painted inside the outer lip contour of ``shape``.

    The donors of any pool photographed in daylight tend to grin, and mediapipe's inner-lip points
    sit on the lips, not on the teeth, so the composite would grin on every patient, which a
    hypomimia exam must never see. The lips are repainted from the surrogate's own skin colour
    (tinted, shaded darker above, with a soft dark line midway between the inner lips) and
    feathered into the face, and the smile folds around the mouth are smoothed; the patient's own
    lip shape and mouth opening are kept at render time.
    """
    import cv2

    rows, cols = texture.shape[:2]
    idx = mesh_indices()
    outer = idx["outer_lips"]
    # the inner contour runs corner, 9 upper points, corner, 9 lower points back: pair them up
    upper, lower = idx["inner_lips"][1:10], idx["inner_lips"][:10:-1]
    pts = np.asarray(shape, np.float64)
    face = np.zeros((rows, cols), np.uint8)
    cv2.fillPoly(face, [np.round(pts[idx["oval"]]).astype(np.int32)], 1)
    lips = np.zeros((rows, cols), np.uint8)
    cv2.fillPoly(lips, [np.round(pts[outer] * 16).astype(np.int32)], 1, lineType=cv2.LINE_AA, shift=4)
    skin_px = texture[(face > 0) & (lips == 0)].astype(np.float64)
    if len(skin_px) < 16:
        return texture
    skin = np.median(skin_px, axis=0)
    grey = bool(np.ptp(skin) < 4 and np.ptp(texture[face > 0].astype(np.int16), axis=1).max() < 8)
    tint = np.array((0.85, 0.85, 0.85) if grey else LIP_TINT)
    lip_rgb = skin * tint
    # shading: the upper lip faces down and is darker; the seam between the lips is darkest
    mouth_h = max(float(np.ptp(pts[outer, 1])), 2.0)
    seam = (pts[upper] + pts[lower]) / 2
    seam_y = np.interp(np.arange(cols), seam[:, 0], seam[:, 1])
    dy = np.arange(rows, dtype=np.float64)[:, None] - seam_y[None, :]
    shade = np.where(dy < 0, 0.95, 1.0) * (1.0 - 0.18 * np.exp(-(dy / (0.06 * mouth_h + 0.5)) ** 2))
    painted = lip_rgb[None, None, :] * shade[:, :, None]
    # smile folds and dimples around the mouth are smoothed away: an ellipse from under the nose to
    # the chin keeps only its low-frequency shading
    corners = pts[[61, 291]]
    centre = (pts[13] + pts[14]) / 2
    half_w = 0.85 * float(np.hypot(*(corners[1] - corners[0])))
    half_h = 0.5 * float(abs(pts[152, 1] - pts[2, 1]))
    around = np.zeros((rows, cols), np.uint8)
    angle = float(np.degrees(np.arctan2(*(corners[1] - corners[0])[::-1])))
    cv2.ellipse(around, (centre * 16).round().astype(int).tolist(), (int(half_w * 16), int(half_h * 16)), angle, 0, 360, 1, -1, cv2.LINE_AA, 4)
    around = cv2.GaussianBlur(around.astype(np.float32), (0, 0), 0.15 * half_h)[:, :, None] * (face[:, :, None] > 0)
    smooth = cv2.GaussianBlur(texture.astype(np.float32), (0, 0), 0.12 * mouth_h + 1.0).astype(np.float64)
    base = texture.astype(np.float64) * (1 - around) + smooth * around
    alpha = cv2.GaussianBlur(lips.astype(np.float32), (0, 0), max(0.04 * mouth_h, 0.8))[:, :, None]
    alpha = np.clip(alpha * 1.15, 0.0, 1.0)
    out = base * (1 - alpha) + painted * alpha
    return out.round().clip(0, 255).astype(np.uint8)


#: a donor's weight where it is most foreshortened, relative to where it faces the camera
MIN_VISIBILITY = 0.05


def visibility(source_map: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """``(h, w)`` in [0, 1]: how squeezed a donor's face is where the warp reads it.

    The warp's Jacobian determinant is the donor's image area behind one texture pixel. Where a
    donor turns away it drops: the far cheek is foreshortened, often hidden behind the nose or hair,
    and stretched back to frontal size it shows as jagged streaks. Relative to the donor's own
    median, a squeeze to half the area gives 1/4.
    """
    import cv2

    gy_x, gx_x = np.gradient(source_map[..., 0])
    gy_y, gx_y = np.gradient(source_map[..., 1])
    area = np.abs(gx_x * gy_y - gy_x * gx_y)
    typical = float(np.median(area[inside])) if inside.any() else 1.0
    ratio = np.clip(area / max(typical, 1e-9), 0.0, 1.0) ** 2
    return cv2.GaussianBlur(ratio.astype(np.float32), (0, 0), 3.0)


def average_face_weight(chosen: int, donors: int) -> float:
    """How far a surrogate's luma is pushed away from the donors left out of it (0 = not at all, 1 =
    as far as its coefficients reach, like its shape).

    The others' mean (the ``donors - chosen`` donors not in the composite) stands for the average
    face only when they are many: each carries ``1 / others`` of it, and pushing away from a few
    specific people can push towards someone else. ``1 - chosen / others``, never below 0: 0 for the
    built-in pool (3 of 6; SFace matched surrogates of 3 of 30 keys to a patient of the shared clips
    with the full push), 0.67 for 3 of 12, 0.88 for 3 of 27.
    """
    others = donors - chosen
    return 0.0 if others <= 0 else max(0.0, 1.0 - chosen / others)


class _WeightedMean:
    """Running weighted average of values warped into the texture frame, one texture at a time."""

    def __init__(self, channels: int) -> None:
        shape = (TEXTURE_SIZE, TEXTURE_SIZE) if channels == 1 else (TEXTURE_SIZE, TEXTURE_SIZE, channels)
        self.total = np.zeros(shape, np.float64)
        self.weight = np.zeros((TEXTURE_SIZE, TEXTURE_SIZE), np.float64)

    def add(self, maps: WarpMaps, weights: np.ndarray, values: np.ndarray) -> None:
        """Add ``values`` (one per pixel of ``maps.inside``) with ``weights`` (negative ones take a
        texture back out)."""
        if not weights.any():
            return
        x0, y0, x1, y1 = maps.region
        w = weights if values.ndim == 1 else weights[:, None]
        self.total[y0:y1, x0:x1][maps.inside] += w * values
        self.weight[y0:y1, x0:x1][maps.inside] += weights

    def copy(self) -> _WeightedMean:
        out = _WeightedMean.__new__(_WeightedMean)
        out.total, out.weight = self.total.copy(), self.weight.copy()
        return out

    @property
    def defined(self) -> np.ndarray:
        return self.weight > 1e-6

    def mean(self) -> np.ndarray:
        out = np.zeros_like(self.total)
        ok = self.defined
        out[ok] = self.total[ok] / (self.weight[ok] if self.total.ndim == 2 else self.weight[ok][:, None])
        return out


@dataclass
class DonorSpace:
    """A pool's donors aligned in one frame: the space composite surrogates are drawn from.

    ``shapes`` are the donors' meshes after generalized Procrustes alignment, placed in the texture
    frame; ``mean`` is their average. A surrogate is an affine combination of donors (coefficients
    summing to 1; above-average weights on a few donors, possibly negative on the rest, which moves
    it away from the pool's average face) plus key-driven :data:`SHAPE_MODES`.
    """

    donors: list[Donor]
    shapes: np.ndarray  # (n, 478, 2) float64, texture pixels
    mean: np.ndarray  # (478, 2) float64

    @classmethod
    def build(cls, donors: list[Donor], weights: np.ndarray | None = None) -> DonorSpace:
        """Align ``donors`` (weighted Procrustes; equal weights when None) and place them in the frame."""
        if not donors:
            raise ConfigError("a composite needs at least one donor")
        w = np.full(len(donors), 1.0 / len(donors)) if weights is None else np.asarray(weights, np.float64)
        w = w / w.sum()
        # each donor's shape as seen from the front: a donor photographed slightly turned would
        # otherwise turn the composite (and extrapolating away from the pool mean turns it further),
        # and a turned surrogate shape squashes one side of every patient's face it is put on
        frontal = [d.shape for d in donors]
        ref = frontal[0].astype(np.float64)
        for _ in range(2):  # generalized Procrustes: align every shape to the running mean, twice
            aligned = np.stack([apply_affine(fit_similarity(f, ref), f) for f in frontal]).astype(np.float64)
            ref = np.tensordot(w, aligned, axes=1)
        # the weighted mean stands upright (the first donor may tilt its head: the frame's x and y
        # are what SHAPE_MODES move along), its face oval FACE_HEIGHT tall and centred in the texture
        turn = upright_rotation(ref)
        aligned, ref = aligned @ turn.T, ref @ turn.T
        oval = mesh_indices()["oval"]
        lo, hi = ref[oval].min(axis=0), ref[oval].max(axis=0)
        scale = FACE_HEIGHT / (hi[1] - lo[1])
        place = lambda p: (p - (lo + hi) / 2) * scale + TEXTURE_SIZE / 2  # noqa: E731
        return cls(list(donors), place(aligned), place(ref))

    @cached_property
    def _triangles(self) -> np.ndarray:
        """The one triangulation every warp of this space uses (the mean shape's, ring included)."""
        return triangulate(self._mean_points)

    @cached_property
    def _mean_points(self) -> np.ndarray:
        mean = self.mean.astype(np.float32)
        return np.concatenate([mean, ring_points(mean, mesh_indices()["oval"])])

    def _warp(self, donor: Donor, dst: np.ndarray) -> tuple[WarpMaps, np.ndarray, np.ndarray, np.ndarray]:
        """``donor``'s photo warped onto mesh ``dst`` (ring included): maps, luma and colour
        differences of the pixels inside, and how squarely the donor faced the camera there."""
        import cv2

        src = np.concatenate([donor.landmarks, ring_points(donor.landmarks, mesh_indices()["oval"])])
        maps = warp_maps(dst, [src], self._triangles, TEXTURE_SIZE, TEXTURE_SIZE)
        warped = cv2.remap(donor.image, maps.maps[0], None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        y, colour = _luma_chroma(warped[maps.inside].astype(np.float64))
        seen = np.maximum(visibility(maps.maps[0], maps.inside), MIN_VISIBILITY)[maps.inside]
        seen = seen * cv2.remap(donor.skin_weight, maps.maps[0], None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)[maps.inside]
        return maps, y, colour, seen

    @cached_property
    def _pool_luma(self) -> _WeightedMean:
        """Every donor's luma on the mean shape, weighted by where it is seen (once per pool)."""
        total = _WeightedMean(1)
        for d in self.donors:
            maps, y, _, seen = self._warp(d, self._mean_points)
            total.add(maps, seen, y)
        return total

    def _left_out_luma(self, chosen: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Average luma of the donors not ``chosen``, on mesh ``dst``, and where it is defined.

        The pool's sum on the mean shape less the chosen donors', warped onto ``dst`` in one go: a
        surrogate costs its own donors' warps, not one per donor of the pool.
        """
        import cv2

        rest = self._pool_luma.copy()
        for d in (d for d, keep in zip(self.donors, chosen) if keep):
            maps, y, _, seen = self._warp(d, self._mean_points)
            rest.add(maps, -seen, y)
        on_mean = rest.mean().astype(np.float32)
        maps = warp_maps(dst, [self._mean_points], self._triangles, TEXTURE_SIZE, TEXTURE_SIZE)
        x0, y0, x1, y1 = maps.region
        out = np.zeros((TEXTURE_SIZE, TEXTURE_SIZE), np.float64)
        defined = np.zeros((TEXTURE_SIZE, TEXTURE_SIZE), bool)
        out[y0:y1, x0:x1] = cv2.remap(on_mean, maps.maps[0], None, cv2.INTER_LINEAR)
        seen = cv2.remap(rest.defined.astype(np.float32), maps.maps[0], None, cv2.INTER_NEAREST) > 0.5
        defined[y0:y1, x0:x1] = seen & maps.inside
        return out, defined

    def render(self, coefficients: np.ndarray, modes: np.ndarray | None = None) -> Surrogate:
        """The surrogate with shape ``sum(c_i * shape_i)`` plus shape modes of amplitudes ``modes``.

        Every donor with a positive coefficient has its texture warped straight onto that shape (one
        warp each). Colour is the warped textures' average under the positive coefficients; luma
        is pushed on from there, away from the average of the donors left out, as far as the
        coefficients reach past that average (``sum of the positive c_i - 1``, scaled by
        :func:`average_face_weight`), as the shape is.
        """
        c = np.asarray(coefficients, np.float64)
        c = c / c.sum()
        shape = np.tensordot(c, self.shapes, axes=1)
        # colour mixes convexly (negative weights would leave inverted ghosts of the other donors)
        t = np.clip(c, 0.0, None)
        t = t / t.sum()
        oval = mesh_indices()["oval"]
        if modes is not None:
            height = float(np.ptp(self.mean[oval, 1]))
            for mode, amp in zip(SHAPE_MODES, modes):
                shape = shape + float(amp) * mode.field(self.mean, height)
        shape = shape.astype(np.float32)
        dst = np.concatenate([shape, ring_points(shape, oval)])
        # mixed as luma and two colour differences (a linear change of basis, so colour donors mix
        # exactly as in RGB): a greyscale donor adds its features to the luma only, instead of
        # washing the colour out of the whole composite
        luma, chroma = _WeightedMean(1), _WeightedMean(2)
        for d, cd in zip(self.donors, t):
            if cd < 1e-9:
                continue
            maps, y, colour, seen = self._warp(d, dst)
            luma.add(maps, cd * seen, y)
            if not d.greyscale:
                chroma.add(maps, cd * seen, colour)
        inside = luma.defined
        luma_mix, chroma_mix = luma.mean(), chroma.mean()
        # plain averages of textures converge on the average face, and recognizers match such
        # averages to each other: luma moves on, away from the donors left out
        reach = (float(c[c > 0].sum()) - 1.0) * average_face_weight(int((t > 0).sum()), len(c))
        if reach > 1e-9:
            left_out, seen_left_out = self._left_out_luma(t > 0, dst)
            moved = inside & seen_left_out
            luma_mix[moved] += reach * (luma_mix[moved] - left_out[moved])
        mixed = np.zeros((TEXTURE_SIZE, TEXTURE_SIZE, 3), np.float64)
        mixed[inside] = _rgb(luma_mix[inside], chroma_mix[inside])
        texture = clean_texture(mixed.round().clip(0, 255).astype(np.uint8), shape)
        if lip_gap(shape) > CLOSED_LIPS:
            texture = neutral_lips(texture, shape)
        ids = tuple(d.donor_id for d in self.donors)
        tag = b"" if modes is None else np.asarray(modes, np.float64).tobytes()
        digest = hashlib.sha256(texture.tobytes() + shape.tobytes() + c.tobytes() + tag + "\n".join(ids).encode()).hexdigest()
        used = tuple(d.donor_id for d, cd in zip(self.donors, c) if cd > 0)
        return Surrogate(texture, shape, used, digest)


def composite(donors: list[Donor], weights: np.ndarray | None = None) -> Surrogate:
    """The k-Same composite of ``donors``: shapes averaged after alignment, textures warped to the mean
    shape and averaged.

    ``weights`` (positive, one per donor; equal when None) make a weighted average.
    """
    w = np.full(len(donors), 1.0) if weights is None else np.asarray(weights, np.float64)
    return DonorSpace.build(donors, w).render(w)


#: default distinctiveness: how far a surrogate is pushed from the pool's average face. 1 = none:
#: a plain weighted mix of real-looking portraits stays inside the range of natural faces, where a
#: push past the donors draws a caricature (over-drawn eyes and brows, issue 17)
DISTINCTIVENESS = SwapParams.distinctiveness
#: default largest shape-mode amplitude, in face heights
MODE_AMPLITUDE = SwapParams.mode_amplitude


def surrogate_coefficients(seed: bytes, ids: list[str], k: int, distinctiveness: float) -> np.ndarray:
    """Key-driven donor coefficients (summing to 1) over a pool whose donors are ``ids``.

    The HMAC ranking of the donors picks ``k``; HMAC-drawn weights in [1, 3) mix them (a k-Same
    composite); ``distinctiveness`` > 1 then pushes the composite away from the pool mean
    (the chosen donors' even mix moves ``d`` times as far from the pool mean; the key-drawn
    imbalance between them is kept as it is), so composites of different donor sets differ more
    than plain averages do while no donor dominates.
    """
    n = len(ids)
    order = sorted(range(n), key=lambda i: derive(seed, "surrogate-donor", ids[i]))
    c = np.zeros(n)
    for i in order[:k]:
        c[i] = 1.0 + 2.0 * int.from_bytes(derive(seed, "surrogate-weight", ids[i])[:4], "big") / 2**32
    c /= c.sum()
    # amplify only the chosen-vs-rest direction, not the imbalance between the chosen donors
    even = np.where(c > 0, 1.0 / k, 0.0)
    return 1.0 / n + distinctiveness * (even - 1.0 / n) + (c - even)


def shared_donor_probability(donors: int, k: int) -> float:
    """Chance that two patients' surrogates (``k`` donors each, drawn by independent keys from a pool
    of ``donors``) have at least one donor in common: ``1 - C(n-k, k) / C(n, k)``.

    Shared donors make surrogates alike; with the built-in pool (6 donors, k = 3) it is 0.95, which
    is why sites are asked to configure a larger pool. 30 donors give 0.28, 100 give 0.09.
    """
    if not 1 <= k <= donors:
        raise ConfigError(f"k must be between 1 and the pool size ({donors}), got {k}")
    return 1.0 - math.comb(donors - k, k) / math.comb(donors, k)


def mode_amplitudes(seed: bytes, amplitude: float) -> np.ndarray:
    """Key-driven amplitudes in [-amplitude, amplitude) for each of :data:`SHAPE_MODES`."""
    u = [int.from_bytes(derive(seed, "surrogate-mode", m.name)[:4], "big") / 2**32 for m in SHAPE_MODES]
    return amplitude * (2.0 * np.array(u) - 1.0)


def surrogate_seed(key: bytes, pseudonym: str, counter: int = 0) -> bytes:
    """Seed of the ``counter``-th surrogate of the key's sequence for ``pseudonym``.

    Counter 0 is ``derive(key, "surrogate", pseudonym)`` (the surrogate every release had before the
    sequence existed); the next ones are HMAC(key, pseudonym, counter), taken when an earlier one is
    too close to the patient (:mod:`clinrelease.face.surrogate_choice`).
    """
    return derive(key, "surrogate", sequence_member(pseudonym, counter))


def sequence_member(pseudonym: str, counter: int) -> str:
    """The name the ``counter``-th surrogate of ``pseudonym`` is derived from (any donor source)."""
    if counter < 0:
        raise ConfigError(f"the surrogate counter must not be negative, got {counter}")
    return pseudonym if counter == 0 else f"{pseudonym}\x00{counter}"


def choose_surrogate(
    pool: DonorPool,
    key: bytes,
    pseudonym: str,
    k: int = 3,
    *,
    distinctiveness: float = DISTINCTIVENESS,
    mode_amplitude: float = MODE_AMPLITUDE,
    counter: int = 0,
) -> Surrogate:
    """The surrogate of one patient under one release key.

    :func:`surrogate_seed` (key, pseudonym, ``counter``) seeds everything: which ``k`` donors form the composite
    and with what weights (:func:`surrogate_coefficients`), and the amplitudes of the key-driven
    :data:`SHAPE_MODES` (:func:`mode_amplitudes`). Same key and pseudonym, same surrogate; another key
    draws other donors, weights and shape, so recognizers tell the two surrogates apart.

    Raises
    ------
    ConfigError
        When ``k`` is below 2 or above the pool size, or ``distinctiveness`` is below 1.
    """
    if not 1 <= k <= len(pool):
        raise ConfigError(f"k must be between 1 and the pool size ({len(pool)}), got {k}", pool.source or None)
    if distinctiveness < 1.0:
        raise ConfigError(f"distinctiveness must be at least 1 (1 = plain k-Same average), got {distinctiveness}")
    seed = surrogate_seed(key, pseudonym, counter)
    ids = [d.donor_id for d in pool.donors]
    coeffs = tuple(surrogate_coefficients(seed, ids, k, distinctiveness))
    modes = tuple(mode_amplitudes(seed, mode_amplitude))
    cache_key = (id(pool), coeffs, modes)
    if cache_key not in _SURROGATES:
        _SURROGATES[cache_key] = _donor_space(pool).render(np.array(coeffs), np.array(modes))
    return _SURROGATES[cache_key]


_SURROGATES: dict[tuple[int, tuple[float, ...], tuple[float, ...]], Surrogate] = {}
_SPACES: dict[int, DonorSpace] = {}


def _donor_space(pool: DonorPool) -> DonorSpace:
    if id(pool) not in _SPACES:
        _SPACES[id(pool)] = DonorSpace.build(pool.donors)
    return _SPACES[id(pool)]

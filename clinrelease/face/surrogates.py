"""Surrogate identities: validated donor pools, k-Same composites, key-driven choice.

A surrogate is the aligned average of ``k`` donors' shapes and textures: every donor's face is
warped onto the donors' mean shape and the warped textures are averaged, so the surrogate is nobody
in particular and no single donor is recognizable. The release key and the patient's pseudonym pick
the donors by HMAC, so one patient always gets the same surrogate under one key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from clinrelease.crypto.kdf import derive
from clinrelease.errors import ConfigError
from clinrelease.face.geometry import apply_affine, fit_similarity, ring_points, triangulate, warp_maps
from clinrelease.face.landmarks import mesh_indices

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
    return _donor_from_box(image, faces[0].box, path.stem, min_face_px, path)


def _donor_from_box(image: np.ndarray, box: np.ndarray, donor_id: str, min_face_px: int, path: Path | str) -> Donor:
    size = float(max(box[2] - box[0], box[3] - box[1]))
    if size < min_face_px:
        raise ConfigError(f"the donor face is {size:.0f} px; at least {min_face_px} px is needed", path)
    points = _shared_landmarks().landmarks(image, box)
    if points is None:
        raise ConfigError("the face mesh could not be fitted to the donor face", path)
    yaw = frontal_offset(points)
    if abs(yaw) > MAX_NOSE_OFFSET:
        raise ConfigError(
            f"the donor face is not frontal (nose offset {yaw:+.2f} of the eye span; at most {MAX_NOSE_OFFSET:.2f})", path
        )
    return Donor(donor_id, image, points)


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


@lru_cache(maxsize=1)
def default_pool() -> DonorPool:
    """Donors available offline after install: insightface's t1.jpg (six faces) and sample portrait,
    scikit-image's astronaut.

    Raises
    ------
    MissingModelError
        When the packages that carry the images are not installed.
    """
    import cv2

    from clinrelease.models import model_path, package_dir

    donors: list[Donor] = []
    t1_path = model_path("sample_faces_t1")
    t1 = cv2.cvtColor(cv2.imread(str(t1_path)), cv2.COLOR_BGR2RGB)
    for i, det in enumerate(sorted(_shared_detector().detect(t1), key=lambda d: float(d.box[0]))):
        try:
            donors.append(_donor_from_box(t1, det.box, f"insightface-t1#{i}", 80, t1_path))
        except ConfigError:
            continue  # a group photo may hold a turned face; single-donor files must not
    singles = [model_path("sample_astronaut")]
    insight = package_dir("insightface")
    if insight is not None and (insight / "data/images/Tom_Hanks_54745.png").is_file():
        singles.append(insight / "data/images/Tom_Hanks_54745.png")
    for path in singles:
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        faces = _shared_detector().detect(image)
        if len(faces) == 1:
            try:
                donors.append(_donor_from_box(image, faces[0].box, path.stem, 80, path))
            except ConfigError:
                continue
    return DonorPool(donors, source="default")


def composite(donors: list[Donor], weights: np.ndarray | None = None) -> Surrogate:
    """The k-Same composite of ``donors``: shapes averaged after alignment, textures warped to the mean
    shape and averaged.

    ``weights`` (positive, one per donor; equal when None) make a weighted average, which lets a small
    pool give many distinct surrogates while every donor still contributes.
    """
    import cv2

    if not donors:
        raise ConfigError("a composite needs at least one donor")
    w = np.full(len(donors), 1.0 / len(donors)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    oval = mesh_indices()["oval"]
    # generalized Procrustes: align every shape to the running mean, twice
    ref = donors[0].landmarks.astype(np.float64)
    for _ in range(2):
        aligned = [apply_affine(fit_similarity(d.landmarks, ref), d.landmarks) for d in donors]
        ref = np.tensordot(w, np.stack(aligned), axes=1)
    # place the mean shape in the texture frame: oval FACE_HEIGHT tall, centred
    lo, hi = ref[oval].min(axis=0), ref[oval].max(axis=0)
    scale = FACE_HEIGHT / (hi[1] - lo[1])
    mean = ((ref - (lo + hi) / 2) * scale + TEXTURE_SIZE / 2).astype(np.float32)
    mean_pts = np.concatenate([mean, ring_points(mean, oval)])
    tris = triangulate(mean_pts)
    acc = np.zeros((TEXTURE_SIZE, TEXTURE_SIZE, 3), np.float64)
    weight = np.zeros((TEXTURE_SIZE, TEXTURE_SIZE), np.float64)
    for d, wd in zip(donors, w):
        src = np.concatenate([d.landmarks, ring_points(d.landmarks, oval)])
        maps = warp_maps(mean_pts, [src], tris, TEXTURE_SIZE, TEXTURE_SIZE)
        x0, y0, x1, y1 = maps.region
        warped = cv2.remap(d.image, maps.maps[0], None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        acc[y0:y1, x0:x1][maps.inside] += wd * warped[maps.inside]
        weight[y0:y1, x0:x1][maps.inside] += wd
    texture = (acc / np.maximum(weight, 1e-9)[..., None]).round().clip(0, 255).astype(np.uint8)
    ids = tuple(d.donor_id for d in donors)
    digest = hashlib.sha256(texture.tobytes() + mean.tobytes() + w.tobytes() + "\n".join(ids).encode()).hexdigest()
    return Surrogate(texture, mean, ids, digest)


def choose_surrogate(pool: DonorPool, key: bytes, pseudonym: str, k: int = 3) -> Surrogate:
    """The surrogate of one patient under one release key.

    ``derive(key, "surrogate", pseudonym)`` seeds an HMAC ranking of the donors; the first ``k``
    form the composite, with HMAC-drawn weights in [1, 3) so that a small pool still gives many
    distinct surrogates. Same key and pseudonym, same surrogate; another key, another choice.

    Raises
    ------
    ConfigError
        When ``k`` is below 2 or above the pool size.
    """
    if not 2 <= k <= len(pool):
        raise ConfigError(f"k must be between 2 and the pool size ({len(pool)}), got {k}", pool.source or None)
    seed = derive(key, "surrogate", pseudonym)
    ranked = sorted(pool.donors, key=lambda d: derive(seed, "surrogate-donor", d.donor_id))
    chosen = sorted(ranked[:k], key=lambda d: d.donor_id)
    weights = tuple(1.0 + 2.0 * int.from_bytes(derive(seed, "surrogate-weight", d.donor_id)[:4], "big") / 2**32 for d in chosen)
    return _cached_composite(pool, tuple(d.donor_id for d in chosen), weights)


_COMPOSITES: dict[tuple[int, tuple[str, ...], tuple[float, ...]], Surrogate] = {}


def _cached_composite(pool: DonorPool, ids: tuple[str, ...], weights: tuple[float, ...]) -> Surrogate:
    cache_key = (id(pool), ids, weights)
    if cache_key not in _COMPOSITES:
        by_id = {d.donor_id: d for d in pool.donors}
        _COMPOSITES[cache_key] = composite([by_id[i] for i in ids], np.array(weights))
    return _COMPOSITES[cache_key]

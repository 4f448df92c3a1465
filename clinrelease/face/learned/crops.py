"""Aligned face crops for the learned swap backends.

A face is aligned by the similarity transform (rotation, uniform scale, shift) that maps five points
(the two eye centres, the nose tip, the two mouth corners) onto a canonical template, the same
template ArcFace and insightface's swapper use at 112x112, scaled to the crop size and optionally
padded so that the whole face-mesh hull fits inside the crop.

Five points come from the 478-point mediapipe face mesh (the landmarks every
:class:`~clinrelease.face.base.TrackedFace` carries). Where no face analysis is at hand (training
crops from a patient video or from a folder of surrogate images), :class:`MeshDetector` runs
mediapipe's face mesh itself; its models ship inside the mediapipe wheel.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clinrelease.errors import InputError
from clinrelease.face.landmarks import five_points

#: ArcFace's five-point template for a 112x112 crop (insightface ``face_align.arcface_dst``):
#: image-left eye, image-right eye, nose tip, image-left mouth corner, image-right mouth corner
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
#: files in a surrogate folder read as videos (DICOM files often have no suffix)
VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".webm", ".dcm", ""}


@dataclass(frozen=True)
class CropTemplate:
    """Where the five points land in a crop of ``size`` pixels.

    Parameters
    ----------
    size:
        Crop side in pixels (64 tiny, 128 or 256 full).
    padding:
        Extra border as a fraction of the ArcFace crop on each side; 0 is ArcFace's tight crop,
        0.15 leaves room for forehead and jaw so the face hull fits.
    """

    size: int = 128
    padding: float = 0.0

    @property
    def points(self) -> np.ndarray:
        """The five template points in crop pixels, ``float32`` ``(5, 2)``."""
        unit = ARCFACE_TEMPLATE_112 / 112.0 - 0.5
        return ((unit / (1.0 + 2.0 * self.padding) + 0.5) * self.size).astype(np.float32)

    def to_dict(self) -> dict[str, float | int]:
        return {"size": int(self.size), "padding": float(self.padding)}


@dataclass
class FaceCrop:
    """One aligned face: the crop, its face-hull mask, and the transform that made it."""

    image: np.ndarray  # (S, S, 3) uint8 RGB
    mask: np.ndarray  # (S, S) uint8, 255 inside the face-mesh hull
    matrix: np.ndarray  # (2, 3) float32, frame pixels -> crop pixels
    frame_index: int = 0




def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform mapping ``src`` points onto ``dst`` (Umeyama, 1991).

    Returns
    -------
    numpy.ndarray
        ``float32`` ``(2, 3)`` matrix for :func:`cv2.warpAffine`.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    cs, cd = src - mu_s, dst - mu_d
    cov = cd.T @ cs / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # no reflections
        d[-1] = -1
    rot = u @ np.diag(d) @ vt
    var_s = (cs**2).sum() / len(src)
    scale = (sig * d).sum() / var_s if var_s > 0 else 1.0
    shift = mu_d - scale * rot @ mu_s
    return np.hstack([scale * rot, shift[:, None]]).astype(np.float32)


def hull_mask(points: np.ndarray, size: int) -> np.ndarray:
    """A filled convex hull of ``points`` (crop pixels) as a ``uint8`` mask of ``size`` x ``size``."""
    import cv2

    mask = np.zeros((size, size), dtype=np.uint8)
    hull = cv2.convexHull(np.round(points).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 255)
    return mask


def align_face(frame: np.ndarray, landmarks: np.ndarray, template: CropTemplate, frame_index: int = 0) -> FaceCrop:
    """Cut the aligned crop and its hull mask for a face with mesh ``landmarks`` out of ``frame``."""
    import cv2

    matrix = similarity_transform(five_points(landmarks), template.points)
    image = cv2.warpAffine(
        frame, matrix, (template.size, template.size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    lm = np.asarray(landmarks, dtype=np.float32)[:, :2]
    crop_points = lm @ matrix[:, :2].T + matrix[:, 2]
    return FaceCrop(image=image, mask=hull_mask(crop_points, template.size), matrix=matrix, frame_index=frame_index)


class MeshDetector:
    """mediapipe face mesh (legacy ``solutions`` API) returning pixel landmarks per face.

    Parameters
    ----------
    max_faces:
        Faces per image to return, largest first.
    static_images:
        True for unrelated images (a folder of photos), False to track through a video.
    """

    def __init__(self, max_faces: int = 1, static_images: bool = True, min_confidence: float = 0.5) -> None:
        import mediapipe as mp

        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=static_images,
            max_num_faces=max_faces,
            refine_landmarks=True,
            min_detection_confidence=min_confidence,
        )

    def __call__(self, frame: np.ndarray) -> list[np.ndarray]:
        """Landmarks ``float32`` ``(478, 2)`` in pixels for each face in an RGB frame, largest first."""
        result = self._mesh.process(np.ascontiguousarray(frame))
        if not result.multi_face_landmarks:
            return []
        h, w = frame.shape[:2]
        faces = [
            np.array([(p.x * w, p.y * h) for p in face.landmark], dtype=np.float32)
            for face in result.multi_face_landmarks
        ]
        return sorted(faces, key=lambda lm: -float(np.ptp(lm[:, 0]) * np.ptp(lm[:, 1])))

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> MeshDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_image(path: Path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError("not a readable image", path)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _sampled_frames(path: Path, every: int, limit: int) -> Iterator[tuple[int, np.ndarray]]:
    from clinrelease.dicom.video import open_video

    taken = 0
    for index, frame in enumerate(open_video(path).frames()):
        if index % every:
            continue
        yield index, frame
        taken += 1
        if taken >= limit:
            return


def crops_from_video(
    path: str | Path, template: CropTemplate, max_crops: int = 500, every: int = 1
) -> list[FaceCrop]:
    """Aligned crops of the largest face in every ``every``-th frame of a video (DICOM or container).

    Frames without a detected face are skipped; at most ``max_crops`` crops are returned.
    """
    path = Path(path)
    crops: list[FaceCrop] = []
    # video mode tracks the face between frames, which is faster and steadier than per-image detection
    with MeshDetector(max_faces=1, static_images=every > 5) as detect:
        for index, frame in _sampled_frames(path, max(1, every), max_crops):
            faces = detect(frame)
            if faces:
                crops.append(align_face(frame, faces[0], template, index))
    return crops


def crops_from_images(paths: Iterable[str | Path], template: CropTemplate) -> list[FaceCrop]:
    """Aligned crops of the largest face of each image; images without a face are skipped."""
    crops: list[FaceCrop] = []
    with MeshDetector(max_faces=1, static_images=True) as detect:
        for index, path in enumerate(paths):
            frame = _read_image(Path(path))
            faces = detect(frame)
            if faces:
                crops.append(align_face(frame, faces[0], template, index))
    return crops


def crops_from_analysis(
    frames: Iterable[np.ndarray], tracked: dict[int, np.ndarray], template: CropTemplate, max_crops: int = 500
) -> list[FaceCrop]:
    """Aligned crops for one track of a face analysis.

    Parameters
    ----------
    frames:
        The video's frames in order (e.g. ``open_video(path).frames()``).
    tracked:
        Landmarks by frame index, e.g. ``{i: f.landmarks for i, f in analysis.patient.faces.items()}``.
    """
    crops: list[FaceCrop] = []
    for index, frame in enumerate(frames):
        landmarks = tracked.get(index)
        if landmarks is not None:
            crops.append(align_face(frame, landmarks, template, index))
            if len(crops) >= max_crops:
                break
    return crops


def crops_from_source(
    source: str | Path, template: CropTemplate, max_crops: int = 500, every: int = 1
) -> list[FaceCrop]:
    """Aligned face crops from a video file, an image file, or a folder of images and videos.

    Raises
    ------
    InputError
        When the source does not exist or holds no detectable face.
    """
    source = Path(source)
    if not source.exists():
        raise InputError("no such file or folder", source)
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith("."))
        images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        crops = crops_from_images(images, template)
        for video in (p for p in files if p.suffix.lower() in VIDEO_SUFFIXES):
            if len(crops) >= max_crops:
                break
            crops.extend(crops_from_video(video, template, max_crops - len(crops), every))
    elif source.suffix.lower() in IMAGE_SUFFIXES:
        crops = crops_from_images([source], template)
    else:
        crops = crops_from_video(source, template, max_crops, every)
    if not crops:
        raise InputError("no face was found (mediapipe face mesh) in any image or frame", source)
    return crops[:max_crops]


def surrogate_crops(surrogate: str | Path, template: CropTemplate, max_crops: int = 500, every: int = 1) -> list[FaceCrop]:
    """Aligned crops of a surrogate given as a path (image, video, folder) or a donor id of the default pool.

    A donor id (e.g. ``astronaut``, ``insightface-t1#2``) is looked up in
    :func:`clinrelease.face.surrogates.default_pool`, whose donors carry their mesh landmarks.

    Raises
    ------
    InputError
        When ``surrogate`` is neither an existing path nor a donor id, or holds no face.
    """
    path = Path(surrogate)
    if path.exists():
        return crops_from_source(path, template, max_crops, every)
    from clinrelease.face.surrogates import default_pool

    pool = default_pool()
    for donor in pool.donors:
        if donor.donor_id == str(surrogate):
            return [align_face(donor.image, donor.landmarks, template)]
    known = ", ".join(d.donor_id for d in pool.donors)
    raise InputError(f"neither an existing file or folder nor a donor id of the default pool ({known})", path)


def crop_from_texture(texture: np.ndarray, landmarks: np.ndarray, template: CropTemplate) -> FaceCrop:
    """The aligned crop of a key-chosen surrogate (``Surrogate.texture`` with ``Surrogate.landmarks``)."""
    return align_face(np.ascontiguousarray(texture), landmarks, template)


def keyed_surrogate(key: bytes | str, pseudonym: str, k: int = 3) -> tuple[np.ndarray, np.ndarray, str]:
    """The key-chosen composite surrogate of one patient from the default donor pool.

    Returns
    -------
    tuple
        ``(texture RGB uint8, landmarks (478, 2), digest)`` of
        :func:`clinrelease.face.surrogates.choose_surrogate` for this key and pseudonym.
    """
    from clinrelease.face.surrogates import choose_surrogate, default_pool

    key_bytes = bytes.fromhex(key) if isinstance(key, str) else bytes(key)
    chosen = choose_surrogate(default_pool(), key_bytes, pseudonym, k)
    return chosen.texture, chosen.landmarks, chosen.digest

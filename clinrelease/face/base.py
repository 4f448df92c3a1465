"""Plain data shared by the face stages (detect -> track -> anonymize) and verification.

Coordinates are pixels of the full frame, x to the right, y down. Boxes are ``(x0, y0, x1, y1)``.
Dense landmarks are mediapipe's 478-point face mesh in pixel coordinates, ``float32`` of shape
``(478, 2)`` (a z column, when present, is dropped).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

PATIENT = "patient"
BYSTANDER = "bystander"


@dataclass
class TrackedFace:
    """One face of one track in one frame."""

    track_id: int
    frame_index: int
    box: np.ndarray  # (4,) float32 x0, y0, x1, y1
    score: float = 1.0
    landmarks: np.ndarray | None = None  # (478, 2) float32, smoothed over time
    #: True when the frame had no detection and the box/landmarks were interpolated
    interpolated: bool = False
    #: outlines ``(m, 2)`` float32 of things in front of the face (hands), left as they are
    occluders: list[np.ndarray] = field(default_factory=list)


@dataclass
class FaceTrack:
    """Every appearance of one face across a video."""

    track_id: int
    role: str = BYSTANDER  # PATIENT or BYSTANDER
    faces: dict[int, TrackedFace] = field(default_factory=dict)  # by frame index

    @property
    def frame_indices(self) -> list[int]:
        return sorted(self.faces)

    @property
    def median_size(self) -> float:
        if not self.faces:
            return 0.0
        sizes = [float(max(f.box[2] - f.box[0], f.box[3] - f.box[1])) for f in self.faces.values()]
        return float(np.median(sizes))


@dataclass
class FaceAnalysis:
    """Result of the analysis pass over a video: all face tracks and which one is the patient."""

    frames: int
    rows: int
    columns: int
    tracks: list[FaceTrack] = field(default_factory=list)
    #: frame indices where a detector saw a face that could not be assigned to a track
    unassigned_frames: list[int] = field(default_factory=list)
    #: outlines ``(m, 2)`` (frame pixels) of the hands found in each frame, where the analysis
    #: searched for hands (:mod:`clinrelease.face.occlusion`)
    hands: dict[int, list[np.ndarray]] = field(default_factory=dict)

    def faces_in_frame(self, index: int) -> list[TrackedFace]:
        return [t.faces[index] for t in self.tracks if index in t.faces]

    @property
    def patient(self) -> FaceTrack | None:
        return next((t for t in self.tracks if t.role == PATIENT), None)

    def role_of(self, track_id: int) -> str:
        return next(t.role for t in self.tracks if t.track_id == track_id)


@runtime_checkable
class Anonymizer(Protocol):
    """A way to make the faces of a video unrecognizable: swap, blur, pixelate, mask, learned swaps.

    Registered by name in :mod:`clinrelease.face.registry`; third parties add theirs through the
    ``clinrelease.anonymizers`` entry-point group (the entry point loads a factory taking keyword
    parameters from the profile and returning an object of this shape).
    """

    name: str

    def prepare(self, analysis: FaceAnalysis, track_id: int) -> None:
        """Get ready to anonymize one track (fit a neutral shape, precompute warp maps, ...)."""

    def anonymize_frame(self, frame: np.ndarray, faces: list[TrackedFace]) -> np.ndarray:
        """Return ``frame`` (RGB uint8) with each of ``faces`` anonymized; may modify in place."""


def iter_pairs(a: Iterable[np.ndarray], b: Iterable[np.ndarray]) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Walk two frame streams in step, yielding ``(index, frame_a, frame_b)``."""
    for index, (fa, fb) in enumerate(zip(a, b, strict=True)):
        yield index, fa, fb

"""Per face, per frame: how a swapped track's face is anonymized, by its size and how far it is turned.

The swap carries a new identity where the face mesh fits a face of some size. Two kinds of frames
fall outside that (issue 16):

* **Small faces** (under :data:`~clinrelease.face.pipeline.SWAP_MIN_FACE_PX`): rendered straight at
  24 px the swap still matched the patient for dlib in 15-32% of frames. The profile's
  ``faces.small_face`` chooses ``upscaled_swap`` (the face's surroundings upsampled so the face is
  :data:`UPSCALE_PX` wide, as the recognizers see it, the swap rendered there with a larger shape
  offset and reach, and the result downsampled back where it changed), ``textured_blur``
  (:mod:`clinrelease.face.textured_blur`: no identity at all, head position and outline kept) or
  ``swap`` (as larger faces).
* **Turned away** (profile view, back of the head): no mesh in that frame, or the nose tip further
  from the eyes' midpoint than :data:`PROFILE_YAW` eye spans. ``faces.profile_view`` chooses
  ``blur`` (the textured blur), ``swap_anyway`` (the swap where a mesh exists; the textured blur
  where none does, as there is nothing to swap on) or ``quarantine`` (the frames are blurred and
  the item is quarantined, naming them).

:func:`plan_methods` decides every face's method from the analysis alone, before any pixel is
changed, so the item's record and the QA report list the method per face and frame;
:class:`SizeAwareAnonymizer` applies the plan around the profile's swap.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from clinrelease.errors import ConfigError
from clinrelease.face.base import PATIENT, Anonymizer, FaceAnalysis, TrackedFace

SWAP = "swap"
UPSCALED_SWAP = "upscaled_swap"
TEXTURED_BLUR = "textured_blur"
#: what ``faces.small_face`` may name
SMALL_FACE_METHODS = (UPSCALED_SWAP, TEXTURED_BLUR, SWAP)
#: what ``faces.profile_view`` may name
PROFILE_VIEW_TREATMENTS = ("blur", "swap_anyway", "quarantine")
#: nose-tip offset from the eyes' midpoint (eye spans, :func:`~clinrelease.face.surrogates.frontal_offset`)
#: past which a face counts as turned away: about 0.2 on a three-quarter view the swap handles, the
#: nose tip reaches the outer eye corner (0.5) and beyond in a profile, where the mesh folds
PROFILE_YAW = 0.5
#: face width (pixels) the upscaled swap renders at: dlib aligns faces to 150 px, SFace to 112
UPSCALE_PX = 128.0
#: the upscaled swap's extra shape offset for small faces (the swap's ``small_face_boost``, its
#: default) and its reach past the outline (the swap's ``reach`` is 0.05): at that size the hair
#: line, brow band and jaw outline are most of what a recognizer sees. Measured on again.mkv and
#: book.mkv shrunk to a 24 px face, 15 frames, 3 keys (dlib / SFace frames matched of 45, head AP):
#: plain swap again 5 / 3, book 0 / 0 (head 0.99, 0.89); upscaled, boost 0.5 and reach 0.05: again
#: 4 / 5; boost 1.5, reach 0.05: again 8 / 1 (book head 0.69); boost 0.5, reach 0.25: 0 / 0 on both
#: (head 0.98, 0.65). The reach is what carries the new identity; a larger boost only costs keypoints
UPSCALED_BOOST = 0.5
UPSCALED_REACH = 0.25


def face_size(face: TrackedFace) -> float:
    """The larger side of the face's box (pixels)."""
    return float(max(face.box[2] - face.box[0], face.box[3] - face.box[1]))


def turned_away(face: TrackedFace, limit: float = PROFILE_YAW) -> bool:
    """Whether the face is beyond the mesh's reach: no mesh, or the nose tip past ``limit`` eye spans."""
    from clinrelease.face.surrogates import frontal_offset

    return face.landmarks is None or abs(frontal_offset(face.landmarks)) > limit


@dataclass
class FaceMethods:
    """Every face's method, by track and frame (faces not listed are swapped as usual), and the
    profile settings that chose them."""

    small_face: str
    profile_view: str
    min_px: float
    by_track: dict[int, dict[int, str]] = field(default_factory=dict)
    #: per track, the frames the face was turned away in (whatever was done there)
    turned: dict[int, list[int]] = field(default_factory=dict)

    def method(self, face: TrackedFace) -> str:
        return self.by_track.get(face.track_id, {}).get(face.frame_index, SWAP)

    def frames_by_method(self) -> dict[str, dict[int, list[int]]]:
        """method -> track -> frames, for every method other than the plain swap."""
        out: dict[str, dict[int, list[int]]] = {}
        for track, frames in self.by_track.items():
            for frame, method in sorted(frames.items()):
                if method != SWAP:
                    out.setdefault(method, {}).setdefault(track, []).append(frame)
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "small_face": self.small_face,
            "profile_view": self.profile_view,
            "min_px": self.min_px,
            "frames_by_method": {m: {str(t): f for t, f in tracks.items()} for m, tracks in self.frames_by_method().items()},
            "turned_frames_by_track": {str(t): f for t, f in self.turned.items()},
        }


def plan_methods(
    analysis: FaceAnalysis,
    roles: tuple[str, ...] = (PATIENT,),
    *,
    small_face: str = UPSCALED_SWAP,
    profile_view: str = "blur",
    min_px: float | None = None,
    yaw_limit: float = PROFILE_YAW,
) -> FaceMethods:
    """Each face's method on the tracks of ``roles`` (those the swap anonymizes); see the module."""
    from clinrelease.face.pipeline import SWAP_MIN_FACE_PX

    if small_face not in SMALL_FACE_METHODS:
        raise ConfigError(f"faces.small_face must be one of {', '.join(SMALL_FACE_METHODS)}, got {small_face!r}")
    if profile_view not in PROFILE_VIEW_TREATMENTS:
        raise ConfigError(f"faces.profile_view must be one of {', '.join(PROFILE_VIEW_TREATMENTS)}, got {profile_view!r}")
    min_px = SWAP_MIN_FACE_PX if min_px is None else float(min_px)
    plan = FaceMethods(small_face, profile_view, min_px)
    for track in analysis.tracks:
        if track.role not in roles:
            continue
        methods: dict[int, str] = {}
        for index, face in sorted(track.faces.items()):
            if turned_away(face, yaw_limit):
                plan.turned.setdefault(track.track_id, []).append(index)
                methods[index] = SWAP if profile_view == "swap_anyway" and face.landmarks is not None else TEXTURED_BLUR
            elif face_size(face) < min_px:
                methods[index] = small_face
            else:
                methods[index] = SWAP
        plan.by_track[track.track_id] = methods
    return plan


def upscaled_swap(frame: np.ndarray, face: TrackedFace, swap: Anonymizer, width: float = UPSCALE_PX) -> None:
    """Render ``swap`` on ``face`` with the face upsampled to ``width`` pixels; ``frame`` is changed in
    place, only where the swap changed the upsampled crop."""
    import cv2

    size = face_size(face)
    factor = max(1.0, width / max(size, 1.0))
    rows, columns = frame.shape[:2]
    cx, cy = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
    half = 1.6 * size  # the swap's warped ring reaches 1.6 times the outline, past the box
    x0, y0 = int(max(0, np.floor(cx - half))), int(max(0, np.floor(cy - half)))
    x1, y1 = int(min(columns, np.ceil(cx + half))), int(min(rows, np.ceil(cy + half)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    crop = frame[y0:y1, x0:x1]
    up_size = (int(round((x1 - x0) * factor)), int(round((y1 - y0) * factor)))
    up = cv2.resize(crop, up_size, interpolation=cv2.INTER_CUBIC)
    before = up.copy()
    origin = np.array([x0, y0], np.float32)
    scaled = TrackedFace(
        face.track_id,
        face.frame_index,
        ((np.asarray(face.box, np.float32) - np.tile(origin, 2)) * factor).astype(np.float32),
        face.score,
        None if face.landmarks is None else ((face.landmarks - origin) * factor).astype(np.float32),
        face.interpolated,
        [((np.asarray(o, np.float32) - origin) * factor).astype(np.float32) for o in face.occluders],
    )
    swap.anonymize_frame(up, [scaled])
    changed = (up != before).any(axis=2).astype(np.float32)
    down = cv2.resize(up, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA).astype(np.float32)
    alpha = cv2.resize(changed, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)[..., None]
    crop[...] = np.clip(alpha * down + (1.0 - alpha) * crop + 0.5, 0, 255).astype(np.uint8)


@dataclass
class SizeAwareAnonymizer:
    """The profile's swap with :class:`FaceMethods` applied: small faces upscaled (or blurred),
    turned-away faces by the profile's choice, the rest swapped as usual."""

    swap: Anonymizer
    methods: FaceMethods
    small_swap: Anonymizer | None = None
    blur: Anonymizer | None = None

    def __post_init__(self) -> None:
        from clinrelease.face.textured_blur import TexturedBlurAnonymizer

        self.name = self.swap.name
        self.blur = self.blur or TexturedBlurAnonymizer()
        if self.small_swap is None:
            # the same surrogate (key, patient, counter, pool), a larger shape offset and reach
            changes = {"small_face_boost": UPSCALED_BOOST, "reach": UPSCALED_REACH, "_tracks": {}}
            fields = {f.name for f in dataclasses.fields(self.swap)} if dataclasses.is_dataclass(self.swap) else set()
            self.small_swap = dataclasses.replace(self.swap, **changes) if set(changes) <= fields else self.swap

    def prepare(self, analysis: FaceAnalysis, track_id: int) -> None:
        self.swap.prepare(analysis, track_id)
        if self.small_swap is not self.swap and UPSCALED_SWAP in self.methods.by_track.get(track_id, {}).values():
            self.small_swap.prepare(analysis, track_id)

    def anonymize_frame(self, frame: np.ndarray, faces: list[TrackedFace]) -> np.ndarray:
        groups: dict[str, list[TrackedFace]] = {}
        for face in faces:
            groups.setdefault(self.methods.method(face), []).append(face)
        if groups.get(SWAP):
            frame = self.swap.anonymize_frame(frame, groups[SWAP])
        for face in groups.get(UPSCALED_SWAP, []):
            upscaled_swap(frame, face, self.small_swap)
        if groups.get(TEXTURED_BLUR):
            frame = self.blur.anonymize_frame(frame, groups[TEXTURED_BLUR])
        return frame


def size_aware(anonymizer: Anonymizer, methods: FaceMethods | None) -> Anonymizer:
    """``anonymizer`` with ``methods`` applied when it is the built-in swap; as it is otherwise (the
    baselines and plug-ins treat every face alike)."""
    from clinrelease.face.swap import SwapAnonymizer

    return SizeAwareAnonymizer(anonymizer, methods) if methods is not None and isinstance(anonymizer, SwapAnonymizer) else anonymizer

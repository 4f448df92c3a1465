"""Per face, per frame: how a swapped track's face is anonymized, by its size and how far it is turned.

The swap carries a new identity where the face mesh fits a face of some size. Two kinds of frames
fall outside that (issue 16):

* **Small faces** (under :data:`SWAP_MIN_FACE_PX`): rendered straight at
  24 px the swap still matched the patient for dlib in 15-32% of frames. The profile's
  ``faces.small_face`` chooses ``upscaled_swap`` (the face's surroundings upsampled so the face is
  :data:`UPSCALE_PX` wide, as the recognizers see it, the swap rendered there with a larger shape
  offset and reach, and the result downsampled back where it changed), ``textured_blur``
  (:mod:`clinrelease.face.textured_blur`: no identity at all, head position and outline kept) or
  ``swap`` (as larger faces). The release checks each upscaled swap against the original as it
  renders it (:class:`SizeAwareAnonymizer`'s guard) and blurs over, per face and frame, a swap the
  recognizers can still take for the patient.
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
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clinrelease.errors import ConfigError
from clinrelease.face.base import PATIENT, Anonymizer, FaceAnalysis, TrackedFace

#: face size (pixels, the larger side of the face box) below which the swap does not reliably carry
#: a new identity, measured on three shared clips shrunk, six keys, ten frames each (issue 16):
#: at 24 px dlib still matched the patient in 15-32% of frames (5-6 keys of 6 failing), at 32 px in
#: 2-5% (2 of 6), from 48 px in 0-2%. Distinct real people shrunk alike match each other under dlib
#: in 12-16% of frame pairs at every size (SFace 4% at 24 px, 0-1% above), so below this size no
#: identity swap can be expected to pass a zero-match limit
SWAP_MIN_FACE_PX = 40.0


def small_faces(analysis: FaceAnalysis, min_px: float = SWAP_MIN_FACE_PX) -> dict[int, list[int]]:
    """Per track, the frames where its face is smaller than ``min_px`` (see :data:`SWAP_MIN_FACE_PX`)."""
    out: dict[int, list[int]] = {}
    for track in analysis.tracks:
        frames = [i for i, f in sorted(track.faces.items()) if max(f.box[2] - f.box[0], f.box[3] - f.box[1]) < min_px]
        if frames:
            out[track.track_id] = frames
    return out


SWAP = "swap"
UPSCALED_SWAP = "upscaled_swap"
TEXTURED_BLUR = "textured_blur"
#: the upscaled swap with a light textured blur over it (see :data:`LIGHT_BLUR`)
BLURRED_SWAP = "blurred_swap"
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
#: (head 0.98, 0.65). The reach is what carries the new identity; a larger boost only costs keypoints.
#: (Measured while the reach drew the donors' hair too; it now brings the surrogate's skin only,
#: :func:`~clinrelease.face.swap.plan_face`, and the guard takes the frames that lost their margin.)
UPSCALED_BOOST = 0.5
UPSCALED_REACH = 0.25
#: the upscaled swap takes the patient's mean colour but not the patient's shading field: at 24 px
#: that field is the eye sockets', brows' and mouth's shadows, what a recognizer sees of the face
#: (eat.mkv at a 24 px face, 15 frames: SFace worst 0.31 -> 0.21 without it, body AP 0.97 -> 0.99)
UPSCALED_LIGHTING = 0.0
#: how far (recognizer units) a rendered small face must stay from each threshold, as rendered and
#: as the encoder will leave it (:func:`encoded_look`), or the guard takes the next, stronger method
GUARD_MARGIN = 0.05
#: the light blur over a swapped small face the recognizers still took for the patient (blur sigma
#: as a fraction of the face radius): the swap has moved the features, the blur takes the fine
#: detail that still says who it is. Measured at a 24 px face, 15 frames (dlib worst, body AP):
#: eat swap 0.51 / 0.97, swap + 0.15 0.65 / 0.94, swap + 0.25 0.62 / 0.91, blur 0.5 alone 0.65 /
#: 0.94; again swap + 0.15 0.61 / 0.92, blur 0.5 alone 0.64 / 0.77 (the blur moves the head points)
LIGHT_BLUR = 0.15
#: plain swaps of faces under this size (pixels) are checked as they are rendered too, as the
#: upscaled ones are: just above :data:`SWAP_MIN_FACE_PX` a swap drawn straight still comes within a
#: recognizer's reach on a few frames (three-people.mp4, a 42 px face: dlib 0.50 in one frame of six)
GUARD_MAX_FACE_PX = 64.0


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
    #: recognizers (name -> recognizer at the profile's threshold) that check each small face as it
    #: is rendered (see :class:`SizeAwareAnonymizer`); empty: no check
    guard: dict[str, Any] = field(default_factory=dict, repr=False)
    #: per track, the frames where the guard found a swap too close to the patient and a stronger
    #: method took over (their method in :attr:`by_track` says which)
    guarded: dict[int, list[int]] = field(default_factory=dict)

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

    def blurred_frames(self, track_id: int) -> frozenset[int]:
        """The track's frames whose face was blurred (alone or over the swap) rather than swapped."""
        return frozenset(f for f, m in self.by_track.get(track_id, {}).items() if m in (TEXTURED_BLUR, BLURRED_SWAP))

    def to_dict(self) -> dict[str, object]:
        return {
            "small_face": self.small_face,
            "profile_view": self.profile_view,
            "min_px": self.min_px,
            "frames_by_method": {m: {str(t): f for t, f in tracks.items()} for m, tracks in self.frames_by_method().items()},
            "turned_frames_by_track": {str(t): f for t, f in self.turned.items()},
            "guard": sorted(self.guard),
            "guarded_frames_by_track": {str(t): sorted(f) for t, f in self.guarded.items()},
        }


def plan_methods(
    analysis: FaceAnalysis,
    roles: tuple[str, ...] = (PATIENT,),
    *,
    small_face: str = UPSCALED_SWAP,
    profile_view: str = "blur",
    min_px: float | None = None,
    yaw_limit: float = PROFILE_YAW,
    guard: Mapping[str, Any] | None = None,
) -> FaceMethods:
    """Each face's method on the tracks of ``roles`` (those the swap anonymizes); see the module.
    ``guard``: recognizers (name -> recognizer) that check each upscaled swap as it is rendered."""
    if small_face not in SMALL_FACE_METHODS:
        raise ConfigError(f"faces.small_face must be one of {', '.join(SMALL_FACE_METHODS)}, got {small_face!r}")
    if profile_view not in PROFILE_VIEW_TREATMENTS:
        raise ConfigError(f"faces.profile_view must be one of {', '.join(PROFILE_VIEW_TREATMENTS)}, got {profile_view!r}")
    min_px = SWAP_MIN_FACE_PX if min_px is None else float(min_px)
    plan = FaceMethods(small_face, profile_view, min_px, guard=dict(guard or {}))
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


def small_face_swap(swap: Anonymizer) -> Anonymizer:
    """What :func:`upscaled_swap` renders with: ``swap``'s surrogate (key, patient, counter, pool)
    with the larger shape offset and reach of :data:`UPSCALED_BOOST` and :data:`UPSCALED_REACH`;
    ``swap`` itself when it has no such settings."""
    changes = {"small_face_boost": UPSCALED_BOOST, "reach": UPSCALED_REACH, "lighting": UPSCALED_LIGHTING, "_tracks": {}}
    fields = {f.name for f in dataclasses.fields(swap)} if dataclasses.is_dataclass(swap) else set()
    return dataclasses.replace(swap, **changes) if set(changes) <= fields else swap


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


def clearance(recognizers: Mapping[str, Any], reference: Any, rendered: np.ndarray, box: Sequence[float] | None = None) -> float:
    """How far (recognizer units) the face in ``rendered`` stays from the nearest recognizer's "same
    person" threshold for the original one (``reference``, a :class:`~clinrelease.verify.reid.
    FaceReference`); negative: a recognizer takes it for the original. Infinite when the original
    shows no face to compare. With the face's ``box``, the face as the encoder will leave it counts
    too (:func:`encoded_look`): the nearer of the two."""
    from clinrelease.face.surrogate_choice import headroom

    out = math.inf
    for view in (rendered,) if box is None else (rendered, encoded_look(rendered, box)):
        for rec in recognizers.values():
            cmp = reference.compare(rec, view)
            if cmp is not None:
                out = min(out, headroom(float(cmp[0]), rec.threshold, rec.higher_is_same))
    return out


#: the softening the released file's encoder leaves on a small face (Gaussian sigma, pixels)
CODEC_SOFTNESS = 0.7


def encoded_look(frame: np.ndarray, box: Sequence[float], sigma: float = CODEC_SOFTNESS) -> np.ndarray:
    """A copy of ``frame`` with the face in ``box`` (and as much again around it) softened as the
    encoder softens it. A swap's new identity at 40-60 px is in its finest detail, which the encoder
    rounds away: rendered 0.22-0.31 from again.mkv's patient at 48 px, SFace put the released face at
    0.26-0.36 (0.36-0.45 with this softening), so a swap that cleared the guard's margin as rendered
    was the patient in the released file."""
    import cv2

    out = frame.copy()
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    a, b = int(max(0, np.floor(x0 - w))), int(max(0, np.floor(y0 - h)))
    c, d = int(min(frame.shape[1], np.ceil(x1 + w))), int(min(frame.shape[0], np.ceil(y1 + h)))
    if c > a and d > b:
        out[b:d, a:c] = cv2.GaussianBlur(frame[b:d, a:c], (0, 0), sigma)
    return out


def first_clear(
    recognizers: Mapping[str, Any],
    reference: Any,
    renderings: Iterable[tuple[str, np.ndarray]],
    margin: float = GUARD_MARGIN,
    box: Sequence[float] | None = None,
) -> tuple[str, np.ndarray, bool]:
    """(method, frame, clear): the first of ``renderings`` (method, frame; rendered lazily, weakest
    first) that stays ``margin`` clear of every recognizer's threshold; where none does, the one that
    stays farthest from it (the last of a chain is not always the safest: at 20-50 px a light blur
    can bring a swap nearer the original for dlib), with ``clear`` False. ``box``: the face's, to
    judge each rendering as encoded too (:func:`clearance`)."""
    best: tuple[float, str, np.ndarray] | None = None
    for method, out in renderings:
        value = clearance(recognizers, reference, out, box)
        if value >= margin:
            return method, out, True
        if best is None or value > best[0]:
            best = (value, method, out)
    if best is None:
        raise ValueError("first_clear needs at least one rendering")
    return best[1], best[2], False


@dataclass
class SizeAwareAnonymizer:
    """The profile's swap with :class:`FaceMethods` applied: small faces upscaled (or blurred),
    turned-away faces by the profile's choice, the rest swapped as usual.

    With ``guard`` (and recognizers in ``methods.guard``), each upscaled swap, and each plain swap of a
    face under :data:`GUARD_MAX_FACE_PX`, is compared with the original as it is rendered (a plain
    swap too close is replaced by the upscaled one, and that is checked in turn): below ~40 px recognizers see little more than a face's layout and
    tone, and a surrogate that stays clear of the patient on most frames can come within reach on
    a few (eat.mkv at 24 px: dlib 0.51-0.63 over 15 frames under every key tried). A face too close
    gets the swap with a light textured blur over it (:data:`LIGHT_BLUR`), and if that is still too
    close, the textured blur of the original face (no identity at all); each such frame is noted in
    ``methods.guarded`` and its method in ``methods.by_track``, so the record lists it. The
    screening of surrogates runs without the guard: it compares the swaps themselves.
    """

    swap: Anonymizer
    methods: FaceMethods
    small_swap: Anonymizer | None = None
    blur: Anonymizer | None = None
    guard: bool = False
    _analysis: FaceAnalysis | None = field(default=None, repr=False)
    _small_prepared: set[int] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        from clinrelease.face.textured_blur import TexturedBlurAnonymizer

        self.name = self.swap.name
        self.blur = self.blur or TexturedBlurAnonymizer()
        if self.small_swap is None:
            self.small_swap = small_face_swap(self.swap)

    def prepare(self, analysis: FaceAnalysis, track_id: int) -> None:
        self.swap.prepare(analysis, track_id)
        self._analysis = analysis
        if UPSCALED_SWAP in self.methods.by_track.get(track_id, {}).values():
            self._prepare_small(track_id)

    def anonymize_frame(self, frame: np.ndarray, faces: list[TrackedFace]) -> np.ndarray:
        groups: dict[str, list[TrackedFace]] = {}
        for face in faces:
            groups.setdefault(self.methods.method(face), []).append(face)
        guarded = self.guard and bool(self.methods.guard)
        checked = [f for f in groups.get(SWAP, []) if guarded and face_size(f) < GUARD_MAX_FACE_PX]
        original = frame.copy() if guarded and (groups.get(UPSCALED_SWAP) or checked) else None
        plain = [f for f in groups.get(SWAP, []) if all(f is not c for c in checked)]
        if plain:
            frame = self.swap.anonymize_frame(frame, plain)
        for face in checked:
            self._guarded(frame, original, face, plain=True)
        for face in groups.get(UPSCALED_SWAP, []):
            if original is None:
                upscaled_swap(frame, face, self.small_swap)
            else:
                self._guarded(frame, original, face, plain=False)
        if groups.get(TEXTURED_BLUR):
            frame = self.blur.anonymize_frame(frame, groups[TEXTURED_BLUR])
        return frame

    def _prepare_small(self, track_id: int) -> None:
        if self.small_swap is not self.swap and track_id not in self._small_prepared:
            self.small_swap.prepare(self._analysis, track_id)
            self._small_prepared.add(track_id)

    def _guarded(self, frame: np.ndarray, original: np.ndarray, face: TrackedFace, plain: bool) -> None:
        """The face's swap (``plain``: as drawn, else upscaled), or the next stronger method where the
        recognizers come too close (:func:`first_clear`); frames that needed more, or where nothing
        cleared the margin, are recorded."""
        from clinrelease.verify.reid import FaceReference

        planned = SWAP if plain else UPSCALED_SWAP
        method, out, clear = first_clear(self.methods.guard, FaceReference(original, face), self._renderings(frame, face, plain), box=face.box)
        if method != planned or not clear:
            self.methods.by_track.setdefault(face.track_id, {})[face.frame_index] = method
            self.methods.guarded.setdefault(face.track_id, []).append(face.frame_index)
        frame[...] = out

    def _renderings(self, frame: np.ndarray, face: TrackedFace, plain: bool) -> Iterator[tuple[str, np.ndarray]]:
        from clinrelease.face.textured_blur import TexturedBlurAnonymizer

        if plain:
            yield SWAP, self.swap.anonymize_frame(frame.copy(), [face])
        self._prepare_small(face.track_id)
        swapped = frame.copy()
        upscaled_swap(swapped, face, self.small_swap)
        yield UPSCALED_SWAP, swapped
        yield BLURRED_SWAP, TexturedBlurAnonymizer(strength=LIGHT_BLUR).anonymize_frame(swapped.copy(), [face])
        yield TEXTURED_BLUR, self.blur.anonymize_frame(frame.copy(), [face])


def size_aware(anonymizer: Anonymizer, methods: FaceMethods | None, guard: bool = False) -> Anonymizer:
    """``anonymizer`` with ``methods`` applied when it is the built-in swap; as it is otherwise (the
    baselines and plug-ins treat every face alike). ``guard``: check small faces as they are
    rendered (:class:`SizeAwareAnonymizer`)."""
    from clinrelease.face.swap import SwapAnonymizer

    return SizeAwareAnonymizer(anonymizer, methods, guard=guard) if methods is not None and isinstance(anonymizer, SwapAnonymizer) else anonymizer

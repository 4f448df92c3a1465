"""Bystanders' faces, checked as they are rendered.

The profile's bystander treatment (``anonymizer.bystander``, the textured blur by default) takes a
face's identity away by removing its detail. On a face of full size the layout and tone that are
left can still be enough for a recognizer: two seated clips side by side (bench/hard_video.py's
``pair`` variant), the bystander's blurred face stayed within SFace's threshold of the original
in some frames at every blur strength tried. :class:`GuardedBystanders` compares each bystander
face with the original as it renders it, as :class:`~clinrelease.face.small.SizeAwareAnonymizer`
does for swapped faces, and takes the first of a chain that no recognizer can take for the bystander
(:func:`~clinrelease.face.small.first_clear`): the treatment; a swap with a surrogate of its own
(the swap's ``"<pseudonym>/bystander/<track>"``), drawn upsampled
(:func:`~clinrelease.face.small.upscaled_swap`) where the face is under the plan's ``min_px`` (drawn
straight onto a face of 17-24 px it kept the recognizers within reach in most frames), and tried
upsampled too where the face is near that size; a light textured blur over the swap; the
treatment over the swap. Where none is clear, the one farthest from the bystander is drawn and
verification decides. Once a track has needed the swap it keeps it for the rest of the video, so a
face does not flicker between a blur and a person. Every such frame is in the plan's ``by_track``
and ``guarded`` lists, so the record and the report name it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from clinrelease.face.base import Anonymizer, FaceAnalysis, TrackedFace
from clinrelease.face.small import (
    BLURRED_SWAP,
    GUARD_MAX_FACE_PX,
    LIGHT_BLUR,
    TEXTURED_BLUR,
    FaceMethods,
    face_size,
    first_clear,
    small_face_swap,
    upscaled_swap,
)

__all__ = ["BYSTANDER_SWAP", "GuardedBystanders", "guarded_bystanders"]

#: a bystander's face swapped because the profile's treatment left it recognizable
BYSTANDER_SWAP = "bystander_swap"
#: the profile's treatment, as a candidate of :meth:`GuardedBystanders._renderings`
_TREATMENT = "treatment"


@dataclass
class GuardedBystanders:
    """``treatment`` for every bystander face, and ``swap`` for those the recognizers in
    ``methods.guard`` can still take for themselves (see the module)."""

    treatment: Anonymizer
    swap: Anonymizer
    methods: FaceMethods
    _analysis: FaceAnalysis | None = field(default=None, repr=False)
    _swapped: set[int] = field(default_factory=set, repr=False)
    _prepared: set[tuple[bool, int]] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        self.name = self.treatment.name
        self.small_swap = small_face_swap(self.swap)

    def prepare(self, analysis: FaceAnalysis, track_id: int) -> None:
        self.treatment.prepare(analysis, track_id)
        self._analysis = analysis

    def anonymize_frame(self, frame: np.ndarray, faces: list[TrackedFace]) -> np.ndarray:
        original = frame.copy()
        for face in faces:
            frame = self._render(frame, original, face)
        return frame

    def _render(self, frame: np.ndarray, original: np.ndarray, face: TrackedFace) -> np.ndarray:
        from clinrelease.verify.reid import FaceReference

        first = face.track_id not in self._swapped
        # without a mesh the swap has nothing to draw on (it would fall back to a flat blur)
        if face.landmarks is None:
            return self.treatment.anonymize_frame(frame, [face])
        # a small face is judged as the encoder will leave it too (see clinrelease.face.small.encoded_look)
        box = face.box if face_size(face) < GUARD_MAX_FACE_PX else None
        method, out, clear = first_clear(self.methods.guard, FaceReference(original, face), self._renderings(frame, face, first), box=box)
        if method == _TREATMENT and clear:
            return out
        self._swapped.add(face.track_id)
        method = TEXTURED_BLUR if method == _TREATMENT else method
        self.methods.by_track.setdefault(face.track_id, {})[face.frame_index] = method
        self.methods.guarded.setdefault(face.track_id, []).append(face.frame_index)
        return out

    def _renderings(self, frame: np.ndarray, face: TrackedFace, first: bool) -> Iterator[tuple[str, np.ndarray]]:
        """Weakest first: the treatment (until the track has needed more), the bystander's swap (drawn
        upsampled where the face is small), the upsampled swap where the face is near the small size,
        a light blur over the swap, the treatment over the swap."""
        from clinrelease.face.textured_blur import TexturedBlurAnonymizer

        if first:
            yield _TREATMENT, self.treatment.anonymize_frame(frame.copy(), [face])
        small = face_size(face) < self.methods.min_px
        swapped = self._swapped_face(frame, face, small)
        yield BYSTANDER_SWAP, swapped
        if not small and face_size(face) < GUARD_MAX_FACE_PX:
            swapped = self._swapped_face(frame, face, True)
            yield BYSTANDER_SWAP, swapped
        yield BLURRED_SWAP, TexturedBlurAnonymizer(strength=LIGHT_BLUR).anonymize_frame(swapped.copy(), [face])
        yield TEXTURED_BLUR, self.treatment.anonymize_frame(swapped.copy(), [face])

    def _swapped_face(self, frame: np.ndarray, face: TrackedFace, upscaled: bool) -> np.ndarray:
        """A copy of ``frame`` with the bystander's face swapped, drawn upsampled or as it is."""
        swap = self.small_swap if upscaled else self.swap
        if (upscaled, face.track_id) not in self._prepared:
            swap.prepare(self._analysis, face.track_id)
            self._prepared.add((upscaled, face.track_id))
        out = frame.copy()
        if upscaled:
            upscaled_swap(out, face, swap)
            return out
        return swap.anonymize_frame(out, [face])


def guarded_bystanders(bystander: Anonymizer, patient: Anonymizer, methods: FaceMethods | None) -> Anonymizer:
    """``bystander`` guarded by ``methods.guard`` with ``patient``'s swap to escalate to, where the
    patient's anonymizer is the built-in swap and the bystanders' is not; as it is otherwise."""
    from clinrelease.face.swap import SwapAnonymizer

    if methods is None or not methods.guard or isinstance(bystander, SwapAnonymizer) or not isinstance(patient, SwapAnonymizer):
        return bystander
    return GuardedBystanders(bystander, patient, methods)

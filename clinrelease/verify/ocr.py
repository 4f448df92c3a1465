"""Burned-in text: find it and read it (rapidocr's PP-OCRv4 ONNX models, shipped in the wheel).

This module only reads frames. Two uses with different needs:

* **Cleaning** (:func:`clinrelease.clean.clean_video_text`, which paints the frames) needs every
  region the text *detector* finds, whatever it says (:func:`text_regions`): a detected region is
  removed even when the recognizer cannot read it. Recognition runs on the detected crops just to
  report what was blanked, and a region seen at the same place on the previous scan keeps its
  reading (burned-in annotations are static), so a static overlay is read once.
* **Verification** (:func:`scan_text`, :func:`find_text`) detects and reads: the verdict counts
  legible text (see :func:`clinrelease.verify.decision.remaining_text`).

The detector sees the frame at its own resolution, shrunk only when its longest side exceeds
:data:`DET_MAX_SIDE`. RapidOCR's default upscales every frame to a shortest side of 736 (a 640x480
frame becomes 992x736, 2.4x the pixels) for the same findings on planted captions down to 7-pixel
letters (measured on the shared clips), at about half the cost.

Videos are scanned on every Nth frame plus the last one. Faces are never painted (issue 16): the
detector takes eyes, brows and glasses for text lines (on the shared walking clip it boxed a bald
man's face in the last frames, and once one region across two faces), so a region that lies on a
tracked face (:data:`ON_FACE_FRACTION`, :func:`mark_on_face`) is not burned-in annotation. Legible
text left on a face still fails verification (:func:`scan_text` reads the released frames), so this
fails closed.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from typing import Any

import numpy as np

from clinrelease.errors import ConfigError

#: longest side (pixels) of the text detector's input
DET_MAX_SIDE = 960
#: frames whose longest side is shorter are upscaled to it first: at native size the detector misses
#: the 8-pixel captions of a 176x144 clip entirely (the burned-in name and MRN survived a release)
DET_MIN_SIDE = 640
#: the detector's score below which a box is dropped: on the released frames as judged (RapidOCR's
#: own default) and, lower, for cleaning, which must find what the judging scan can find once the
#: frames are encoded: help.mkv turned by 30 degrees, its print scored under 0.5 on the frame the
#: cleaner saw and over it on the encoded release (the release was quarantined for it); at 0.4 the
#: cleaner finds it, and finds nothing more on the other shared clips
CHECK_BOX_THRESH = 0.5
CLEAN_BOX_THRESH = 0.4
#: intersection over union above which a region is "the same place" as one of the previous scan
SAME_REGION_IOU = 0.9
#: a region is taken for part of a face when this fraction of its own area, or of a face outline's
#: area, lies inside a face outline (the walking clip's region across two faces had 9% and 12%
#: of its area on each)
ON_FACE_FRACTION = 0.1


@dataclass
class TextBox:
    """One line of text found in a frame."""

    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (axis-aligned hull of the detected quadrilateral)
    text: str
    score: float
    frame: int | None = None
    #: the detected quadrilateral ``((x, y),) * 4``; cleaning paints it (the box when absent)
    quad: tuple[tuple[float, float], ...] | None = None
    #: the region lies on a face (see :data:`ON_FACE_FRACTION`): not annotation, never painted
    on_face: bool = False
    #: the region reads, confidently, as one character (:func:`lone_glyph`): never painted
    glyph: bool = False

    @property
    def painted(self) -> bool:
        """Whether the cleaner paints the region (not on a face, not a lone glyph)."""
        return not (self.on_face or self.glyph)

    def moved(self, quad: np.ndarray) -> TextBox:
        """The region carried to the quadrilateral ``quad`` ``(4, 2)``, its hull with it."""
        lo, hi = np.floor(quad.min(axis=0)).astype(int), np.ceil(quad.max(axis=0)).astype(int) + 1
        return replace(self, quad=tuple((float(x), float(y)) for x, y in quad), box=(int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])))


@dataclass
class Followed:
    """A region of a scan that the cleaner followed over the frames from ``first`` on (text that
    moves): its quadrilateral in each, ``(n, 4, 2)``."""

    region: TextBox
    first: int
    quads: np.ndarray

    def at(self, index: int) -> TextBox | None:
        """The region as painted on frame ``index``; None outside the frames it was followed over."""
        step = index - self.first
        return self.region.moved(self.quads[step]) if 0 <= step < len(self.quads) else None


#: a text box counts against a release when the OCR reads it with at least this score (clothing
#: prints score lower) ...
TEXT_MIN_SCORE = 0.7
#: ... and it reads at least this many letters or digits: a lone glyph (the OCR model reading "百"
#: in skin texture) carries no identifying text, while names, IDs and dates have several
TEXT_MIN_CHARS = 2


def legible(box: TextBox, min_score: float = TEXT_MIN_SCORE) -> bool:
    """Whether a read region counts as text (:data:`TEXT_MIN_SCORE`, :data:`TEXT_MIN_CHARS`)."""
    return box.score >= min_score and sum(c.isalnum() for c in box.text) >= TEXT_MIN_CHARS


def lone_glyph(box: TextBox) -> bool:
    """Whether a read region is one character, read with verification's confidence: it identifies no
    one (:data:`TEXT_MIN_CHARS`), and it is most often a shape of the scene. The base of a table in
    the shared walking clip read "X" (0.88); painted, with the paint held over the frames between
    two scans, it took the legs of the walker going past, and the pose model read the walker's feet
    differently once it was gone. A region the recognizer cannot read with that confidence is
    still painted, whatever it is."""
    return box.score >= TEXT_MIN_SCORE and sum(c.isalnum() for c in box.text) < TEXT_MIN_CHARS and bool(box.text.strip())


@lru_cache(maxsize=1)
def _engine() -> Any:
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR(det_limit_side_len=DET_MAX_SIDE, det_limit_type="max")


# RapidOCR keeps a call's box threshold on the engine for the calls after it: every call names its
# own, under this lock
_ENGINE_LOCK = threading.Lock()


def _bgr(frame: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(frame[:, :, ::-1])


def _detector_input(frame: np.ndarray) -> tuple[np.ndarray, float]:
    """The BGR image the detector sees and its scale relative to ``frame``."""
    import cv2

    longest = max(frame.shape[:2])
    if longest >= DET_MIN_SIDE:
        return _bgr(frame), 1.0
    scale = DET_MIN_SIDE / longest
    return cv2.resize(_bgr(frame), None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC), scale


def _hull(quad: Any) -> tuple[int, int, int, int]:
    pts = np.asarray(quad, np.float64)
    x0, y0 = np.floor(pts.min(axis=0)).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int)
    return int(x0), int(y0), int(x1), int(y1)


def find_text(frame: np.ndarray, min_score: float = 0.5, frame_index: int | None = None) -> list[TextBox]:
    """Text lines in an RGB frame, with their recognized strings and confidences (detect + read).

    Parameters
    ----------
    frame:
        RGB ``uint8`` image.
    min_score:
        Recognition confidence below which a detection is dropped (clothing prints and textures
        produce low-confidence hits).
    frame_index:
        Stored on each box, for reports.
    """
    image, scale = _detector_input(frame)
    with _ENGINE_LOCK:
        result, _ = _engine()(image, box_thresh=CHECK_BOX_THRESH)
    return [
        TextBox(_hull(q), str(text), float(score), frame_index, _quad(q))
        for q, text, score in ((np.asarray(quad, np.float64) / scale, text, score) for quad, text, score in result or [])
        if float(score) >= min_score
    ]


def detect_text(frame: np.ndarray, box_thresh: float = CLEAN_BOX_THRESH) -> np.ndarray:
    """Quadrilaterals ``(n, 4, 2)`` of every text region the detector finds in an RGB frame.

    Detection only: nothing is read, so a region counts whatever it says (or whether it can be read
    at all). This is what cleaning blanks (at :data:`CLEAN_BOX_THRESH`).
    """
    image, scale = _detector_input(frame)
    with _ENGINE_LOCK:
        quads, _ = _engine()(image, use_det=True, use_cls=False, use_rec=False, box_thresh=box_thresh)
    if not quads:
        return np.zeros((0, 4, 2), np.float32)
    return np.asarray(quads, np.float32).reshape(-1, 4, 2) / np.float32(scale)


def read_text(frame: np.ndarray, quads: np.ndarray) -> list[tuple[str, float]]:
    """The recognizer's reading ``(text, confidence)`` of each detected region of an RGB frame."""
    if len(quads) == 0:
        return []
    engine = _engine()
    crops = engine.get_crop_img_list(_bgr(frame), [q.copy() for q in np.asarray(quads, np.float32)])
    crops, _, _ = engine.text_cls(crops)  # turns upside-down lines upright before reading
    readings, _ = engine.text_rec(crops)
    return [(str(r[0]), float(r[1])) for r in readings]


def _quad(points: np.ndarray) -> tuple[tuple[float, float], ...]:
    return tuple((round(float(x), 1), round(float(y), 1)) for x, y in points)


def _iou(a: Sequence[int], b: Sequence[int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def text_regions(
    frame: np.ndarray, frame_index: int | None = None, previous: Sequence[TextBox] = (), read: bool = True
) -> list[TextBox]:
    """Every detected text region of a frame as :class:`TextBox` es, for cleaning.

    Parameters
    ----------
    previous:
        Boxes of an earlier scan: a region at the same place (IoU >= :data:`SAME_REGION_IOU`) takes
        its reading instead of being read again.
    read:
        Read the new regions (for the report); False leaves their text empty and score 0.
    """
    quads = detect_text(frame)
    boxes = [TextBox(_hull(q), "", 0.0, frame_index, _quad(q)) for q in quads]
    fresh = []
    for i, tb in enumerate(boxes):
        same = next((p for p in previous if p.text and _iou(p.box, tb.box) >= SAME_REGION_IOU), None)
        if same is not None:
            tb.text, tb.score = same.text, same.score
        else:
            fresh.append(i)
    if read and fresh:
        for i, (text, score) in zip(fresh, read_text(frame, quads[fresh])):
            boxes[i].text, boxes[i].score = text, score
    return boxes


def polygon(tb: TextBox) -> np.ndarray:
    if tb.quad is not None:
        return np.asarray(tb.quad, np.float64)
    x0, y0, x1, y1 = tb.box  # pixel rows and columns x0..x1-1, y0..y1-1 (slice bounds)
    return np.array([(x0, y0), (x1 - 1, y0), (x1 - 1, y1 - 1), (x0, y1 - 1)], np.float64)


def region_mask(
    polygon: np.ndarray, pad: int, rows: int, columns: int, keep_out: Sequence[np.ndarray] = ()
) -> tuple[slice, slice, np.ndarray] | None:
    """The frame slices around ``polygon`` grown by ``pad`` pixels and the mask to paint in them,
    with every ``keep_out`` polygon cut out; None when nothing of it is left in the frame."""
    import cv2

    lo = np.floor(polygon.min(axis=0)).astype(int) - pad
    hi = np.ceil(polygon.max(axis=0)).astype(int) + pad  # the hull's slice bounds, as TextBox.box
    x0, y0 = max(0, lo[0]), max(0, lo[1])
    x1, y1 = min(columns, hi[0]), min(rows, hi[1])
    if x1 <= x0 or y1 <= y0:
        return None
    origin = np.array([x0, y0], np.float64)
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [np.round(polygon - origin).astype(np.int32)], 1)
    if pad > 0:  # grown as the hull was: by pad pixels on every side
        mask = cv2.dilate(mask, np.ones((2 * pad + 1, 2 * pad + 1), np.uint8))
    for outline in keep_out:
        cv2.fillPoly(mask, [np.round(np.asarray(outline, np.float64) - origin).astype(np.int32)], 0)
    if not mask.any():
        return None
    return slice(y0, y1), slice(x0, x1), mask.astype(bool)


def mark_on_face(boxes: Iterable[TextBox], faces: Sequence[np.ndarray], rows: int, columns: int) -> None:
    """Set ``on_face`` on every region that lies on one of the face outlines ``faces`` (pixels)."""
    import cv2

    faces = [np.asarray(f, np.float64) for f in faces]
    if not faces:
        return
    face_areas = [max(float(cv2.contourArea(f.astype(np.float32))), 1.0) for f in faces]
    for tb in boxes:
        region = region_mask(polygon(tb), 0, rows, columns)
        if region is None:
            continue
        ys, xs, mask = region
        area = float(mask.sum())
        origin = np.array([xs.start, ys.start], np.float64)
        for outline, face_area in zip(faces, face_areas):
            inside = np.zeros(mask.shape, np.uint8)
            cv2.fillPoly(inside, [np.round(outline - origin).astype(np.int32)], 1)
            shared = float((mask & inside.astype(bool)).sum())
            if shared >= ON_FACE_FRACTION * area or shared >= ON_FACE_FRACTION * face_area:
                tb.on_face = True
                break


@dataclass
class TextScan:
    """What a sampled scan of a video found."""

    sample_every: int
    frames: int = 0
    frames_scanned: list[int] = field(default_factory=list)
    found: list[TextBox] = field(default_factory=list)
    #: the regions the cleaner followed, by the scan the frames they were followed over come after
    followed: dict[int, list[Followed]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (what was found; not the followed regions' places frame by frame)."""
        return {k: v for k, v in asdict(replace(self, followed={})).items() if k != "followed"}

    def painted_at(self, index: int) -> list[TextBox]:
        """The regions :func:`clinrelease.clean.clean_video_text` painted on frame ``index`` (those
        of the first scan at or after it and of the scan before that, a followed one where it was
        followed to), less those it left."""
        k = bisect.bisect_left(self.frames_scanned, index)
        scans = set(self.frames_scanned[max(k - 1, 0) : k + 1])
        painted = [tb for tb in self.found if tb.frame in scans and tb.painted]
        if k < 1:
            return painted
        carried = {id(f.region): moved for f in self.followed.get(self.frames_scanned[k - 1], ()) if (moved := f.at(index)) is not None}
        return [carried.get(id(tb), tb) for tb in painted]

    def where(self, left: str | None = None, limit: int = 8) -> str:
        """Where the regions were (painted ones; ``left="face"``: those left on a face, ``"glyph"``:
        the lone glyphs left), without what they say (the readings are PHI): each place once, as its
        box and the number of scans that found it there."""
        places: list[tuple[tuple[int, int, int, int], int]] = []
        for tb in self.found:
            shown = {None: tb.painted, "face": tb.on_face, "glyph": tb.glyph and not tb.on_face}[left]
            if not shown:
                continue
            at = next((i for i, (box, _) in enumerate(places) if _iou(box, tb.box) >= 0.5), None)
            if at is None:
                places.append((tb.box, 1))
            else:
                places[at] = (places[at][0], places[at][1] + 1)
        shown = [f"({x0},{y0})-({x1},{y1}) x{n}" for (x0, y0, x1, y1), n in places[:limit]]
        return "; ".join(shown) + (f"; and {len(places) - limit} more places" if len(places) > limit else "")


def check_sampling(sample_every: int) -> None:
    if sample_every < 1:
        raise ConfigError(f"sample_every must be >= 1, got {sample_every}")


def scan_text(frames: Iterable[np.ndarray], sample_every: int = 30, min_score: float = 0.5) -> TextScan:
    """Look for text on every Nth frame plus the last one; report every box found (detect + read).

    Used on a cleaned output to verify that no burned-in text remains.
    """
    check_sampling(sample_every)
    scan = TextScan(sample_every)
    last: tuple[int, np.ndarray] | None = None
    for index, frame in enumerate(frames):
        scan.frames = index + 1
        if index % sample_every == 0:
            scan.frames_scanned.append(index)
            scan.found.extend(find_text(frame, min_score, index))
            last = None
        else:
            last = (index, frame)
    if last is not None:
        scan.frames_scanned.append(last[0])
        scan.found.extend(find_text(last[1], min_score, last[0]))
    return scan

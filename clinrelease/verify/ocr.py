"""Burned-in text: find it (rapidocr's PP-OCRv4 ONNX models, shipped in the wheel), blank it, verify.

Two uses with different needs:

* **Cleaning** (:func:`clean_video_text`) blanks every region the text *detector* finds, whatever
  it says: a detected region is removed even when the recognizer cannot read it, so cleaning needs
  only the detection model. Recognition runs on the detected crops just to report what was blanked,
  and a region seen at the same place on the previous scan keeps its reading (burned-in annotations
  are static), so a static overlay is read once.
* **Verification** (:func:`scan_text`, :func:`find_text`) detects and reads: the verdict counts
  legible text (see :meth:`clinrelease.verify.checks.Thresholds.remaining_text`).

The detector sees the frame at its own resolution, shrunk only when its longest side exceeds
:data:`DET_MAX_SIDE`. RapidOCR's default upscales every frame to a shortest side of 736 (a 640x480
frame becomes 992x736, 2.4x the pixels) for the same findings on planted captions down to 7-pixel
letters (measured on the shared clips), at about half the cost.

Videos are scanned on every Nth frame plus the last one. Burned-in annotations (names, IDs, dates,
overlays) are static, so a frame between two scanned frames is cleaned with the union of both
frames' boxes: text that appears or disappears between scans is still covered on the scanned side.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from clinrelease.errors import ConfigError

#: longest side (pixels) of the text detector's input
DET_MAX_SIDE = 960
#: frames whose longest side is shorter are upscaled to it first: at native size the detector misses
#: the 8-pixel captions of a 176x144 clip entirely (the burned-in name and MRN survived a release)
DET_MIN_SIDE = 640
#: intersection over union above which a region is "the same place" as one of the previous scan
SAME_REGION_IOU = 0.9


@dataclass
class TextBox:
    """One line of text found in a frame."""

    box: tuple[int, int, int, int]  # x0, y0, x1, y1 (axis-aligned hull of the detected quadrilateral)
    text: str
    score: float
    frame: int | None = None


@lru_cache(maxsize=1)
def _engine() -> Any:
    from rapidocr_onnxruntime import RapidOCR

    return RapidOCR(det_limit_side_len=DET_MAX_SIDE, det_limit_type="max")


def _bgr(frame: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(frame[:, :, ::-1])


def _detector_input(frame: np.ndarray) -> tuple[np.ndarray, float]:
    """The BGR image the detector sees and its scale relative to ``frame``."""
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
    result, _ = _engine()(image)
    return [
        TextBox(_hull(np.asarray(quad, np.float64) / scale), str(text), float(score), frame_index)
        for quad, text, score in result or []
        if float(score) >= min_score
    ]


def detect_text(frame: np.ndarray) -> np.ndarray:
    """Quadrilaterals ``(n, 4, 2)`` of every text region the detector finds in an RGB frame.

    Detection only: nothing is read, so a region counts whatever it says (or whether it can be read
    at all). This is what cleaning blanks.
    """
    image, scale = _detector_input(frame)
    quads, _ = _engine()(image, use_det=True, use_cls=False, use_rec=False)
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
    boxes = [TextBox(_hull(q), "", 0.0, frame_index) for q in quads]
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


def _padded(box: Sequence[int], pad: int, rows: int, columns: int) -> tuple[slice, slice]:
    x0, y0, x1, y1 = box
    return slice(max(0, y0 - pad), min(rows, y1 + pad)), slice(max(0, x0 - pad), min(columns, x1 + pad))


def clean_text(
    frame: np.ndarray,
    boxes: Iterable[TextBox],
    method: str = "fill",
    pad: int = 4,
    fill: tuple[int, int, int] = (0, 0, 0),
) -> np.ndarray:
    """A copy of ``frame`` with every box (grown by ``pad`` pixels) blanked.

    Parameters
    ----------
    method:
        ``"fill"`` paints a solid colour (nothing of the text survives); ``"inpaint"`` fills from the
        surroundings with OpenCV's Telea inpainting (looks natural; still removes the strokes).
    """
    if method not in ("fill", "inpaint"):
        raise ConfigError(f"unknown text cleaning method {method!r}; use 'fill' or 'inpaint'")
    out = frame.copy()
    h, w = frame.shape[:2]
    regions = [_padded(tb.box, pad, h, w) for tb in boxes]
    regions = [(ys, xs) for ys, xs in regions if ys.stop > ys.start and xs.stop > xs.start]
    if not regions:
        return out
    if method == "fill":
        for ys, xs in regions:  # rectangles: slice assignment, no full-frame mask
            out[ys, xs] = fill
        return out
    mask = np.zeros((h, w), np.uint8)
    for ys, xs in regions:
        mask[ys, xs] = 255
    return cv2.inpaint(out, mask, 5, cv2.INPAINT_TELEA)


@dataclass
class TextScan:
    """What a sampled scan of a video found."""

    sample_every: int
    frames: int = 0
    frames_scanned: list[int] = field(default_factory=list)
    found: list[TextBox] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return asdict(self)


def _check_sampling(sample_every: int) -> None:
    if sample_every < 1:
        raise ConfigError(f"sample_every must be >= 1, got {sample_every}")


def _cleaned(frame: np.ndarray, boxes: list[TextBox], method: str) -> np.ndarray:
    # most frames carry no text: hand them on untouched rather than copied
    return clean_text(frame, boxes, method) if boxes else frame


def clean_video_text(
    frames: Iterable[np.ndarray],
    sample_every: int = 30,
    method: str = "fill",
    scan: TextScan | None = None,
    read: bool = True,
) -> Iterator[np.ndarray]:
    """Yield the frames with burned-in text removed, scanning every Nth frame plus the last.

    Every region the detector finds on a scanned frame is blanked, legible or not. Holds at most
    ``sample_every`` frames: those between two scanned frames wait until the later scan, then get the
    union of both scans' boxes. Frames with nothing to blank are yielded as they came (not copied).

    Parameters
    ----------
    scan:
        Collects every blanked region (with its reading when ``read``).
    read:
        Read the blanked regions for the report; a region at the same place as on the previous scan
        keeps that reading.
    """
    _check_sampling(sample_every)
    scan = scan if scan is not None else TextScan(sample_every)
    pending: list[tuple[int, np.ndarray]] = []
    prev: list[TextBox] = []
    index = -1
    for index, frame in enumerate(frames):
        scan.frames = index + 1
        if index % sample_every:
            pending.append((index, frame))
            continue
        cur = text_regions(frame, index, prev, read)
        scan.frames_scanned.append(index)
        scan.found.extend(cur)
        for _, held in pending:
            yield _cleaned(held, prev + cur, method)
        pending.clear()
        yield _cleaned(frame, cur + prev, method)
        prev = cur
    if pending:  # the last frame was not on the grid: scan it too
        last_index, last = pending[-1]
        cur = text_regions(last, last_index, prev, read)
        scan.frames_scanned.append(last_index)
        scan.found.extend(cur)
        for _, held in pending:
            yield _cleaned(held, prev + cur, method)


def scan_text(frames: Iterable[np.ndarray], sample_every: int = 30, min_score: float = 0.5) -> TextScan:
    """Look for text on every Nth frame plus the last one; report every box found (detect + read).

    Used on a cleaned output to verify that no burned-in text remains.
    """
    _check_sampling(sample_every)
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

"""Burned-in text: find it (rapidocr's PP-OCRv4 ONNX models, shipped in the wheel), blank it, verify.

Text detection costs ~0.3-0.5 s a frame on one core, so videos are scanned on every Nth frame plus
the first and last. Burned-in annotations (names, IDs, dates, overlays) are static, so a frame
between two scanned frames is cleaned with the union of both frames' boxes: text that appears or
disappears between scans is still covered on the scanned side.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

from clinrelease.errors import ConfigError


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

    return RapidOCR()


def find_text(frame: np.ndarray, min_score: float = 0.5, frame_index: int | None = None) -> list[TextBox]:
    """Text lines in an RGB frame, with their recognized strings and confidences.

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
    result, _ = _engine()(np.ascontiguousarray(frame[:, :, ::-1]))
    boxes = []
    for quad, text, score in result or []:
        pts = np.asarray(quad, np.float64)
        x0, y0 = np.floor(pts.min(axis=0)).astype(int)
        x1, y1 = np.ceil(pts.max(axis=0)).astype(int)
        if float(score) >= min_score:
            boxes.append(TextBox((int(x0), int(y0), int(x1), int(y1)), str(text), float(score), frame_index))
    return boxes


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
    mask = np.zeros((h, w), np.uint8)
    for tb in boxes:
        x0, y0, x1, y1 = tb.box
        mask[max(0, y0 - pad) : min(h, y1 + pad), max(0, x0 - pad) : min(w, x1 + pad)] = 255
    if not mask.any():
        return out
    if method == "fill":
        out[mask > 0] = fill
        return out
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


def clean_video_text(
    frames: Iterable[np.ndarray],
    sample_every: int = 30,
    min_score: float = 0.5,
    method: str = "fill",
    scan: TextScan | None = None,
) -> Iterator[np.ndarray]:
    """Yield the frames with burned-in text removed, scanning every Nth frame plus the last.

    Holds at most ``sample_every`` frames: those between two scanned frames wait until the later
    scan, then get the union of both scans' boxes. Pass a :class:`TextScan` to collect what was found.
    """
    if sample_every < 1:
        raise ConfigError(f"sample_every must be >= 1, got {sample_every}")
    scan = scan if scan is not None else TextScan(sample_every)
    pending: list[tuple[int, np.ndarray]] = []
    prev: list[TextBox] = []
    index = -1
    for index, frame in enumerate(frames):
        scan.frames = index + 1
        if index % sample_every:
            pending.append((index, frame))
            continue
        cur = find_text(frame, min_score, index)
        scan.frames_scanned.append(index)
        scan.found.extend(cur)
        for _, held in pending:
            yield clean_text(held, prev + cur, method)
        pending.clear()
        yield clean_text(frame, cur + prev, method)
        prev = cur
    if pending:  # the last frame was not on the grid: scan it too
        last_index, last = pending[-1]
        cur = find_text(last, min_score, last_index)
        scan.frames_scanned.append(last_index)
        scan.found.extend(cur)
        for _, held in pending:
            yield clean_text(held, prev + cur, method)


def scan_text(frames: Iterable[np.ndarray], sample_every: int = 30, min_score: float = 0.5) -> TextScan:
    """Look for text on every Nth frame plus the last one; report every box found.

    Used on a cleaned output to verify that no burned-in text remains.
    """
    if sample_every < 1:
        raise ConfigError(f"sample_every must be >= 1, got {sample_every}")
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

"""Clean Pixel Data: burned-in text painted out of the frames before they are encoded.

The text is found by :mod:`clinrelease.verify.ocr`'s detector (the same one verification reads the
released frames with); this module is the only part that changes pixels. Every region the detector
finds on a scanned frame is blanked, legible or not, except what lies on a tracked face (the detector
takes eyes, brows and glasses for text lines; legible text left on a face still fails verification).

Videos are scanned on every Nth frame plus the last one. Burned-in annotations (names, IDs, dates,
overlays) are static, so a frame between two scanned frames is cleaned with the union of both
frames' boxes: text that appears or disappears between scans is still covered on the scanned side.
Cleaning paints the detected quadrilateral, not its axis-aligned hull: the hull of a text line
tilted by 40 degrees (a shirt print on a tilted body) is a rectangle three times its area that
reached over the patient's chin. Nor does it paint over a hand: a shirt print is found where the
hands were not on its scanned frame, and a sign or a tap passes the hands over it in the frames
between (the paint took the hands away there, and the body keypoint check quarantined the video).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np

from clinrelease.errors import ConfigError
from clinrelease.verify.ocr import TextBox, TextScan, check_sampling, legible, mark_on_face, polygon, region_mask, text_regions


#: how :func:`clean_text` may blank a region
CLEAN_METHODS = ("textured", "fill", "inpaint")


def clean_text(
    frame: np.ndarray,
    boxes: Iterable[TextBox],
    method: str = "textured",
    pad: int = 4,
    fill: tuple[int, int, int] = (0, 0, 0),
    keep_out: Sequence[np.ndarray] = (),
) -> np.ndarray:
    """A copy of ``frame`` with every region (its quadrilateral grown by ``pad`` pixels) blanked.

    Parameters
    ----------
    method:
        ``"textured"`` inpaints and adds grain at the surroundings' own detail level: a solid fill
        is a flat patch that the body keypoint model reads as an occluder (a black box over a
        hoodie's print took body AP from 0.99 to 0.75 on again.mkv shrunk to a 24 px face; 0.91
        textured). ``"fill"`` paints a solid colour; ``"inpaint"`` fills from the surroundings
        with OpenCV's Telea inpainting (smooth: a flat patch where the text was large). Each removes
        every stroke. A print's letters cleanly removed can leave a face-like print (again.mkv: a
        skull under the letters; help.mkv: the hands held over one); the residual-face check tells
        such a pattern from a face (:func:`clinrelease.face.pipeline.residual_faces`).
    keep_out:
        Outlines ``(m, 2)`` (frame pixels) never painted, nor used as a source for the inpainting of
        a region beside them: the faces and hands of this frame. Regions marked ``on_face`` are
        skipped whole.
    """
    if method not in CLEAN_METHODS:
        raise ConfigError(f"unknown text cleaning method {method!r}; use one of {', '.join(CLEAN_METHODS)}")
    out = frame.copy()
    h, w = frame.shape[:2]
    regions = [region_mask(polygon(tb), pad, h, w, keep_out) for tb in boxes if not tb.on_face]
    regions = [r for r in regions if r is not None]
    if not regions:
        return out
    if method == "fill":
        for ys, xs, mask in regions:  # masks of the regions' bounding boxes: no full-frame mask
            out[ys, xs][mask] = fill
        return out
    full = np.zeros((h, w), np.uint8)
    for ys, xs, mask in regions:
        full[ys, xs][mask] = 255
    # a face or hand beside the text is no source for the fill (a hand's colour smeared into the
    # hoodie beside it): those next to a region are filled along with it, then put back
    kept = _kept_beside(full, regions, keep_out)
    out = cv2.inpaint(out, full | kept, INPAINT_RADIUS, cv2.INPAINT_TELEA)
    if method == "textured":
        _add_grain(out, frame, regions)
    if kept.any():
        out[kept > 0] = frame[kept > 0]
    return out


#: pixels around a painted region that :func:`cv2.inpaint` fills it from
INPAINT_RADIUS = 5


def _kept_beside(full: np.ndarray, regions: Sequence[tuple[slice, slice, np.ndarray]], keep_out: Sequence[np.ndarray]) -> np.ndarray:
    """Mask (255) of the ``keep_out`` outlines that come within the inpainting radius of a region."""
    kept = np.zeros_like(full)
    reach = INPAINT_RADIUS + 1
    for outline in keep_out:
        pts = np.asarray(outline, np.float64)
        (x0, y0), (x1, y1) = pts.min(axis=0) - reach, pts.max(axis=0) + reach
        if any(xs.start < x1 and x0 < xs.stop and ys.start < y1 and y0 < ys.stop for ys, xs, _ in regions):
            cv2.fillPoly(kept, [np.round(pts).astype(np.int32)], 255)
    return kept


def _add_grain(out: np.ndarray, frame: np.ndarray, regions: Sequence[tuple[slice, slice, np.ndarray]]) -> None:
    """Grain inside each painted region at the detail level of the frame around it (within the
    textured blur's floor and ceiling), drawn from the region's place alone, never from its pixels."""
    from clinrelease.face.textured_blur import grain, grain_level

    for ys, xs, mask in regions:
        level = grain_level(frame[ys, xs], ~mask)
        noise = grain(mask.shape, level, ys.start * 100_003 + xs.start)
        patch = out[ys, xs].astype(np.float32)
        patch[mask] += noise[mask][:, None]
        out[ys, xs] = np.clip(patch + 0.5, 0, 255).astype(np.uint8)


FaceOutlines = Callable[[int], Sequence[np.ndarray]]


def _cleaned(frame: np.ndarray, index: int, boxes: list[TextBox], method: str, keep: Sequence[FaceOutlines]) -> np.ndarray:
    # most frames carry no text: hand them on untouched rather than copied
    boxes = [b for b in boxes if not b.on_face]
    if not boxes:
        return frame
    return clean_text(frame, boxes, method, keep_out=[outline for outlines in keep for outline in outlines(index)])


#: looks at a scanned frame: the first, and again at the frame as cleaned while that finds more
SCAN_LOOKS = 3
#: a region a later look finds with this share of its box on regions already found is not new
LOOK_PAINTED_SHARE = 0.1
#: the reading score from which a later look's region counts (verification's is
#: :data:`~clinrelease.verify.ocr.TEXT_MIN_SCORE`: the cleaner is the stricter of the two)
LOOK_MIN_SCORE = 0.5


def _painted_share(box: tuple[int, int, int, int], found: Sequence[TextBox], pad: int = 4) -> float:
    """Share of ``box``'s area on the boxes of ``found`` (grown by ``pad``, as painted)."""
    x0, y0, x1, y1 = box
    area = max((x1 - x0) * (y1 - y0), 1)
    on = 0
    for tb in found:
        a0, b0, a1, b1 = tb.box[0] - pad, tb.box[1] - pad, tb.box[2] + pad, tb.box[3] + pad
        on += max(0, min(x1, a1) - max(x0, a0)) * max(0, min(y1, b1) - max(y0, b0))
    return min(on / area, 1.0)


def _scanned(
    frame: np.ndarray, index: int, previous: list[TextBox], read: bool, faces: FaceOutlines | None, method: str, keep: Sequence[FaceOutlines]
) -> list[TextBox]:
    # large bold text hides smaller text from the detector: with a scanner's caption in the frame it
    # missed a shirt's print that it found, and verification read, once the caption was cleaned
    found: list[TextBox] = []
    for _ in range(SCAN_LOOKS):
        if not found:
            new = text_regions(frame, index, previous, read)
        else:
            # the frame as it will be released, read as verification reads it (more leniently): the
            # first look painted every region, legible or not; what a later look finds counts only
            # where it reads as text (over the paint's grain the detector joined a printed skull and
            # the face above it into one "line", again.mkv), and what lies on the paint is its edge
            seen = _cleaned(frame, index, found, method, keep)
            new = [
                b for b in text_regions(seen, index, previous, read=True)
                if legible(b, LOOK_MIN_SCORE) and _painted_share(b.box, found) < LOOK_PAINTED_SHARE
            ]  # fmt: skip
        if faces is not None:
            mark_on_face(new, faces(index), *frame.shape[:2])
        found.extend(new)
        if not any(not b.on_face for b in new):
            break
    return found


def clean_video_text(
    frames: Iterable[np.ndarray],
    sample_every: int = 30,
    method: str = "textured",
    scan: TextScan | None = None,
    read: bool = True,
    faces: FaceOutlines | None = None,
    hands: FaceOutlines | None = None,
) -> Iterator[np.ndarray]:
    """Yield the frames with burned-in text removed, scanning every Nth frame plus the last.

    Every region the detector finds on a scanned frame is blanked, legible or not, except what lies
    on a face. Holds at most ``sample_every`` frames: those between two scanned frames wait until the
    later scan, then get the union of both scans' regions. Frames with nothing to blank are yielded
    as they came (not copied).

    Parameters
    ----------
    scan:
        Collects every region found (with its reading when ``read``); those left because they lie on
        a face have ``on_face`` set.
    read:
        Read the blanked regions for the report; a region at the same place as on the previous scan
        keeps that reading.
    faces:
        ``faces(frame_index)`` gives the outlines (pixels) of the faces in that frame: a region on a
        face on its scanned frame is left whole (it is the face, and it moves with it), and no frame
        is painted inside its own face outlines.
    hands:
        ``hands(frame_index)`` gives the outlines (pixels) of the hands in that frame: no frame is
        painted inside its own hand outlines (text a hand covers is not visible there; text a hand
        holds, left legible, still fails verification's reading of the released frames).
    """
    check_sampling(sample_every)
    scan = scan if scan is not None else TextScan(sample_every)
    keep = [outlines for outlines in (faces, hands) if outlines is not None]
    pending: list[tuple[int, np.ndarray]] = []
    prev: list[TextBox] = []
    index = -1
    for index, frame in enumerate(frames):
        scan.frames = index + 1
        if index % sample_every:
            pending.append((index, frame))
            continue
        cur = _scanned(frame, index, prev, read, faces, method, keep)
        scan.frames_scanned.append(index)
        scan.found.extend(cur)
        for held_index, held in pending:
            yield _cleaned(held, held_index, prev + cur, method, keep)
        pending.clear()
        yield _cleaned(frame, index, cur + prev, method, keep)
        prev = cur
    if pending:  # the last frame was not on the grid: scan it too
        last_index, last = pending[-1]
        cur = _scanned(last, last_index, prev, read, faces, method, keep)
        scan.frames_scanned.append(last_index)
        scan.found.extend(cur)
        for held_index, held in pending:
            yield _cleaned(held, held_index, prev + cur, method, keep)

"""Clean Pixel Data: burned-in text painted out of the frames before they are encoded.

The text is found by :mod:`clinrelease.verify.ocr`'s detector (the same one verification reads the
released frames with); this module is the only part that changes pixels. Every region the detector
finds on a scanned frame is blanked, legible or not, except what lies on a tracked face (the detector
takes eyes, brows and glasses for text lines; legible text left on a face still fails verification)
and what reads, confidently, as one character (:func:`~clinrelease.verify.ocr.lone_glyph`: a table's
base read as "X"; verification never counts a lone glyph either).

Videos are scanned on every Nth frame plus the last one. A frame between two scanned frames is
cleaned with both frames' regions: text that appears or disappears between scans is still covered
from the scan that saw it. Burned-in annotations (names, IDs, dates, overlays) are static, found at
the same place by both scans, and painted there; text on something that moves (a shirt's print) is
followed from each scan to where it is in the frame (:func:`_follow`).
Cleaning paints the detected quadrilateral, not its axis-aligned hull: the hull of a text line
tilted by 40 degrees (a shirt print on a tilted body) is a rectangle three times its area that
reached over the patient's chin. Nor does it paint over a hand: a shirt print is found where the
hands were not on its scanned frame, and a sign or a tap passes the hands over it in the frames
between (the paint took the hands away there, and the body keypoint check quarantined the video),
nor over the legs of a person who walks past (``legs``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np

from clinrelease.errors import ConfigError
from clinrelease.verify.ocr import Followed, TextBox, TextScan, check_sampling, legible, lone_glyph, mark_on_face, polygon, region_mask, text_regions


#: how :func:`clean_text` may blank a region
CLEAN_METHODS = ("textured", "fill", "inpaint")


def clean_text(
    frame: np.ndarray,
    boxes: Iterable[TextBox],
    method: str = "textured",
    pad: int = 4,
    fill: tuple[int, int, int] = (0, 0, 0),
    keep_out: Sequence[np.ndarray] = (),
    keep_mask: np.ndarray | None = None,
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
    keep_mask:
        Pixels (a boolean mask of the frame) kept the same way: a leg in front of a region.
    """
    if method not in CLEAN_METHODS:
        raise ConfigError(f"unknown text cleaning method {method!r}; use one of {', '.join(CLEAN_METHODS)}")
    out = frame.copy()
    h, w = frame.shape[:2]
    regions = [region_mask(polygon(tb), pad, h, w, keep_out) for tb in boxes if tb.painted]
    if keep_mask is not None:
        regions = [None if r is None else (r[0], r[1], r[2] & ~keep_mask[r[0], r[1]]) for r in regions]
    regions = [r for r in regions if r is not None and r[2].any()]
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
    if keep_mask is not None:
        reach = 2 * INPAINT_RADIUS + 3
        kept[keep_mask & (cv2.dilate(full, np.ones((reach, reach), np.uint8)) > 0)] = 255
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


LegOutlines = Callable[[np.ndarray], Sequence[np.ndarray]]

#: a region of a frame counts as changed since the scan it is compared with (someone walked in front
#: of it) when this share of its pixels moved by more than :data:`MOVED_LEVEL` grey levels: what
#: stays put moves by less (the burned-in name and MRN of a re-encoded walking clip: 0.09% at most)
MOVED_SHARE = 0.003
MOVED_LEVEL = 30


def _cleaned(
    frame: np.ndarray,
    index: int,
    boxes: list[TextBox],
    method: str,
    keep: Sequence[FaceOutlines],
    legs: LegOutlines | None = None,
    scans: Sequence[tuple[np.ndarray, Sequence[TextBox]]] = (),
    faces: FaceOutlines | None = None,
) -> np.ndarray:
    # most frames carry no text: hand them on untouched rather than copied
    boxes = [b for b in boxes if b.painted]
    if not boxes:
        return frame
    # the faces' outlines are both kept out and where the legs begin: drawn once
    face_lines = list(faces(index)) if faces is not None else []
    keep_out = face_lines + [outline for outlines in keep if outlines is not faces for outline in outlines(index)]
    keep_mask = None
    moved = _moved(frame, scans, _legs_from(face_lines)) if legs is not None else None
    if moved is not None:
        outlines = np.zeros(frame.shape[:2], np.uint8)
        cv2.fillPoly(outlines, [np.round(o).astype(np.int32) for o in legs(frame)], 1)
        keep_mask = moved & (outlines > 0)
    return clean_text(frame, boxes, method, keep_out=keep_out, keep_mask=keep_mask)


#: face heights below a face's chin above which no leg of that person reaches (hips are about three)
LEGS_BELOW_CHIN = 2.0


def _legs_from(faces: Sequence[np.ndarray]) -> float:
    """The highest row (pixels) a leg of a person with a face in the frame can reach; 0 without a face
    (someone seen from behind: their legs may be anywhere)."""
    if not len(faces):
        return 0.0
    tops = [float(np.max(f[:, 1])) + LEGS_BELOW_CHIN * float(np.ptp(f[:, 1])) for f in (np.asarray(f) for f in faces)]
    return min(tops)


def _moved(frame: np.ndarray, scans: Sequence[tuple[np.ndarray, Sequence[TextBox]]], legs_from: float = 0.0) -> np.ndarray | None:
    """The pixels of the regions that changed since the scanned frame each is compared with
    (``scans``: a scanned frame and its regions), grown by a pixel; None where no region changed
    (:data:`MOVED_SHARE`). Only regions that do not read as text count (the base of a table read
    as "XI" at 0.62): a leg passing in front of one changes its pixels, and the leg is kept. Regions
    wholly above ``legs_from`` (:func:`_legs_from`) do not count: a seated signer's hands passing
    over a shirt's print change it on most frames, and no leg is there to keep."""
    moved: np.ndarray | None = None
    for scanned, boxes in scans:
        for tb in boxes:
            # legible text is painted whole, whatever moved: over a leg, a caption's stroke edges change
            # with the leg behind them, and the strokes left read as text again
            if not tb.painted or legible(tb) or tb.box[3] < legs_from:
                continue
            x0, y0, x1, y1 = tb.box
            change = np.abs(frame[y0:y1, x0:x1].astype(np.int16) - scanned[y0:y1, x0:x1].astype(np.int16)).max(axis=-1) > MOVED_LEVEL
            if change.size and change.mean() > MOVED_SHARE:
                moved = np.zeros(frame.shape[:2], bool) if moved is None else moved
                moved[y0:y1, x0:x1] |= cv2.dilate(change.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    return moved


#: a region found at a scan is held where it was over the frames to the next scan when that scan
#: found one at the same place (this share of the larger hull on both): a burned-in annotation. A
#: region that only lies inside a larger one of the other scan (a print the detector joined with its
#: neighbours there) is not at the same place
SAME_PLACE = 0.5
#: points a moving region's content is followed by (corners inside its quadrilateral, Shi-Tomasi), the
#: fewest it may keep, and the forward-backward error (pixels) past which a followed point is dropped
FOLLOW_POINTS = 40
FOLLOW_MIN_POINTS = 6
FOLLOW_ERROR = 1.0
#: how far around its quadrilateral (pixels; at least its shorter side) a region's points are taken
FOLLOW_AROUND_MIN = 6
#: below this median displacement (pixels) between two frames a region has not moved: no drift
FOLLOW_STILL = 0.5
#: a followed region is painted where it was carried only where its picture matches there (normalized
#: cross-correlation with the scanned frame's) at least this well, and by this much better than
#: where it was
FOLLOW_MATCH = 0.5
FOLLOW_BETTER = 0.1
#: the share of a region that must be in view (not behind a face or hand) for it to be compared
FOLLOW_VISIBLE = 0.5


def _same_place(box: tuple[int, int, int, int], others: Sequence[TextBox]) -> bool:
    """Whether one of ``others`` lies where ``box`` does (:data:`SAME_PLACE` of the larger hull)."""
    x0, y0, x1, y1 = box
    for tb in others:
        a0, b0, a1, b1 = tb.box
        on = max(0, min(x1, a1) - max(x0, a0)) * max(0, min(y1, b1) - max(y0, b0))
        if on >= SAME_PLACE * max(1, (x1 - x0) * (y1 - y0), (a1 - a0) * (b1 - b0)):
            return True
    return False


def _follow(
    boxes: Sequence[TextBox], frames: Sequence[np.ndarray], others: Sequence[TextBox], fronts: Callable[[int], Sequence[np.ndarray]] | None = None
) -> tuple[list[list[TextBox]], list[tuple[TextBox, np.ndarray]]]:
    """Where each of ``boxes`` (regions of ``frames[0]``) lies in each later frame of ``frames``, and
    the regions that were followed with their quadrilaterals there, ``(len(frames) - 1, 4, 2)``.

    A region that ``others`` (the regions of the scan at the far end) show at the same place is a
    burned-in annotation and stays put. Any other region may be text on something that moves (a
    shirt's print on a walking or tilting body): points in and around it are followed from frame to
    frame (pyramidal Lucas-Kanade, checked forwards and backwards), a rotation, scale and shift fitted
    to them (RANSAC), and the region is painted where that carries it in the frames where
    :func:`_carried` finds it there, else where it was found. Held in place, the paint of a print on a
    body that turned 40 degrees between two scans lay on the background and the arm beside the body,
    where no text was, and the print itself was left. Points on what is in front of it
    (``fronts(k)``: the outlines of the faces and hands of ``frames[k]``) do not count: a sign's
    hands passing over a print that stays put carried its points away with them. Points lost stop
    the carrying there."""
    out: list[list[TextBox]] = [[] for _ in frames[1:]]
    moving = [tb for tb in boxes if tb.painted and not _same_place(tb.box, others)]
    still = [tb for tb in boxes if all(tb is not m for m in moving)]
    for held in out:
        held.extend(still)
    if not moving or len(frames) < 2:
        return out, []
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    rows, columns = grey[0].shape
    front = [None if fronts is None else _filled(fronts(k), rows, columns) for k in range(len(frames))]
    starts = [polygon(tb).astype(np.float32) for tb in moving]
    points: list[np.ndarray | None] = []
    for start in starts:
        mask = np.zeros((rows, columns), np.uint8)
        cv2.fillPoly(mask, [np.round(start).astype(np.int32)], 255)
        # a line of small print has few corners of its own: what it is printed on moves with it
        around = 2 * max(FOLLOW_AROUND_MIN, int(min(np.ptp(start, axis=0))))
        mask = cv2.dilate(mask, np.ones((around + 1, around + 1), np.uint8))
        if front[0] is not None:
            mask[front[0]] = 0
        found = cv2.goodFeaturesToTrack(grey[0], FOLLOW_POINTS, 0.01, 2, mask=mask)
        points.append(found if found is not None and len(found) >= FOLLOW_MIN_POINTS else None)
    carried = [np.eye(3, dtype=np.float64)[:2] for _ in moving]  # frames[0] -> frames[step]
    quads = [np.empty((len(frames) - 1, 4, 2), np.float32) for _ in moving]
    for step in range(1, len(frames)):
        live = [i for i, p in enumerate(points) if p is not None]
        if live:
            # every region's points in one pass: the pyramids of the two frames are built once
            before = np.concatenate([points[i] for i in live])
            ahead, ok, _ = cv2.calcOpticalFlowPyrLK(grey[step - 1], grey[step], before, None)
            back, ok_back, _ = cv2.calcOpticalFlowPyrLK(grey[step], grey[step - 1], ahead, None)
            good = (ok[:, 0] == 1) & (ok_back[:, 0] == 1) & (np.linalg.norm((back - before)[:, 0], axis=1) < FOLLOW_ERROR)
            good &= ~_on(front[step - 1], before) & ~_on(front[step], ahead)
            at = 0
            for i in live:
                n = len(points[i])
                mine, was, now = good[at : at + n], before[at : at + n], ahead[at : at + n]
                at += n
                if mine.sum() < FOLLOW_MIN_POINTS:
                    points[i] = None
                    continue
                turn, _ = cv2.estimateAffinePartial2D(was[mine], now[mine], method=cv2.RANSAC, ransacReprojThreshold=FOLLOW_ERROR)
                if turn is not None and np.median(np.linalg.norm((now - was)[mine, 0], axis=1)) >= FOLLOW_STILL:
                    carried[i] = turn @ np.vstack([carried[i], (0.0, 0.0, 1.0)])
                points[i] = now[mine]
        for i, (tb, start) in enumerate(zip(moving, starts)):
            quad = start
            if not np.allclose(carried[i], np.eye(3)[:2]) and _carried(grey[0], grey[step], start, carried[i], front[0], front[step]):
                quad = cv2.transform(start[None], carried[i])[0].astype(np.float32)
            quads[i][step - 1] = quad
            out[step - 1].append(tb if quad is start else tb.moved(quad))
    return out, list(zip(moving, quads))


def _carried(
    first: np.ndarray, later: np.ndarray, quad: np.ndarray, carried: np.ndarray, front: np.ndarray | None, front_later: np.ndarray | None
) -> bool:
    """Whether a followed region is painted in ``later`` where ``carried`` (a 2x3 affine) takes it,
    rather than where it was found.

    The picture inside ``quad`` of ``first`` is compared (normalized cross-correlation, on what is in
    view: not behind ``front``, ``front_later``) with ``later`` at both places: carried where it
    matches there (:data:`FOLLOW_MATCH`) and better than where it was (:data:`FOLLOW_BETTER`), and
    where it was is in view. Anything else stays where it was, as a burned-in annotation does: hands
    passing over a print that stays put carried its points along, and the print they half hid was
    left unpainted where it still was."""
    rows, columns = first.shape
    x0, y0 = (max(0, int(v)) for v in np.floor(quad.min(axis=0)))
    x1, y1 = min(columns, int(np.ceil(quad[:, 0].max())) + 1), min(rows, int(np.ceil(quad[:, 1].max())) + 1)
    if x1 - x0 < 3 or y1 - y0 < 3:
        return False
    patch = first[y0:y1, x0:x1].astype(np.float32)
    mine = np.ones(patch.shape, bool) if front is None else ~front[y0:y1, x0:x1]
    lin, shift = carried[:, :2], carried[:, 2]
    to_later = np.hstack([lin, (lin @ np.array([x0, y0], np.float64) + shift)[:, None]])

    def seen(picture: np.ndarray, warp: bool) -> np.ndarray:
        if not warp:
            return picture[y0:y1, x0:x1]
        return cv2.warpAffine(picture, to_later, (x1 - x0, y1 - y0), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)

    def match(warp: bool) -> float | None:
        other = seen(later, warp).astype(np.float32)
        valid = mine if front_later is None else mine & ~seen(front_later.astype(np.uint8), warp).astype(bool)
        if valid.mean() < FOLLOW_VISIBLE:
            return None
        a, b = patch[valid] - patch[valid].mean(), other[valid] - other[valid].mean()
        return float((a * b).sum() / max(np.sqrt((a * a).sum() * (b * b).sum()), 1e-6))

    moved, here = match(True), match(False)
    return moved is not None and here is not None and moved >= FOLLOW_MATCH and moved >= here + FOLLOW_BETTER


def _filled(outlines: Sequence[np.ndarray], rows: int, columns: int) -> np.ndarray | None:
    """(rows, columns) bool: inside any of ``outlines``; None when there are none."""
    if not len(outlines):
        return None
    mask = np.zeros((rows, columns), np.uint8)
    cv2.fillPoly(mask, [np.round(np.asarray(o, np.float64)).astype(np.int32) for o in outlines], 1)
    return mask > 0


def _on(mask: np.ndarray | None, points: np.ndarray) -> np.ndarray:
    """Which of ``points`` ``(n, 1, 2)`` lie on ``mask`` (none without one)."""
    if mask is None:
        return np.zeros(len(points), bool)
    xy = np.round(points[:, 0]).astype(int)
    x, y = xy[:, 0].clip(0, mask.shape[1] - 1), xy[:, 1].clip(0, mask.shape[0] - 1)
    return mask[y, x]


def _held(
    prev: list[TextBox],
    prev_frame: np.ndarray | None,
    cur: list[TextBox],
    frame: np.ndarray,
    between: Sequence[np.ndarray],
    scan: TextScan,
    fronts: Callable[[int], Sequence[np.ndarray]] | None = None,
) -> tuple[list[list[TextBox]], list[TextBox]]:
    """The regions painted on each frame ``between`` two scans (``prev`` found on ``prev_frame``, ``cur``
    on ``frame``: the last two of ``scan.frames_scanned``) and on the later scanned frame: both scans'
    regions, each where :func:`_follow` puts it in that frame (the followed ones recorded in ``scan``,
    for :meth:`~clinrelease.verify.ocr.TextScan.painted_at`). Text that appears or disappears between
    the scans is covered from the scan that saw it. ``fronts(index)``: the outlines in front of text
    on that frame."""
    if prev_frame is None:
        return [list(cur) for _ in between], list(cur)
    n = len(between)
    first = scan.frames_scanned[-1] - n
    ahead, ahead_followed = _follow(prev, [prev_frame, *between, frame], cur, None if fronts is None else lambda k: fronts(first - 1 + k))
    behind, behind_followed = _follow(cur, [frame, *reversed(between), prev_frame], prev, None if fronts is None else lambda k: fronts(first + n - k))
    followed = [Followed(tb, first, quads) for tb, quads in ahead_followed]
    followed += [Followed(tb, first, quads[:n][::-1].copy()) for tb, quads in behind_followed]
    if followed:
        scan.followed[first - 1] = followed
    return [ahead[p] + behind[n - 1 - p] for p in range(n)], list(cur) + ahead[n]


class _LastFrame:
    """``legs`` of the last frame asked for, found once (a scanned frame is cleaned up to
    :data:`SCAN_LOOKS` times)."""

    def __init__(self, legs: LegOutlines) -> None:
        self._legs = legs
        self._frame: np.ndarray | None = None
        self._outlines: Sequence[np.ndarray] = ()

    def __call__(self, frame: np.ndarray) -> Sequence[np.ndarray]:
        if frame is not self._frame:
            self._frame, self._outlines = frame, list(self._legs(frame))
        return self._outlines


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
    frame: np.ndarray,
    index: int,
    previous: list[TextBox],
    read: bool,
    faces: FaceOutlines | None,
    method: str,
    keep: Sequence[FaceOutlines],
    legs: LegOutlines | None = None,
    reference: np.ndarray | None = None,
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
            seen = _cleaned(frame, index, found, method, keep, legs, [] if reference is None else [(reference, found)], faces)
            new = [
                b for b in text_regions(seen, index, previous, read=True)
                if legible(b, LOOK_MIN_SCORE) and _painted_share(b.box, [f for f in found if f.painted]) < LOOK_PAINTED_SHARE
            ]  # fmt: skip
        for b in new:
            b.glyph = lone_glyph(b)
        if faces is not None:
            mark_on_face(new, faces(index), *frame.shape[:2])
        found.extend(new)
        if not any(b.painted for b in new):
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
    legs: LegOutlines | None = None,
) -> Iterator[np.ndarray]:
    """Yield the frames with burned-in text removed, scanning every Nth frame plus the last.

    Every region the detector finds on a scanned frame is blanked, legible or not, except what lies
    on a face. Holds at most ``sample_every`` frames: those between two scanned frames wait until the
    later scan, then get both scans' regions, a moving one where it is in that frame (:func:`_held`).
    Frames with nothing to blank are yielded as they came (not copied).

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
    legs:
        ``legs(frame)`` gives the outlines (pixels) of the legs of the person in the frame
        (:func:`clinrelease.verify.keypoints.leg_outlines`), asked only where a region's pixels
        changed since the scan it is compared with: those changed pixels on the legs are not painted
        (:func:`_moved`). The walking clip's table base read as "XI", and the paint held over it
        took the legs of everyone who walked past (legs AP 0.85). Legible text left on a leg still
        fails verification.
    """
    check_sampling(sample_every)
    scan = scan if scan is not None else TextScan(sample_every)
    keep = [outlines for outlines in (faces, hands) if outlines is not None]

    def fronts(index: int) -> list[np.ndarray]:
        return [outline for outlines in keep for outline in outlines(index)]

    pending: list[tuple[int, np.ndarray]] = []
    prev: list[TextBox] = []
    prev_frame: np.ndarray | None = None
    legs = _LastFrame(legs) if legs is not None else None

    def between(held: np.ndarray, held_index: int, regions: list[TextBox], cur: list[TextBox], cur_frame: np.ndarray) -> np.ndarray:
        scans = [(cur_frame, cur)] + ([(prev_frame, prev)] if prev_frame is not None else [])
        return _cleaned(held, held_index, regions, method, keep, legs, scans, faces)

    def scanned(frame: np.ndarray, index: int) -> list[TextBox]:
        return _scanned(frame, index, prev, read, faces, method, keep, legs, prev_frame)

    def at_scan(frame: np.ndarray, index: int, regions: list[TextBox], cur: list[TextBox]) -> np.ndarray:
        # a scanned frame's regions are compared with the scan before (the first has none)
        return _cleaned(frame, index, regions, method, keep, legs, [] if prev_frame is None else [(prev_frame, cur + prev)], faces)

    index = -1
    for index, frame in enumerate(frames):
        scan.frames = index + 1
        if index % sample_every:
            pending.append((index, frame))
            continue
        cur = scanned(frame, index)
        scan.frames_scanned.append(index)
        scan.found.extend(cur)
        on_held, on_scan = _held(prev, prev_frame, cur, frame, [held for _, held in pending], scan, fronts)
        for (held_index, held), regions in zip(pending, on_held):
            yield between(held, held_index, regions, cur, frame)
        pending.clear()
        yield at_scan(frame, index, on_scan, cur)
        prev, prev_frame = cur, frame
    if pending:  # the last frame was not on the grid: scan it too
        last_index, last = pending[-1]
        cur = scanned(last, last_index)
        scan.frames_scanned.append(last_index)
        scan.found.extend(cur)
        on_held, on_last = _held(prev, prev_frame, cur, last, [held for _, held in pending[:-1]], scan, fronts)
        for (held_index, held), regions in zip(pending, [*on_held, on_last]):
            yield between(held, held_index, regions, cur, last)

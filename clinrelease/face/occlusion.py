"""Hands in front of a face, found in the analysis pass so that the swap leaves them in place.

A sign, a finger-to-nose test or a hand raised to the mouth puts the patient's hand between the
camera and the face. The face mesh still finds the face behind it, and without this stage the swap
paints the surrogate's skin over the fingers: the movement the exam recorded disappears from the
release. mediapipe's hand model (shipped in the mediapipe wheel, run in its tracking mode, ~11 ms a
640x480 frame on one CPU core) gives 21 joint points per hand; the outline kept is their convex hull
widened by :data:`HAND_MARGIN` of the hand's size, because the points are joint centres and fingers
have width, and the wrist and the start of the forearm (:func:`forearm`), which the hand points do
not reach.
"""

from __future__ import annotations

import numpy as np

#: how far the hand outline is pushed out from its joint points, as a fraction of the hand's size
HAND_MARGIN = 0.12
#: the wrist and forearm kept with the hand (mediapipe's points end at the wrist joint, and an arm
#: raised to the mouth crosses the face below it: bird.mkv's wrist was painted over), in palm
#: lengths (wrist to middle knuckle) beyond the wrist, and in palm widths (index to pinky knuckle)
FOREARM_LENGTH = 1.0
FOREARM_WIDTH = 1.3
# mediapipe Hands points
_WRIST, _INDEX_MCP, _MIDDLE_MCP, _PINKY_MCP = 0, 5, 9, 17


def forearm(points: np.ndarray) -> np.ndarray:
    """Four corners of the wrist and forearm beyond a 21-point hand's wrist joint: the palm's width
    (:data:`FOREARM_WIDTH`) and :data:`FOREARM_LENGTH` palm lengths long, away from the fingers."""
    pts = np.asarray(points, np.float64)[:, :2]
    wrist, knuckle = pts[_WRIST], pts[_MIDDLE_MCP]
    palm = float(np.linalg.norm(wrist - knuckle))
    if palm < 1e-6:
        return np.zeros((0, 2), np.float32)
    along = (wrist - knuckle) / palm
    across = np.array([-along[1], along[0]])
    half = 0.5 * FOREARM_WIDTH * max(float(np.linalg.norm(pts[_INDEX_MCP] - pts[_PINKY_MCP])), 0.5 * palm)
    end = wrist + along * FOREARM_LENGTH * palm
    return np.array([wrist + across * half, end + across * half, end - across * half, wrist - across * half], np.float32)


def hand_outline(points: np.ndarray, margin: float = HAND_MARGIN) -> np.ndarray:
    """Convex outline ``(m, 2)`` float32 around a hand's joint points and its wrist
    (:func:`forearm`), widened by ``margin`` of the hand's size."""
    import cv2

    pts = np.asarray(points, np.float32)[:, :2]
    outline = np.concatenate([pts, forearm(pts)]) if len(pts) == 21 else pts
    hull = cv2.convexHull(outline).reshape(-1, 2).astype(np.float64)
    centre = hull.mean(axis=0)
    size = float(np.ptp(pts, axis=0).max())
    away = hull - centre
    length = np.maximum(np.linalg.norm(away, axis=1, keepdims=True), 1e-6)
    return (hull + away / length * margin * size).astype(np.float32)


def hands_mask(points: list[np.ndarray], shape: tuple[int, int], margin: float) -> np.ndarray:
    """Boolean ``(rows, columns)`` mask of the hands' outlines (:func:`hand_outline` with ``margin``)."""
    import cv2

    mask = np.zeros(shape, np.uint8)
    for pts in points:
        cv2.fillPoly(mask, [np.round(hand_outline(pts, margin)).astype(np.int32)], 1)
    return mask > 0


class HandFinder:
    """mediapipe Hands in tracking mode: call :meth:`outlines` on consecutive frames of one video."""

    def __init__(self, max_hands: int = 2, min_confidence: float = 0.5) -> None:
        import mediapipe as mp

        self._hands = mp.solutions.hands.Hands(
            static_image_mode=False,
            max_num_hands=max_hands,
            model_complexity=0,
            min_detection_confidence=min_confidence,
            min_tracking_confidence=min_confidence,
        )

    def points(self, frame: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """``(handedness, (21, 2) joint points in frame pixels)`` of each hand in an RGB uint8 frame."""
        rows, columns = frame.shape[:2]
        found = self._hands.process(np.ascontiguousarray(frame))
        labels = [h.classification[0].label for h in found.multi_handedness or []]
        out = []
        for i, hand in enumerate(found.multi_hand_landmarks or []):
            pts = np.array([(p.x * columns, p.y * rows) for p in hand.landmark], np.float32)
            out.append((labels[i] if i < len(labels) else "?", pts))
        return out

    def outlines(self, frame: np.ndarray) -> list[np.ndarray]:
        """Outlines (frame pixels) of the hands in an RGB uint8 frame."""
        return [hand_outline(pts) for _, pts in self.points(frame)]

    def close(self) -> None:
        self._hands.close()


def overlapping(outlines: list[np.ndarray], box: np.ndarray) -> list[np.ndarray]:
    """The outlines whose bounding box meets the area the swap may change around the face ``box``
    (x0, y0, x1, y1): its warp ring reaches :data:`~clinrelease.face.geometry.RING_SCALE` times the
    face's size from its centre, and a hand beside the chin there was painted over (book.mkv)."""
    from clinrelease.face.geometry import RING_SCALE

    x0, y0, x1, y1 = (float(v) for v in box)
    grow_x, grow_y = (RING_SCALE - 1) / 2 * (x1 - x0), (RING_SCALE - 1) / 2 * (y1 - y0)
    x0, y0, x1, y1 = x0 - grow_x, y0 - grow_y, x1 + grow_x, y1 + grow_y
    return [o for o in outlines if o[:, 0].min() < x1 and o[:, 0].max() > x0 and o[:, 1].min() < y1 and o[:, 1].max() > y0]

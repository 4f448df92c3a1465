"""Hands in front of the face (clinrelease.face.occlusion): the outline the swap leaves alone covers
the hand, its wrist and the start of the forearm, wherever the swap may paint."""

from __future__ import annotations

import numpy as np

from clinrelease.face import occlusion as O


def _upright_hand() -> np.ndarray:
    """21 mediapipe-ordered points of an open hand, fingers up, wrist at (100, 200), palm 50 px."""
    pts = np.zeros((21, 2), np.float32)
    pts[0] = (100, 200)
    for finger, x in enumerate((70, 85, 100, 115, 130)):  # thumb to pinky: knuckle then three joints up
        for joint in range(4):
            pts[1 + 4 * finger + joint] = (x, 150 - 18 * joint + (30 if finger == 0 else 0))
    return pts


def _inside(outline: np.ndarray, point: tuple[float, float]) -> bool:
    import cv2

    return cv2.pointPolygonTest(outline.reshape(-1, 1, 2), point, False) >= 0


def test_the_hand_outline_keeps_the_wrist_and_the_start_of_the_forearm() -> None:
    hand = _upright_hand()
    outline = O.hand_outline(hand)
    assert _inside(outline, (100, 240))  # 0.8 palm lengths below the wrist joint: the forearm
    assert _inside(outline, (85, 205)) and _inside(outline, (115, 205))  # the wrist's width
    assert not _inside(outline, (100, 300))  # the elbow is not the hand
    assert not _inside(outline, (40, 200))  # beside the palm


def test_a_hand_beside_the_chin_outside_the_face_box_is_an_occluder_where_the_swap_reaches() -> None:
    hand = O.hand_outline(_upright_hand())  # x 58-142, y 84-262
    face = np.array([160, 40, 260, 160], np.float32)  # 100 px wide: the swap's ring reaches 30 px past it
    assert len(O.overlapping([hand], face)) == 1
    assert not O.overlapping([hand], face + np.float32([60, 0, 60, 0]))  # 78 px away: out of its reach


def test_bird_hand_at_the_mouth_stays_the_patients_with_its_wrist() -> None:
    """bird.mkv frames 12-43: the signer's fist at the mouth, the wrist and forearm crossing the
    cheek. The pixels of the hand as a separate tracker finds it (its joints' hull with the wrist
    stub, no margin) are the original's in the release: with the joints' hull alone as the outline
    the wrist was painted over (1024 of 93515 hand pixels changed on the sampled frames; 94 now)."""
    from _face_helpers import KEY_A, clip_frames
    from _verify_helpers import require_media

    from clinrelease.face.pipeline import analyze_faces, anonymize_frames
    from clinrelease.face.registry import get_anonymizer

    frames = list(clip_frames(str(require_media("asl/bird.mkv")), 44))[12:]
    analysis = analyze_faces(frames, patient_rule="largest", min_face_px=32, hands=True, prefetch=0)
    swap = get_anonymizer("swap", key=KEY_A, pseudonym="patient-1")
    out = list(anonymize_frames(frames, analysis, patient=swap, bystander=get_anonymizer("blur"), prefetch=0))
    finder = O.HandFinder()
    changed = total = 0
    for frame, released in zip(frames[::2], out[::2]):
        mask = O.hands_mask([p for _, p in finder.points(frame)], frame.shape[:2], 0.0)
        moved = np.abs(frame.astype(int) - released.astype(int)).max(axis=2) > 8
        changed, total = changed + int((moved & mask).sum()), total + int(mask.sum())
    finder.close()
    assert total > 20000
    assert changed / total < 0.004, (changed, total)
    face = analysis.patient.faces[20]
    x0, y0, x1, y1 = face.box.astype(int)
    assert np.abs(out[20][y0:y1, x0:x1].astype(int) - frames[20][y0:y1, x0:x1]).mean() > 5  # the face is still swapped

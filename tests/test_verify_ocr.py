"""Burned-in text: planted text is found, cleaned (fill and inpaint), and verified gone."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from clinrelease.errors import ConfigError
from clinrelease.models import model_path
from clinrelease.verify.checks import ItemReports, Thresholds, decide
from clinrelease.verify.ocr import clean_text, clean_video_text, find_text, scan_text, TextScan

TEXT_ONLY = dict(recognizers={}, body_ap_min=None, face_nme_max=None, leaks_max=None)


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    """scikit-image's astronaut (a registry package, so no shared media needed), 512x512 RGB."""
    return cv2.imread(str(model_path("sample_astronaut")))[:, :, ::-1].copy()


def plant(frame: np.ndarray, text: str = "MRN 123456", at: tuple[int, int] = (20, 40)) -> np.ndarray:
    out = frame.copy()
    cv2.putText(out, text, at, cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2, cv2.LINE_AA)
    return out


def _texts(boxes) -> str:
    return " ".join(b.text for b in boxes)


@pytest.mark.parametrize("method", ["fill", "inpaint"])
def test_planted_text_is_found_and_cleaned(portrait, method):
    frame = plant(portrait)
    boxes = find_text(frame, frame_index=7)
    assert "123456" in _texts(boxes)
    hit = next(b for b in boxes if "123456" in b.text)
    assert hit.frame == 7 and hit.score > 0.8
    x0, y0, x1, y1 = hit.box
    assert x0 < 40 and 10 < y1 < 60  # where cv2.putText drew it
    cleaned = clean_text(frame, boxes, method=method)
    assert "123456" not in _texts(find_text(cleaned))
    # only the boxes changed
    mask = np.zeros(frame.shape[:2], bool)
    for b in boxes:
        mask[max(0, b.box[1] - 4) : b.box[3] + 4, max(0, b.box[0] - 4) : b.box[2] + 4] = True
    assert np.array_equal(cleaned[~mask], frame[~mask])


def test_video_scan_cleans_text_that_appears_between_scans(portrait):
    small = cv2.resize(portrait, (256, 256))
    # text appears at frame 4, between the scans at 0 and 6, and is gone after frame 7 (last = 7)
    frames = [plant(small, "ID 98765", (10, 30)) if 4 <= i <= 7 else small.copy() for i in range(8)]
    scan = TextScan(sample_every=6)
    cleaned = list(clean_video_text(frames, sample_every=6, scan=scan))
    assert len(cleaned) == 8
    assert scan.frames_scanned == [0, 6, 7]
    assert "98765" in _texts(scan.found)
    after = scan_text(cleaned[4:], sample_every=1)  # every frame that had text
    assert after.frames_scanned == [0, 1, 2, 3]
    assert "98765" not in _texts(after.found)
    before = scan_text(frames, sample_every=3)
    assert before.frames_scanned == [0, 3, 6, 7]
    verdict = decide(ItemReports(text=before), Thresholds(**TEXT_ONLY))
    assert not verdict.released and verdict.reasons[0].startswith("burned-in text: 2 text box(es) remain")
    assert decide(ItemReports(text=after), Thresholds(**TEXT_ONLY)).released


def test_bad_method_and_sampling_are_config_errors(portrait):
    with pytest.raises(ConfigError, match="unknown text cleaning method"):
        clean_text(portrait, [], method="smudge")
    with pytest.raises(ConfigError, match="sample_every"):
        scan_text([portrait], sample_every=0)


def test_small_text_is_found_without_upscaling(portrait):
    """The detector sees frames at their own size (never upscaled): 8-pixel captions are still found."""
    from clinrelease.verify.ocr import DET_MAX_SIDE

    assert max(portrait.shape[:2]) <= DET_MAX_SIDE
    frame = portrait.copy()
    cv2.putText(frame, "ID 4711 DOE", (12, 500), cv2.FONT_HERSHEY_PLAIN, 0.8, (255, 255, 255), 1, cv2.LINE_AA)
    assert "4711" in _texts(find_text(frame)).replace(" ", "")


def test_cleaning_blanks_every_detected_region_without_reading(portrait):
    from clinrelease.verify.ocr import detect_text

    small = cv2.resize(portrait, (256, 256))
    frames = [plant(small, "ID 98765", (10, 30)) for _ in range(4)]
    quads = detect_text(frames[0])
    assert len(quads) >= 1 and quads.shape[1:] == (4, 2)
    scan = TextScan(sample_every=2)
    cleaned = list(clean_video_text(frames, sample_every=2, scan=scan, read=False))
    assert scan.frames_scanned == [0, 2, 3]
    assert scan.found and all(b.text == "" and b.score == 0.0 for b in scan.found)  # nothing was read
    for frame, out in zip(frames, cleaned):
        for b in scan.found:
            x0, y0, x1, y1 = b.box
            assert not out[max(0, y0) : y1, max(0, x0) : x1].any()  # filled black
    assert "98765" not in _texts(scan_text(cleaned, sample_every=1).found)


def test_static_overlay_is_read_once_and_textless_frames_pass_untouched(portrait):
    from clinrelease.verify.ocr import TextBox, text_regions

    small = cv2.resize(portrait, (256, 256))
    overlay = plant(small, "ID 98765", (10, 30))
    first = text_regions(overlay, 0)
    hit = next(b for b in first if "98765" in b.text)
    # the same region on a later scan takes the earlier reading instead of being read again
    marked = [TextBox(b.box, f"seen:{b.text}", b.score, 0) for b in first]
    again = text_regions(overlay, 5, marked)
    assert any(b.text == f"seen:{hit.text}" and b.frame == 5 for b in again)
    # a frame with no text is handed on as it came, not copied
    plain = [small.copy() for _ in range(3)]
    out = list(clean_video_text(plain, sample_every=2))
    assert all(o is p for o, p in zip(out, plain))


def test_captions_on_a_small_video_are_cleaned(tmp_path):
    """A 176x144 clip's 8-pixel burned-in name and MRN must be found and blanked (they once survived)."""
    from clinrelease.dicom.video import open_video
    from clinrelease.fixtures import build_dicom_fixture, carphone_path

    planted = build_dicom_fixture(tmp_path / "small.dcm", carphone_path(), "h264", 6)
    frames = list(open_video(planted.path).frames())
    assert max(frames[0].shape[:2]) < 200
    scan = TextScan(3)
    cleaned = list(clean_video_text(frames, sample_every=3, scan=scan))
    assert len(scan.found) >= 2 * len(scan.frames_scanned)  # both caption lines on every scanned frame
    assert scan_text(cleaned, sample_every=1).found == []
    assert any("4815162342" in b.text for b in scan.found)

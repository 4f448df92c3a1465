"""``clinrelease verify`` end to end on real clips: exit codes, figures, JSON, input errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _verify_helpers import paste_donor, read_frames, require_media, t1_donor, write_clip
from clinrelease.cli import app
from clinrelease.verify.decision import checks_for
from clinrelease.verify.reid import detect_analysis

runner = CliRunner()


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    frames = read_frames(require_media("asl/book.mkv"), 20)
    folder = tmp_path_factory.mktemp("verify_cli")
    swapped = paste_donor(frames, detect_analysis(frames, 1), t1_donor(1))
    return {
        "original": write_clip(folder / "original.mp4", frames),
        "copy": write_clip(folder / "copy.mp4", frames, metadata={"comment": "MRN 123456"}),
        "swapped": write_clip(folder / "swapped.mp4", swapped),
        "small": write_clip(folder / "small.mp4", [f[:240, :320] for f in frames]),
    }


def _run(*args: str):
    return runner.invoke(app, ["verify", *args, "--sample-every", "10", "--text-every", "19"])


def test_unanonymized_copy_fails_with_reasons(clips):
    result = _run(str(clips["original"]), str(clips["copy"]), "--phi", "MRN 123456")
    assert result.exit_code == 1, result.output
    assert "re-id (dlib): 2/2 sampled frames still match" in result.output
    assert "re-id (sface): 2/2" in result.output
    assert "PHI leak scan: 1 occurrence(s)" in result.output


def test_swapped_video_passes_as_json(clips):
    result = _run(str(clips["original"]), str(clips["swapped"]), "--phi", "MRN 123456", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["verdict"] == {"released": True, "reasons": [], "details": []}
    # no --profile: basic's checks (the byte scan) plus the recognizers asked for and burned-in text,
    # at the thresholds a profile gets by default; keypoints are reported, not judged
    rows = {c["name"]: (c["op"], c["threshold"]) for c in data["checks"]}
    assert set(rows) == {"dlib_frames_checked", "dlib_match_rate", "sface_frames_checked", "sface_match_rate", "text_boxes", "leaks"}
    assert all(c["passed"] for c in data["checks"])
    reid = data["reports"]["reid"]["results"]
    assert set(reid) == {"dlib", "sface"}
    assert reid["dlib"]["frames_checked"] == 2 and reid["dlib"]["frames_matched"] == 0
    assert reid["dlib"]["worst_similarity"] > 0.6
    assert [s["frame"] for s in reid["sface"]["samples"]] == [0, 10]
    assert data["reports"]["keypoints"]["body_ap"] >= 0.9
    assert data["reports"]["text"]["frames_scanned"] == [0, 19]
    assert data["reports"]["leaks"] == []


def test_single_recognizer_option(clips):
    result = _run(str(clips["original"]), str(clips["copy"]), "--recognizer", "dlib", "--no-keypoints", "--no-text", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert list(data["reports"]["reid"]["results"]) == ["dlib"]
    assert data["reports"]["keypoints"] is None
    assert all("sface" not in r for r in data["verdict"]["reasons"])


def test_input_errors_exit_2(clips, tmp_path):
    missing = _run(str(clips["original"]), str(tmp_path / "nope.mp4"))
    assert missing.exit_code == 2 and "no such file" in missing.output
    mismatch = _run(str(clips["original"]), str(clips["small"]))
    assert mismatch.exit_code == 2 and "differs from the original" in mismatch.output
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    bad = _run(str(clips["original"]), str(junk))
    assert bad.exit_code == 2 and "junk.mp4" in bad.output


def test_checks_from_a_release_profile():
    from clinrelease.profiles import load_profile

    checks = {c.name: c for c in checks_for(load_profile("pd_gait"))}
    assert {"dlib_match_rate", "sface_match_rate", "dlib_frames_checked", "sface_frames_checked"} <= set(checks)
    assert "same person at 0.6" in checks["dlib_match_rate"].label
    assert (checks["legs_ap"].op, checks["legs_ap"].limit) == (">=", 0.95) and "head_ap" not in checks
    assert {c.group for c in checks.values()} == {"header", "frames", "reid", "faces", "keypoints", "realism", "endpoints", "text", "leaks"}
    assert checks["endpoint_cadence_steps_per_min_change"].label == "cadence_steps_per_min change (relative)"
    realism = {name: checks[name].limit for name in ("face_score_ratio", "face_mesh_presence", "corner_lift_abs")}
    assert realism == {"face_score_ratio": 0.9, "face_mesh_presence": 0.95, "corner_lift_abs": 0.06}
    # the mouth opening is judged where the face is the signal, reported elsewhere
    assert "mouth_opening_change_abs" not in checks
    assert {c.name: c.limit for c in checks_for(load_profile("pd_face"))}["mouth_opening_change_abs"] == 0.05
    basic = checks_for(load_profile("basic"))
    assert [c.group for c in basic] == ["header", "frames", "leaks"]


def test_profile_thresholds_decide(clips):
    # "basic" checks only the bytes: the un-anonymized face is reported but does not fail the item
    args = [str(clips["original"]), str(clips["copy"]), "--profile", "basic", "--no-keypoints", "--no-text", "--json"]
    ok = _run(*args)
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["reports"]["reid"]["results"]["dlib"]["frames_matched"] == 2
    leaked = _run(*args, "--phi", "MRN 123456")
    assert leaked.exit_code == 1
    assert json.loads(leaked.stdout)["verdict"]["reasons"][0].startswith("PHI leak scan: 1 occurrence(s)")


def test_verify_with_a_profile_prints_the_clinical_endpoint_table(clips):
    """pd_motor's endpoints on a 20-frame clip (0.67 s, the hand seldom in view): each row names the
    endpoint and its tolerance, a line says why it could not be measured, and an unmeasurable
    endpoint is no reason to fail."""
    result = _run(str(clips["original"]), str(clips["swapped"]), "--profile", "pd_motor", "--no-text")
    assert "clinical endpoints" in result.output
    for name in ("tap_rate_hz", "tremor_frequency_hz"):
        assert name in result.output
    assert "tap_rate_hz (Hz): not measurable, the hand " in result.output
    data = json.loads(_run(str(clips["original"]), str(clips["swapped"]), "--profile", "pd_motor", "--no-text", "--json").stdout)
    rows = {r["name"]: r for r in data["reports"]["endpoints"]["results"]}
    assert rows["tap_rate_hz"]["tolerance"] == "±10%" and rows["tap_rate_hz"]["status"] == "not measurable"
    assert not any(r.startswith("endpoint") for r in data["verdict"]["reasons"]), data["verdict"]["reasons"]

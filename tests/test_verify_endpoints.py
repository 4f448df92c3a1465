"""Clinical endpoints (clinrelease.verify.endpoints): each extractor on a synthetic signal with a known
answer, on a real clip, and a release whose endpoint the anonymizer shifts is quarantined."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clinrelease.verify import endpoints as E
from clinrelease.verify.endpoints import KEPT, LOST, NOT_MEASURABLE, SHIFTED, Measured, Tolerance

FS = 15.0  # pd_motor samples every other frame at 30 fps


def test_a_3hz_sinusoidal_tap_gives_3hz_its_amplitude_and_no_decrement() -> None:
    t = np.arange(0, 6, 1 / 30)
    aperture = 0.2 + 0.5 * (1 + np.sin(2 * np.pi * 3 * t))  # closes to 0.2, opens to 1.2 hand sizes
    got = E.tapping_endpoints(t, aperture)
    assert got["tap_rate_hz"].value == pytest.approx(3.0, abs=0.02)
    assert got["tap_amplitude"].value == pytest.approx(1.0, abs=0.05)
    assert abs(got["tap_decrement"].value) < 0.1
    assert got["tap_hesitations"].value == 0


def test_a_tapping_run_that_shrinks_and_halts_shows_its_decrement_and_hesitation() -> None:
    t = np.arange(0, 8, 1 / FS)
    amplitude = np.linspace(1.0, 0.4, len(t))  # the sequence effect: each tap smaller
    phase = np.where(t < 4, t, np.maximum(t - 0.9, 4))  # a 0.9 s halt at 4 s
    aperture = 0.1 + amplitude * (1 - np.cos(2 * np.pi * 2 * phase)) / 2
    got = E.tapping_endpoints(t, aperture)
    assert got["tap_decrement"].value == pytest.approx(0.45, abs=0.12)
    assert got["tap_hesitations"].value == 1


def test_a_5hz_tremor_gives_5hz_and_its_peak_to_peak_amplitude() -> None:
    t = np.arange(0, 4, 1 / FS)
    wrist = np.c_[320 + 6 * np.sin(2 * np.pi * 5 * t), 240 + 3 * np.sin(2 * np.pi * 5 * t)]
    got = E.tremor_endpoints(t, wrist, hand_size=60.0)
    assert got["tremor_frequency_hz"].value == pytest.approx(5.0, abs=0.25)
    assert got["tremor_amplitude"].value == pytest.approx(2 * np.hypot(6, 3) / 60, rel=0.1)


def _walker(cadence: float, seconds: float = 6.0, step_bh: float = 0.3, swing=(0.2, 0.1), fs: float = FS):
    """Pose points of a figure walking across the frame: 500 px tall, ``cadence`` steps a minute,
    ankles ``step_bh`` body heights apart at each step, wrists swinging ``swing`` body heights."""
    t = np.arange(0, seconds, 1 / fs)
    n, height = len(t), 500.0
    pts = np.zeros((n, 33, 2))
    hip = 100 + 80 * t  # walking to the right
    gait = np.sin(2 * np.pi * cadence / 120 * t)  # one stride is two steps
    pts[:, 0] = np.c_[hip, np.full(n, 50.0)]
    pts[:, 11] = np.c_[hip - 40, np.full(n, 140.0)]
    pts[:, 12] = np.c_[hip + 40, np.full(n, 140.0)]
    pts[:, 15] = np.c_[hip - swing[0] * height / 2 * gait, np.full(n, 300.0)]  # left arm swings against the left leg
    pts[:, 16] = np.c_[hip + swing[1] * height / 2 * gait, np.full(n, 300.0)]
    pts[:, 27] = np.c_[hip + step_bh * height / 2 * gait, np.full(n, 550.0)]
    pts[:, 28] = np.c_[hip - step_bh * height / 2 * gait, np.full(n, 550.0)]
    return t, pts, np.ones((n, 33), bool)


def test_a_walking_figure_gives_its_cadence_stride_and_arm_swing() -> None:
    t, pts, vis = _walker(cadence=108)
    got = E.gait_endpoints(t, pts, vis)
    assert got["cadence_steps_per_min"].value == pytest.approx(108, rel=0.03)
    assert got["step_time_s"].value == pytest.approx(60 / 108, rel=0.05)
    assert got["step_time_cv"].value < 0.08
    assert got["stride_length_bh"].value == pytest.approx(0.6, rel=0.05)
    assert got["arm_swing_amplitude"].value == pytest.approx(0.15, rel=0.1)
    # left swings twice as far as right: |45 - atan(2)| / 90 * 100 = 21.4 %
    assert got["arm_swing_asymmetry"].value == pytest.approx(21.4, abs=2)


def test_blinks_at_known_times_give_the_blink_rate_and_eye_amplitude() -> None:
    t = np.arange(0, 10, 1 / 10)  # pd_face samples every 3rd frame: 10 Hz
    ear = np.full(len(t), 0.30)
    for at in (1.0, 3.5, 6.2, 8.8):  # four blinks of 0.2 s
        ear[(t >= at) & (t < at + 0.2)] = 0.12
    mouth = 0.05 + 0.1 * (t > 5)
    got = E.face_endpoints(t, ear, mouth)
    assert got["blink_rate_per_min"].value == pytest.approx(24.0, rel=0.01)
    assert got["ear_amplitude"].value == pytest.approx(0.18, abs=0.01)
    assert got["mouth_opening_range"].value == pytest.approx(0.1, abs=0.01)
    # a slow closure hovering at the threshold is one blink; a rate over 3 s is not measured
    hover = np.full(len(t), 0.30)
    hover[20:40] = np.where(np.arange(20) % 2, 0.17, 0.19)  # 0.6 x 0.30 = 0.18
    assert E.face_endpoints(t, hover, mouth)["blink_rate_per_min"].value == pytest.approx(6.0)
    short = E.face_endpoints(t[:30], ear[:30], mouth[:30])
    assert short["blink_rate_per_min"].value is None and "needs 10 s" in short["blink_rate_per_min"].reason
    assert short["ear_amplitude"].value is not None


def test_too_few_frames_or_no_hand_is_not_measurable_with_the_reason() -> None:
    t = np.arange(0, 0.5, 1 / FS)
    short = E.tapping_endpoints(t, np.sin(2 * np.pi * 3 * t))
    assert short["tap_rate_hz"].value is None and "needs 1.0 s" in short["tap_rate_hz"].reason
    marks = E.Landmarks(fps=30.0, frames=list(range(0, 60, 2)), pose=[None] * 30, hands=[{}] * 30)
    none = E.measure(marks, ["tap_rate_hz", "tremor_frequency_hz", "cadence_steps_per_min"])
    assert none["tap_rate_hz"].reason == "no hand found in 30 sampled frames"
    assert none["cadence_steps_per_min"].reason.startswith("both ankles and the head found in 0 of 30")


def test_compare_judges_relative_and_absolute_tolerances_and_the_unmeasurable() -> None:
    tol = {"tap_rate_hz": Tolerance("relative", 0.1), "tremor_frequency_hz": Tolerance("absolute", 0.5),
           "tap_amplitude": Tolerance("relative", 0.15), "cadence_steps_per_min": Tolerance("relative", 0.05)}
    original = {"tap_rate_hz": Measured(3.0), "tremor_frequency_hz": Measured(5.0), "tap_amplitude": Measured(1.0),
                "cadence_steps_per_min": Measured(None, "0 step(s) found (needs 3)")}
    released = {"tap_rate_hz": Measured(3.2), "tremor_frequency_hz": Measured(6.0), "tap_amplitude": Measured(None, "no hand"),
                "cadence_steps_per_min": Measured(110.0)}
    by = {r.name: r for r in E.compare(original, released, tol)}
    assert by["tap_rate_hz"].status == KEPT and by["tap_rate_hz"].change == pytest.approx(0.2 / 3)
    assert by["tremor_frequency_hz"].status == SHIFTED and by["tremor_frequency_hz"].change == pytest.approx(1.0)
    assert by["tap_amplitude"].status == LOST
    assert by["cadence_steps_per_min"].status == NOT_MEASURABLE and by["cadence_steps_per_min"].reason == "0 step(s) found (needs 3)"
    report = E.EndpointReport(2, 30, results=list(by.values()))
    reasons = E.endpoint_reasons(report)
    assert len(reasons) == 2
    assert "tremor dominant frequency (tremor_frequency_hz) 5 on the original, 6 released: changed by 1 Hz, tolerance ±0.5" in reasons[0] + reasons[1]


def test_real_clip_motor_endpoints_are_kept_by_itself_and_shifted_when_frames_are_dropped() -> None:
    """again.mkv (ASL sign, hands moving; 77 frames): the hand's tremor-band amplitude is measurable
    (its taps and rhythm are not: signing is neither tapping nor tremor, and the table says so); the
    same frames give the same values, and a release that holds each frame four times (frames
    dropped) shifts or loses them."""
    from _verify_helpers import read_frames, require_media

    from clinrelease.profiles import load_profile

    frames = read_frames(require_media("asl/again.mkv"), 77)
    tol = load_profile("pd_motor").verify.endpoints.judged()
    same = E.verify_endpoints(frames, frames, 30.0, tol, sample_every=2)
    assert same.hand is not None and same.frames_checked == 39
    measured = [r for r in same.results if r.status != NOT_MEASURABLE]
    assert "tremor_amplitude" in {r.name for r in measured}
    unmeasured = {r.name: r.reason for r in same.results if r.status == NOT_MEASURABLE}
    assert all(reason for reason in unmeasured.values())
    assert all(r.status == KEPT and r.difference == 0 for r in measured)
    held = [frames[i - i % 4] for i in range(len(frames))]  # 7.5 fps held at 30: frames dropped
    dropped = E.verify_endpoints(frames, held, 30.0, tol, sample_every=2)
    assert {r.name for r in dropped.results if r.status in (SHIFTED, LOST)} >= {"tremor_amplitude"}
    assert E.endpoint_reasons(dropped)


#: a swap plug-in that also blurs everything outside the face (a hand anonymizer gone too far)
HAND_BLUR = '''
import cv2

from clinrelease.face.registry import get_anonymizer


class HandBlur:
    name = "hand_blur"

    def __init__(self, **params):
        self.swap = get_anonymizer("swap", **params)

    def prepare(self, analysis, track_id):
        self.swap.prepare(analysis, track_id)

    def anonymize_frame(self, frame, faces):
        frame = self.swap.anonymize_frame(frame, faces)
        out = cv2.GaussianBlur(frame, (0, 0), 25)
        for face in faces:
            x0, y0, x1, y1 = (max(0, int(v)) for v in face.box)
            out[y0:y1, x0:x1] = frame[y0:y1, x0:x1]
        return out
'''


def test_a_release_whose_hands_are_blurred_is_quarantined_for_the_lost_tapping_endpoints(tmp_path: Path, monkeypatch) -> None:
    from _release_helpers import make_keys, release_clip_with_plugin

    keys = make_keys(tmp_path / "keys")
    result, item, record = release_clip_with_plugin(tmp_path, monkeypatch, keys, "hand_blur", HAND_BLUR, "HandBlur", frames=60, sample_every=6)
    out = tmp_path / "release"
    assert result.exit_code == 1 and item["status"] == "quarantined"
    table = item["verification"]["endpoints"]
    assert table["tap_rate_hz"]["status"] == LOST and table["tap_rate_hz"]["original"] > 0
    assert any(r.startswith("endpoint: tap rate (tap_rate_hz) measurable on the original, not on the release") for r in record["reasons"])
    failed = {c["name"] for c in record["audit_checks"] if not c["passed"]}
    assert "endpoints_lost" in failed
    html = (out / "report" / "index.html").read_text()
    assert "Clinical endpoints (original vs released)" in html and "tap_rate_hz" in html


def test_walking_towards_the_camera_shows_no_stepping_rhythm_and_is_not_judged() -> None:
    """The shared walking clip (a person walking into a room, 10 fps, frames 80-200 where the whole
    body is in view): side-on gait measures cannot be read from it, and the table says why instead
    of judging noise."""
    from _verify_helpers import read_frames, require_media

    from clinrelease.profiles import load_profile

    frames = read_frames(require_media("one-by-one-person-detection.mp4"), 200)[80:]
    got = E.verify_endpoints(frames, frames, 10.0, load_profile("pd_gait").verify.endpoints.judged(), sample_every=2)
    by = {r.name: r for r in got.results}
    assert by["cadence_steps_per_min"].status == NOT_MEASURABLE
    assert by["cadence_steps_per_min"].reason.startswith("no stepping rhythm")
    assert not got.failing()

"""One verification pass: every check fed from one decode of each video, with the results each check
gives when it walks the videos alone."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from _release_helpers import invoke, make_keys
from _verify_helpers import mask_faces, read_frames, write_clip
from clinrelease.dicom.video import DECODES, open_video
from clinrelease.face.pipeline import analyze_faces, residual_faces
from clinrelease.fixtures import build_mp4_fixture, carphone_path
from clinrelease.verify.keypoints import verify_keypoints
from clinrelease.verify.ocr import scan_text
from clinrelease.verify.pair import verify_pair
from clinrelease.verify.realism import verify_realism
from clinrelease.verify.reid import verify_reid
from clinrelease.verify.walk import ORIGINAL, RELEASED, FrameWalk, WalkPlan, verify_frames

FRAMES = 24


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> tuple[Path, Path]:
    """A real talking-face clip and a copy with its tracked face blacked out."""
    folder = tmp_path_factory.mktemp("walk")
    frames = read_frames(carphone_path(), FRAMES)
    masked = mask_faces(frames, analyze_faces(frames))
    return write_clip(folder / "original.mp4", frames), write_clip(folder / "masked.mp4", masked)


def _decodes(path: Path) -> int:
    return DECODES[str(path.resolve())]


def test_each_check_in_the_walk_reports_what_it_reports_alone(pair):
    original, released = (open_video(p) for p in pair)
    analysis = analyze_faces(original.frames())
    plan = WalkPlan(sample_every=4, recognizers=("dlib", "sface"), residual_faces=True, keypoints=True, realism=True, text_every=5)
    reports, residual, _, seconds = verify_frames(original.frames(), released.frames(), analysis, plan)

    alone_reid = verify_reid(original.frames(), released.frames(), analysis, recognizers=["dlib", "sface"], sample_every=4)
    assert reports.reid.to_dict() == alone_reid.to_dict()
    assert reports.reid.results["dlib"].frames_checked > 0
    assert residual == residual_faces(released.frames(), analysis).frames
    assert reports.keypoints.to_dict() == verify_keypoints(original.frames(), released.frames(), sample_every=4).to_dict()
    assert reports.realism.to_dict() == verify_realism(original.frames(), released.frames(), analysis, sample_every=4).to_dict()
    assert reports.text.to_dict() == scan_text(released.frames(), sample_every=5).to_dict()
    assert {"decode_wait", "reid", "residual_faces", "keypoints", "realism", "text"} <= set(seconds)


def test_verify_pair_decodes_each_video_once_after_the_analysis(pair):
    original, released = pair
    before_original, before_released = _decodes(original), _decodes(released)
    reports, _ = verify_pair(original, released)
    # the face analysis reads the original once; every check then shares one more decode of each
    assert _decodes(original) - before_original == 2
    assert _decodes(released) - before_released == 1
    assert reports.reid is not None and reports.keypoints is not None and reports.text is not None


def test_release_decodes_its_output_once_for_every_check(tmp_path):
    (tmp_path / "in").mkdir()
    clip = build_mp4_fixture(tmp_path / "in" / "visit.mp4", carphone_path(), 16).path
    metadata = tmp_path / "metadata.csv"
    metadata.write_text(f"file,patient_id,patient_name\n{clip.name},MRN-WALK-1,Doe^Jane\n", encoding="utf-8")
    keys = make_keys(tmp_path / "keys")
    DECODES.clear()
    out = tmp_path / "out"
    result = invoke(["run", "--profile", "pd_motor", "--input", str(clip.parent), "--output", str(out), "--keys", str(keys), "--metadata", str(metadata)])
    assert result.exit_code in (0, 1), result.output
    staged = [path for path in DECODES if Path(path).parent.name == "staging"]
    assert len(staged) == 1 and DECODES[staged[0]] == 1
    # analysis, the patient's surrogate screening, anonymize, and the one verification pass (was 8)
    assert DECODES[str(clip.resolve())] <= 4


def test_walk_stops_feeding_a_check_that_stopped_reading(pair):
    seen: list[int] = []

    def first_three(frames):
        for index, frame in enumerate(frames):
            seen.append(index)
            if index == 2:
                return frame.shape

    def count(original, released):
        return sum(1 for _ in zip(original, released, strict=True))

    walk = FrameWalk(open_video(pair[0]).frames(), open_video(pair[1]).frames())
    walk.add("first_three", first_three, sides=(RELEASED,))
    walk.add("count", count)
    results = walk.run()
    assert seen == [0, 1, 2] and results["first_three"] == (144, 176, 3)
    assert results["count"] == FRAMES


def test_videos_of_different_lengths_raise_like_a_check_walking_them_alone(pair, tmp_path):
    shorter = write_clip(tmp_path / "short.mp4", read_frames(pair[1], FRAMES - 3))
    walk = FrameWalk(open_video(pair[0]).frames(), open_video(shorter).frames())
    walk.add("count", lambda o, r: sum(1 for _ in zip(o, r, strict=True)))
    with pytest.raises(ValueError, match="zip"):
        walk.run()


def test_a_failing_check_is_raised_after_the_others_finish(pair):
    def broken(frames):
        for index, _ in enumerate(frames):
            if index == 5:
                raise RuntimeError("model failed on frame 5")

    finished = []
    walk = FrameWalk(None, open_video(pair[1]).frames())
    walk.add("broken", broken, sides=(RELEASED,))
    walk.add("mean", lambda frames: finished.append(float(np.mean([f.mean() for f in frames]))), sides=(RELEASED,))
    with pytest.raises(RuntimeError, match="frame 5"):
        walk.run()
    assert len(finished) == 1  # the other check saw every frame


@pytest.mark.parametrize(
    "uses, lanes",
    [(({"pose"}, {"pose"}), 2), ((None, ()), 2), (((), None), 2), (({"pose"}, {"recognizers"}), 1)],
    ids=["one model", "undeclared", "undeclared second", "one lane"],
)
def test_checks_that_share_a_model_take_turns(pair, uses, lanes):
    """mediapipe graphs and the recognizers are not thread-safe: two checks that call one of them,
    or a check that does not say what it calls, never work at the same moment; with one lane no
    two checks do."""
    lock = threading.Lock()
    overlaps = []

    def busy(frames):
        for frame in frames:
            if not lock.acquire(blocking=False):
                overlaps.append(True)
                continue
            try:
                np.sort(frame.ravel())  # releases the GIL: another check could run now if the walk let it
            finally:
                lock.release()

    walk = FrameWalk(open_video(pair[0]).frames(), open_video(pair[1]).frames(), lanes=lanes)
    walk.add("a", busy, sides=(ORIGINAL,), uses=uses[0])
    walk.add("b", busy, sides=(RELEASED,), uses=uses[1])
    walk.run()
    assert overlaps == []


def test_checks_of_different_models_work_on_a_frame_at_the_same_moment(pair):
    """On two cores a verification pass ran one check at a time, one core idle: checks that share
    no model now work side by side, each still seeing every frame once."""
    meet = threading.Barrier(2, timeout=20)
    seen = {}

    def together(name):
        def check(frames):
            count = 0
            for index, _ in enumerate(frames):
                if index < 3:
                    meet.wait()  # both checks hold frame ``index`` at once, or this times out
                count += 1
            seen[name] = count
            return count
        return check

    walk = FrameWalk(open_video(pair[0]).frames(), open_video(pair[1]).frames(), lanes=2)
    walk.add("pose", together("pose"), sides=(ORIGINAL,), uses={"pose"})
    walk.add("recognizers", together("recognizers"), sides=(RELEASED,), uses={"recognizers"})
    walk.add("mesh", lambda o, r: sum(1 for _ in zip(o, r)), uses={"face mesh", "pose"})
    assert walk.run() == {"pose": FRAMES, "recognizers": FRAMES, "mesh": FRAMES}
    assert all(walk.seconds[name] > 0 for name in ("pose", "recognizers", "mesh"))


def test_walk_holds_a_bounded_window_of_frames_however_long_the_video():
    import weakref

    alive = [0]
    peak = [0]

    def frames(count: int):
        for _ in range(count):
            frame = np.zeros((48, 64, 3), np.uint8)
            alive[0] += 1
            peak[0] = max(peak[0], alive[0])
            weakref.finalize(frame, lambda: alive.__setitem__(0, alive[0] - 1))
            yield frame

    def pairs(original, released):
        return sum(1 for _ in zip(original, released, strict=True))

    def one_side(released):
        return sum(1 for _ in released)

    peaks = []
    for count in (60, 600):
        peak[0] = 0
        walk = FrameWalk(frames(count), frames(count))
        walk.add("pairs", pairs)
        walk.add("released", one_side, sides=(RELEASED,))
        walk.add("original", one_side, sides=(ORIGINAL,))
        assert walk.run() == {"pairs": count, "released": count, "original": count}
        peaks.append(peak[0])
    # however long the video, each side holds at most the decoder's queue (4) and the frame it is
    # decoding, the frame being handed out, and per check the frame it reads and the one it last read
    # (how many of these are alive at one moment depends on thread scheduling, so the bound is the
    # sum, not a figure one run happened to show); a walk that kept frames would hold hundreds
    bound = 2 * (4 + 1 + 1 + 2 * 3)
    assert max(peaks) <= bound, peaks


def test_a_face_the_anonymizer_missed_is_caught_in_the_one_pass(pair):
    from clinrelease.face.base import FaceAnalysis

    original = open_video(pair[0])
    info = original.info
    # an anonymizer that tracked nothing released the face as it was
    missed = FaceAnalysis(frames=info.frames, rows=info.rows, columns=info.columns, tracks=[])
    plan = WalkPlan(sample_every=4, residual_faces=True)
    _, residual, _, _ = verify_frames(original.frames(), open_video(pair[0]).frames(), missed, plan)
    assert residual == list(range(FRAMES))


def test_face_endpoints_are_measured_from_the_realism_series_of_the_same_pass(pair):
    from clinrelease.verify.endpoints import Tolerance

    original, released = (open_video(p) for p in pair)
    analysis = analyze_faces(original.frames())
    tolerances = {"ear_amplitude": Tolerance("absolute", 0.05), "mouth_opening_range": Tolerance("absolute", 0.05)}
    plan = WalkPlan(sample_every=2, realism=True, endpoints=tolerances, fps=original.info.fps)
    reports, _, _, _ = verify_frames(original.frames(), released.frames(), analysis, plan)
    assert reports.realism is not None and reports.endpoints is not None
    assert {r.name for r in reports.endpoints.results} == set(tolerances)

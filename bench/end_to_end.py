"""Whole-command speed: ``clinrelease run`` (every check of the profile on) against ``deface``'s blur.

    .venv/bin/python bench/end_to_end.py [--repeat 3] [--cases asl,walking] [--max-frames N]
                                         [--code DIR] [--out bench/out]

Cases, built once in a temp folder from ../shared/media:

- ``asl``: the six 640x480 ASL clips concatenated into one MP4 (419 frames), ``--profile pd_motor``;
- ``walking``: the 768x432 walking clip (1394 frames at 10 fps), ``--profile pd_gait``;
- ``clips``: the six ASL clips as six items of one run, ``--profile pd_motor`` (per-clip verdicts
  and figures, to compare two checkouts' decisions).

Per case and repeat, alternating: ``clinrelease run`` into a fresh output folder (a new process, as a
user runs it; the key folder is made once beforehand), then ``deface IN -o OUT`` (its defaults) in a
fresh process. Wall times (and the processes' CPU seconds, steadier on a loaded machine) are
medians of ``--repeat``; the ratio is clinrelease over deface, so below 1.0 is faster than the blur.
``--keys DIR`` runs every checkout under one key (each run gets a fresh copy without stored
surrogate choices, so the surrogate screening runs as in a first release); ``--inputs DIR`` keeps
the built cases for another invocation. The per-stage table is the item record's ``stage_seconds`` of
the last run (analysis, surrogate choice, anonymize + encode, each check of the verification walk
with the decode that fed it, leak scan), in seconds and ms per frame.

``--code DIR`` runs another checkout's package (e.g. a snapshot of the commit before a change), so
before/after come from the same machine in one session. deface runs from bench/.venv-deface
(created with pip when missing, as bench/pipeline.py does). Writes bench/out/end_to_end.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"
sys.path.insert(0, str(ROOT / "bench"))

from header_only import run_timed  # noqa: E402  (one timer for every bench that runs a command)

CASES = {"asl": "pd_motor", "walking": "pd_gait", "clips": "pd_motor"}


def build_case(name: str, folder: Path, max_frames: int) -> Path:
    """The case's input video in its own folder (``clinrelease run`` releases a whole folder)."""
    sys.path.insert(0, str(ROOT))
    from clinrelease.dicom.video import open_video
    from clinrelease.fixtures import write_mp4

    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{name}.mp4"
    if name == "clips":
        rows = []
        for clip in sorted((MEDIA / "asl").glob("*.mkv")):
            frames = open_video(clip).frames()
            write_mp4(folder / f"{clip.stem}.mp4", itertools.islice(frames, max_frames) if max_frames else frames, open_video(clip).info.fps, {})
            rows.append(f"{clip.stem}.mp4,BENCH-{clip.stem},Doe^Jane,19500101,F,20240101,Motor exam\n")
        (folder.parent / f"{name}.csv").write_text("file,patient_id,patient_name,birth_date,sex,study_date,study_description\n" + "".join(rows))
        return folder
    if name == "asl":
        sources = [open_video(p) for p in sorted((MEDIA / "asl").glob("*.mkv"))]
        frames = itertools.chain.from_iterable(s.frames() for s in sources)
        fps = sources[0].info.fps
    else:
        source = open_video(MEDIA / "one-by-one-person-detection.mp4")
        frames, fps = source.frames(), source.info.fps
    if max_frames:
        frames = itertools.islice(frames, max_frames)
    write_mp4(out, frames, fps, {})
    # a plain video needs its patient's row; the metadata table sits outside the input folder
    (folder.parent / f"{name}.csv").write_text(
        f"file,patient_id,patient_name,birth_date,sex,study_date,study_description\n{out.name},BENCH-{name},Doe^Jane,19500101,F,20240101,Motor exam\n"
    )
    return out


def fresh_keys(keys: Path, tmp: Path) -> Path:
    """A copy of the key folder without its stored surrogate choices: every run screens the
    patient's surrogate as a first release does (the same key gives the same choice)."""
    copy = tmp / f"keys-{time.monotonic_ns()}"
    shutil.copytree(keys, copy)
    (copy / "surrogate-choices.json").unlink(missing_ok=True)
    return copy


def run_clinrelease(code: Path, case_dir: Path, profile: str, keys: Path, out: Path) -> tuple[float, float, dict]:
    env = dict(os.environ, PYTHONPATH=str(code), PYTHONWARNINGS="ignore")
    cmd = [sys.executable, "-m", "clinrelease", "run", "--profile", profile, "--input", str(case_dir), "--output", str(out), "--keys", str(keys),
           "--metadata", str(case_dir.parent / f"{case_dir.name}.csv")]  # fmt: skip
    # cwd: ``python -m`` puts the working folder first on sys.path, which must be the checkout timed
    seconds, cpu, done = run_timed(cmd, env, code, ok=(0, 1))
    records = sorted((json.loads(p.read_text()) for p in (out.parent / f"{out.name}.work" / "records").glob("*.json")), key=lambda r: r["input"])
    items = {
        r["input"]: {"status": r.get("status"), "reasons": r.get("reasons"), "verification": r.get("verification", {})}
        for r in records
    }  # fmt: skip
    stages: dict[str, float] = {}
    for r in records:
        for k, v in r.get("stage_seconds", {}).items():
            stages[k] = stages.get(k, 0.0) + v
    frames = sum(r.get("verification", {}).get("frames") or 0 for r in records)
    status = ", ".join(f"{Path(k).stem}: {v['status']}" for k, v in items.items()) if len(items) > 1 else next(iter(items.values()))["status"]
    return seconds, cpu, {"exit": done.returncode, "status": status, "items": items, "stage_seconds": stages, "frames": frames}


def run_deface(deface: Path, clip: Path, out: Path) -> tuple[float, float]:
    seconds, cpu, _ = run_timed([str(deface), str(clip), "-o", str(out)], dict(os.environ, PYTHONWARNINGS="ignore"))
    return seconds, cpu


def main() -> None:
    from pipeline import ensure_deface  # bench/pipeline.py: the deface environment

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cases", default="asl,walking")
    parser.add_argument("--max-frames", type=int, default=0, help="cap on each case's frames (0: all)")
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose clinrelease package runs")
    parser.add_argument("--no-deface", action="store_true")
    parser.add_argument("--keys", type=Path, help="key folder to use (made when missing), so two checkouts run under one key")
    parser.add_argument("--inputs", type=Path, help="folder to build the cases in and reuse (default: a temp folder)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args()
    if not MEDIA.is_dir():
        sys.exit(f"bench/end_to_end.py needs the shared media folder {MEDIA}, which is absent")
    python = None if args.no_deface else ensure_deface()
    deface = None if python is None else python.parent / "deface"
    env = dict(os.environ, PYTHONPATH=str(args.code))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        keys = args.keys or tmp / "keys"
        if not (keys / "release.key").exists():
            subprocess.run([sys.executable, "-m", "clinrelease", "keys", "init", str(keys)], check=True, env=env, capture_output=True, cwd=args.code)
        inputs = args.inputs or tmp / "in"
        for name in [c for c in args.cases.split(",") if c]:
            case_dir = inputs / name
            if not (inputs / f"{name}.csv").exists():
                build_case(name, case_dir, args.max_frames)
            clip = case_dir / f"{name}.mp4"
            row: dict = {"case": name, "profile": CASES[name], "clinrelease_s": [], "clinrelease_cpu_s": [], "deface_s": [], "deface_cpu_s": []}
            for i in range(args.repeat):
                seconds, cpu, facts = run_clinrelease(args.code, case_dir, CASES[name], fresh_keys(keys, tmp), tmp / f"rel-{name}-{i}")
                row["clinrelease_s"].append(seconds)
                row["clinrelease_cpu_s"].append(cpu)
                row.update(facts)
                if deface is not None and name != "clips":
                    wall, cpu = run_deface(deface, clip, tmp / f"deface-{name}-{i}.mp4")
                    row["deface_s"].append(wall)
                    row["deface_cpu_s"].append(cpu)
                print(f"{name} run {i + 1}: clinrelease {seconds:.1f} s, deface {row['deface_s'][-1] if row['deface_s'] else float('nan'):.1f} s", file=sys.stderr)
            rows.append(row)
    print_tables(rows, args)
    args.out.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "load_avg": os.getloadavg(), "code": str(args.code)}
    path = args.out / "end_to_end.json"
    path.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2, default=str))
    print(f"\nwritten {path}; machine: {machine}")


def print_tables(rows: list[dict], args: argparse.Namespace) -> None:
    print(f"\n## Whole command, wall seconds (median of {args.repeat}, alternating; code: {args.code})\n")
    print("| case | profile | frames | verdict | clinrelease s (cpu s) | deface s (cpu s) | ratio wall | ratio cpu |")
    print("|---|---|---|---|---|---|---|---|")
    nan = float("nan")
    for r in rows:
        c, cc = statistics.median(r["clinrelease_s"]), statistics.median(r["clinrelease_cpu_s"])
        d = statistics.median(r["deface_s"]) if r["deface_s"] else nan
        dc = statistics.median(r["deface_cpu_s"]) if r["deface_cpu_s"] else nan
        print(f"| {r['case']} | {r['profile']} | {r['frames']} | {r['status']} | {c:.1f} ({cc:.1f}) | {d:.1f} ({dc:.1f}) | {c / d:.2f} | {cc / dc:.2f} |")
    print("\n## Stages of the last run (seconds; ms per frame)\n")
    print("| case | stage | s | ms/frame |")
    print("|---|---|---|---|")
    for r in rows:
        n = r["frames"] or 1
        for stage, s in r["stage_seconds"].items():
            print(f"| {r['case']} | {stage} | {s:.2f} | {1000 * s / n:.1f} |")


if __name__ == "__main__":
    main()

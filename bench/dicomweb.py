"""A release over DICOMweb (two real Orthanc servers on loopback) against the same release from a folder.

Builds DICOM video studies with planted PHI from the carphone clip and every clip of ../shared/media
(each its own study, plus a CT in the first), uploads them to a "clinical" Orthanc, then releases
them ``--repeats`` times each way into fresh folders, interleaved: from the folder (``run_release``),
and from clinical to a "research" Orthanc (``run_pacs_release``: WADO-RS staging, the same release,
audit verify, STOW-RS). Prints the median wall time of each, the overhead of DICOMweb, and where the
DICOMweb run spends it (fetch, release, push); writes JSON to bench/out/dicomweb.json. Needs Debian's
``orthanc`` and ``orthanc-dicomweb`` (``make install`` as root).

    .venv/bin/python bench/dicomweb.py [--profile basic] [--frames 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pydicom

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from _orthanc_helpers import PASSWORD, Orthanc, servers_file  # noqa: E402

from clinrelease.crypto.keys import init_keys  # noqa: E402
from clinrelease.fixtures import Identity, build_dicom_fixture, carphone_path, shared_media_dir  # noqa: E402
from clinrelease.pacs.flow import run_pacs_release  # noqa: E402
from clinrelease.pacs.servers import resolve_server  # noqa: E402
from clinrelease.release import ReleaseOptions, run_release  # noqa: E402


def build_input(folder: Path, frames: int) -> list[Path]:
    """One DICOM video study per clip (burned-in text off, so ``basic`` releases them)."""
    folder.mkdir(parents=True)
    identity = Identity()
    clips = [carphone_path()]
    media = shared_media_dir(ROOT)
    if media is not None:
        clips += sorted(p for p in media.rglob("*") if p.suffix.lower() in {".mkv", ".mp4"})
    files = []
    for n, clip in enumerate(clips):
        path = build_dicom_fixture(folder / f"exam{n}.dcm", clip, "h264", frames, identity=identity, burn_text=False).path
        ds = pydicom.dcmread(path)
        ds.BurnedInAnnotation = "NO"
        ds.save_as(path)
        files.append(path)
    return files


def fresh(out: Path) -> None:
    for path in (out, out.with_name(out.name + ".work"), out.with_name(out.name + ".quarantine"), out.with_name(out.name + ".pacs")):
        shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="basic")
    parser.add_argument("--frames", type=int, default=60, help="frames per clip")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-dicomweb-") as tmp:
        root = Path(tmp)
        files = build_input(root / "in", args.frames)
        keys = root / "keys"
        init_keys(keys)
        clinical, research = Orthanc(root, "clinical"), Orthanc(root, "research")
        try:
            clinical.start()
            research.start()
            for path in files:
                clinical.upload(path)
            studies = sorted({str(pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID) for p in files})
            os.environ["TEST_DICOMWEB_PASSWORD"] = PASSWORD
            cfg = servers_file(root, clinical=clinical, research=research)
            source, target = resolve_server("clinical", "source", cfg), resolve_server("research", "target", cfg)
            folder_s: list[float] = []
            web_s: list[float] = []
            stages: dict[str, list[float]] = {"fetch": [], "release": [], "push": []}
            for _ in range(args.repeats):  # interleaved, so that load from other processes hits both alike
                fresh(root / "out")
                opts = ReleaseOptions(profile=args.profile, inputs=[root / "in"], output=root / "out", keys_dir=keys)
                started = time.perf_counter()
                run_release(opts)
                folder_s.append(time.perf_counter() - started)

                fresh(root / "out")
                for instance in research.instances():
                    research.delete(instance)
                marks: dict[str, float] = {}  # when each stage was first reported
                last: dict[str, float] = {}  # and last

                def progress(stage: str, done: int, total: int, detail: str) -> None:
                    marks.setdefault(stage, time.perf_counter())
                    last[stage] = time.perf_counter()

                opts = ReleaseOptions(profile=args.profile, inputs=[], output=root / "out", keys_dir=keys)
                started = time.perf_counter()
                result = run_pacs_release(opts, source, target, studies, {}, progress=progress)
                ended = time.perf_counter()
                web_s.append(ended - started)
                assert result.push is not None and result.push.pushed == len(files)
                stages["fetch"].append(last["fetch"] - started)
                stages["release"].append(marks["push"] - last["fetch"])
                stages["push"].append(marks["done"] - marks["push"])
        finally:
            clinical.terminate()
            research.terminate()
            clinical.stop()
            research.stop()
    folder_m, web_m = statistics.median(folder_s), statistics.median(web_s)
    table = {
        "profile": args.profile,
        "studies": len(files),
        "frames": args.frames,
        "repeats": args.repeats,
        "folder_s": folder_m,
        "dicomweb_s": web_m,
        "overhead_s": web_m - folder_m,
        "overhead_ratio": web_m / folder_m,
        "dicomweb_stages_s": {k: statistics.median(v) for k, v in stages.items()},
    }
    print(f"profile {args.profile}, {len(files)} studies of {args.frames} frames, {args.repeats} repeats (median)")
    print(f"{'release from':>14} {'median s':>9} {'vs folder':>10}")
    print(f"{'folder':>14} {folder_m:>9.2f} {1:>9.2f}x")
    print(f"{'DICOMweb':>14} {web_m:>9.2f} {web_m / folder_m:>9.2f}x")
    print("DICOMweb stages (median s): " + ", ".join(f"{k} {v:.2f}" for k, v in table["dicomweb_stages_s"].items())
          + " (release includes merge, signing and audit verify)")  # fmt: skip
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "dicomweb.json").write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()

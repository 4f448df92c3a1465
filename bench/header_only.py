"""Header-only release, whole command: many small objects against the pydicom read+write floor.

    .venv/bin/python bench/header_only.py [--objects 600] [--patients 7] [--repeat 3] [--code DIR] [--before DIR] [--profile-top 25]

Builds ``--objects`` distinct objects from pydicom's CT_small.dcm (``--patients`` patients, three
studies each, new UIDs, names and IDs per object) in a temp folder, then times, alternating, median
of ``--repeat``, each as a fresh process the way a user runs it (wall seconds, and CPU seconds,
which a loaded machine disturbs less):

- ``floor``: ``python -c`` that reads and writes every file with pydicom (dcmread + dcmwrite);
- ``clinrelease``: ``clinrelease run --profile basic`` (discovery, de-identification, residual
  check, leak scan, records, audit chain, manifests, report, signing) into a fresh output folder,
  and the same with ``--workers 2`` (``--workers``: how many; 1 leaves the row out);
- ``dicognito`` (``python -m dicognito -o OUT IN``) and ``dicom-anonymizer`` (``dicom-anonymizer IN
  OUT``; it reads one folder without recursing, so it gets the same files linked into one flat
  folder), whole commands from the peers' own environment (``bench/.venv-peers``, made by
  ``bench/deid.py``'s pins when missing; ``--no-peers`` leaves them out).

Each timed checkout's package is byte-compiled first, as ``pip install`` leaves an installed one (the
peers' and pydicom's are): with ``PYTHONDONTWRITEBYTECODE`` set, a source checkout is otherwise
compiled again by every run.

Writes bench/out/header_only.json (every run's wall and CPU seconds). Every run must leave one output file per object (clinrelease: the released DICOM files under
``data/``), or the bench stops: a tool that fails quietly would look fast.

``--profile-top N`` then
runs the release once more in this process under cProfile and prints the N functions with the most
cumulative time, which says where the remaining time goes. ``--code DIR`` runs another checkout's
package (a snapshot before a change) for before/after from one session; ``--before DIR`` adds that
checkout's ``clinrelease run`` as one more row of the same run (alternating with the others), which is
how a before/after is compared on a loaded machine.
"""

from __future__ import annotations

import argparse
import compileall
import cProfile
import io
import json
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FLOOR = r"""
import sys, pathlib, pydicom
src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
for i, path in enumerate(sorted(src.rglob("*.dcm"))):
    pydicom.dcmwrite(out / f"{i}.dcm", pydicom.dcmread(path))
"""


def build_objects(folder: Path, objects: int, patients: int) -> None:
    import pydicom
    import pydicom.data.download
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    pydicom.data.download._SIMULATE_NETWORK_OUTAGE = True
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    studies = {(p, s): (generate_uid(), generate_uid()) for p in range(patients) for s in range(3)}
    for i in range(objects):
        p, s = i % patients, (i // patients) % 3
        ds = template.copy()
        ds.PatientID = f"MRN-{7000 + p}"
        ds.PatientName = f"Patient{p}^Given{p}"
        ds.PatientBirthDate = f"19{40 + p}0{1 + s}15"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = studies[(p, s)]
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i
        ds.AccessionNumber = f"ACC{p}{s}"
        target = folder / f"patient{p}" / f"study{s}" / f"{i:05d}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(target, enforce_file_format=True)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_timed(cmd: list[str], env: dict[str, str], cwd: Path | None = None, ok: tuple[int, ...] = (0,)) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall and CPU seconds of one process, and the process (``cwd``: ``python -m`` puts it first
    on sys.path); an exit status outside ``ok`` raises."""
    start, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    seconds, cpu = time.perf_counter() - start, _children_cpu() - cpu
    if done.returncode not in ok:
        raise RuntimeError(f"{cmd[:4]} failed ({done.returncode}): {done.stderr[-1500:]}")
    return seconds, cpu, done


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one process that must succeed."""
    return run_timed(cmd, env, cwd)[:2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=600)
    parser.add_argument("--patients", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--code", type=Path, default=ROOT)
    parser.add_argument("--profile-top", type=int, default=0)
    parser.add_argument("--before", type=Path, default=None, help="another checkout timed in the same run, as a row of its own")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--workers", type=int, default=2, help="also time clinrelease with this many worker processes (1: not)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=str(args.code), PYTHONWARNINGS="ignore")
    for code in {args.code, args.before} - {None}:
        compileall.compile_dir(str(code / "clinrelease"), quiet=1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build_objects(tmp / "in", args.objects, args.patients)
        keys = tmp / "keys"
        subprocess.run([sys.executable, "-m", "clinrelease", "keys", "init", str(keys)], check=True, env=env, capture_output=True, cwd=args.code)
        tools: dict[str, list[str]] = {
            "pydicom read+write floor": [sys.executable, "-c", FLOOR, str(tmp / "in")],
            "clinrelease run --profile basic": [sys.executable, "-m", "clinrelease", "run", "--profile", "basic",
                                                "--input", str(tmp / "in"), "--keys", str(keys), "--output"],
        }  # fmt: skip
        code_of = {}
        if args.before is not None:
            before = f"clinrelease run --profile basic (before: {args.before})"
            tools[before], code_of[before] = tools["clinrelease run --profile basic"], args.before
        if args.workers > 1:
            tools[f"clinrelease run --profile basic --workers {args.workers}"] = [
                *tools["clinrelease run --profile basic"][:-1], "--workers", str(args.workers), "--output"]  # fmt: skip
        if not args.no_peers:
            sys.path.insert(0, str(ROOT / "bench"))
            from deid import ensure_peers

            peer = ensure_peers()
            tools["dicognito (whole command)"] = [str(peer), "-m", "dicognito", "--quiet", str(tmp / "in"), "-o"]
            flat = tmp / "flat"
            flat.mkdir()
            for path in sorted((tmp / "in").rglob("*.dcm")):
                os.link(path, flat / path.name)
            tools["dicom-anonymizer (whole command)"] = [str(peer.parent / "dicom-anonymizer"), str(flat)]
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in tools}
        for i in range(args.repeat):
            for n, (name, cmd) in enumerate(tools.items()):
                out = tmp / f"out{n}-{i}"
                if "dicom-anonymizer" in name:
                    out.mkdir()  # it refuses an output folder that is not there
                code = code_of.get(name, args.code)
                times[name].append(timed([*cmd, str(out)], dict(env, PYTHONPATH=str(code)), code))
                written = sum(1 for p in (out / "data" if (out / "data").is_dir() else out).rglob("*") if p.is_file())
                if written != args.objects:
                    raise SystemExit(f"{name} wrote {written} files for {args.objects} objects")
            print(f"run {i + 1}: " + ", ".join(f"{name.split()[0]} {t[-1][0]:.2f} s" for name, t in times.items()), file=sys.stderr)
        f = statistics.median(w for w, _ in times["pydicom read+write floor"])
        fc = statistics.median(c for _, c in times["pydicom read+write floor"])
        print(f"\n## {args.objects} objects, {args.patients} patients x 3 studies (CT_small), whole command, median of {args.repeat}\n")
        print("| tool | wall s | cpu s | objects/s (wall) | x floor (wall) | x floor (cpu) |")
        print("|---|---|---|---|---|---|")
        for name, runs in times.items():
            w, c = statistics.median(t for t, _ in runs), statistics.median(c for _, c in runs)
            print(f"| {name} | {w:.2f} | {c:.2f} | {args.objects / w:.0f} | {w / f:.2f} | {c / fc:.2f} |")
        machine = {"cpus": os.cpu_count(), "load_avg": os.getloadavg(), "code": str(args.code)}
        print(f"\nmachine: {os.cpu_count()} cpus, load {os.getloadavg()}; code: {args.code}")
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "header_only.json").write_text(json.dumps({
            "machine": machine, "objects": args.objects, "patients": args.patients, "repeat": args.repeat,
            "runs": {name: [{"wall_s": w, "cpu_s": c} for w, c in runs] for name, runs in times.items()},
        }, indent=2))  # fmt: skip
        if args.profile_top:
            sys.path.insert(0, str(args.code))
            from clinrelease.cli import app

            profiler = cProfile.Profile()
            profiler.enable()
            try:
                app(["run", "--profile", "basic", "--input", str(tmp / "in"), "--output", str(tmp / "profiled"), "--keys", str(keys), "--json"])
            except SystemExit:
                pass
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(args.profile_top)
            print(out.getvalue())


if __name__ == "__main__":
    main()

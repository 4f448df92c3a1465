"""Benchmark: header de-identification speed and what each tool leaves behind.

Compares, on the same files in one run:

* ``floor``: pydicom read + write (no de-identification), the lower bound;
* ``clinrelease``: Basic Profile + Clean Pixel Data marker (:class:`clinrelease.dicom.deid.Deidentifier`),
  read + de-identify + write;
* ``dicognito`` and ``dicom-anonymizer``: their defaults, installed in ``bench/.venv-peers``
  (created here when missing; pip pins below) so they never touch the project's environment.

Files: every DICOM file of the deid-data package (zipped cine loops extracted) and every readable
image file of pydicom's test files and pydicom-data. Each pass of a tool over all files runs in its
own subprocess (imports not timed); the tools take turns for ``--repeat`` rounds, and the table
shows the median files/s and the ratios of the median wall-clock and CPU times to the floor's. A ratio near or below 1.00 is
possible: de-identified outputs drop private and removed elements, so there is less to write than
the floor's unchanged copy (and the floor fails on one pydicom test file, SC_rgb_jpeg.dcm, whose
Image Type pydicom cannot re-encode, so it skips that write). Then
every tool's outputs are scanned with clinrelease's residual-PHI check against the Basic Profile:
original values of attributes the profile removes/replaces that are still there, identifying
strings of the patient, and private elements left.

Run:  .venv/bin/python bench/deid.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PEERS_VENV = HERE / ".venv-peers"
PEER_PINS = ["dicognito==0.19.0", "dicom-anonymizer==2.1.0", "pydicom==3.0.2"]
KEY = bytes(range(32))

# ------------------------------------------------------------------------------- worker side


def _tool(name: str):
    """A function ds -> ds (de-identified) for a tool; runs inside the worker process."""
    if name == "floor":
        return lambda ds: ds
    if name == "clinrelease":
        from clinrelease.dicom.deid import Deidentifier

        # Clean Pixel Data declared so the burned-in ultrasound files are processed, not
        # quarantined (skipping them would flatter the timing); the header work is the same
        d = Deidentifier(["clean_pixel_data"], KEY)
        return lambda ds: d.deidentify(ds, pixels_cleaned=True).dataset
    if name == "dicognito":
        from dicognito.anonymizer import Anonymizer

        a = Anonymizer(seed="bench")

        def run(ds):
            a.anonymize(ds)
            return ds

        return run
    if name == "dicom-anonymizer":
        from dicomanonymizer import anonymize_dataset

        def run(ds):
            anonymize_dataset(ds)
            return ds

        return run
    raise SystemExit(f"unknown tool {name}")


def worker(name: str, files: list[str], out_dir: Path, repeat: int) -> dict:
    """Time read + de-identify + write over all files, ``repeat`` times; keep the last outputs."""
    import pydicom

    warnings.simplefilter("ignore")
    fn = _tool(name)
    times, cpu, failures = [], [], 0
    for _ in range(repeat):
        failures = 0
        start, start_cpu = time.perf_counter(), time.process_time()
        for i, path in enumerate(files):
            try:
                ds = fn(pydicom.dcmread(path))
                pydicom.dcmwrite(out_dir / f"{i}.dcm", ds)  # the same writer for every tool
            except Exception:  # a tool that fails on a file counts the failure, not the time saved
                failures += 1
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {"tool": name, "times": times, "cpu": cpu, "failures": failures}


# ------------------------------------------------------------------------------- driver side


def ensure_peers() -> Path:
    """The peers' venv python, creating the venv with pinned peers if missing."""
    python = PEERS_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_PINS], check=True)
    return python


def corpus(folder: Path) -> list[str]:
    """Paths of the benchmark files (zip members extracted into ``folder``)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from _deid_helpers import deid_data_files, pydicom_image_files

    return [str(cf.materialize(folder)) for cf in deid_data_files() + pydicom_image_files()]


def leftovers(files: list[str], out_dir: Path) -> dict:
    """Residual listed values, identifying strings and private elements in a tool's outputs."""
    import pydicom

    from clinrelease.dicom.deid import Deidentifier
    from clinrelease.dicom.residual import residual_phi
    from clinrelease.errors import ClinReleaseError

    basic = Deidentifier(["clean_pixel_data"], KEY)
    values = strings = private = 0
    for i, path in enumerate(files):
        out = out_dir / f"{i}.dcm"
        if not out.exists():
            continue
        original = pydicom.dcmread(path)
        try:
            reference = basic.deidentify(original)
        except ClinReleaseError:
            continue
        output = pydicom.dcmread(out, force=True)
        findings = residual_phi(original, output, reference)
        values += sum(f.kind == "residual-value" for f in findings)
        strings += sum(f.kind == "identifying-string" for f in findings)
        private += sum(1 for e in output.iterall() if e.tag.is_private)
    return {"residual_values": values, "identifying_strings": strings, "private_elements": private}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--files", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        files = json.loads(Path(args.files).read_text())
        print(json.dumps(worker(args.worker, files, Path(args.out), args.repeat)))
        return

    warnings.simplefilter("ignore")
    import pydicom.data.download

    pydicom.data.download._SIMULATE_NETWORK_OUTAGE = True
    peers_python = ensure_peers()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        files = corpus(tmp / "in")
        size_mb = sum(os.path.getsize(f) for f in files) / 1e6
        list_file = tmp / "files.json"
        list_file.write_text(json.dumps(files))
        tools = (("floor", sys.executable), ("clinrelease", sys.executable),
                 ("dicognito", peers_python), ("dicom-anonymizer", peers_python))
        results = {tool: {"times": [], "cpu": [], "failures": 0} for tool, _ in tools}
        # round-robin over the tools, one pass each per round, so that load from other
        # processes on a shared machine hits every tool alike
        for _ in range(args.repeat):
            for tool, python in tools:
                out = tmp / tool
                out.mkdir(exist_ok=True)
                proc = subprocess.run(
                    [str(python), __file__, "--worker", tool, "--files", str(list_file),
                     "--out", str(out), "--repeat", "1"],
                    capture_output=True, text=True, check=True, cwd=ROOT,
                )
                run = json.loads(proc.stdout.strip().splitlines()[-1])
                results[tool]["times"] += run["times"]
                results[tool]["cpu"] += run["cpu"]
                results[tool]["failures"] = run["failures"]
        for tool, _ in tools[1:]:
            results[tool].update(leftovers(files, tmp / tool))
        floor = statistics.median(results["floor"]["times"])
        floor_cpu = statistics.median(results["floor"]["cpu"])
        print(f"{len(files)} files, {size_mb:.0f} MB, median of {args.repeat} runs, one process each")
        # wall time is what a user waits for; CPU time of the worker is steadier when other
        # processes load the machine, so both ratios are shown
        print(f"{'tool':<17}{'files/s':>9}{'x floor':>9}{'x cpu':>7}{'failed':>8}{'residual':>10}"
              f"{'id-str':>8}{'private':>9}")
        for tool, r in results.items():
            t, c = statistics.median(r["times"]), statistics.median(r["cpu"])
            extra = (f"{r['residual_values']:>10}{r['identifying_strings']:>8}{r['private_elements']:>9}"
                     if tool != "floor" else f"{'-':>10}{'-':>8}{'-':>9}")
            print(f"{tool:<17}{len(files) / t:>9.1f}{t / floor:>9.2f}{c / floor_cpu:>7.2f}"
                  f"{r['failures']:>8}{extra}")


if __name__ == "__main__":
    main()

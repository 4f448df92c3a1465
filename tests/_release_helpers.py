"""Shared inputs and helpers for the release orchestrator and `clinrelease run` tests.

The mixed input is built once per test session from real media: a DICOM H.264 video fixture of the
carphone clip (Burned In Annotation YES, so the header-only ``basic`` profile must quarantine it),
plain MP4 files (carphone, and every clip of ../shared/media when it is present) named by a
metadata CSV, DICOM files from the deid-data package, a sidecar note, and a planted clinical CSV.
Clips are cut to a few frames so that a ``basic`` release of the whole set takes seconds.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import shutil
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from typer.testing import CliRunner

from clinrelease.cli import app
from clinrelease.crypto.keys import init_keys
from clinrelease.fixtures import Identity, build_dicom_fixture, build_mp4_fixture, carphone_path

#: ../shared/media beside the clone (absent in a user's fresh clone)
SHARED_MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
#: the deid-data files in the mixed input (small ones; two CTs and one photographed cookie)
DEID_DATA_FILES = ("humans/ctbrain1.dcm", "dicom-cookies/image1.dcm", "dicom-cookies/image2.dcm")
#: frames per clip: enough for the encoders and checks, few enough for a fast suite
FRAMES = 12
#: the MP4 whose file name carries the patient's surname (must be withheld from released reports)
PHI_NAMED_MP4 = "Whitmore_visit2.mp4"


@dataclass(frozen=True)
class ReleaseInput:
    """A built input folder and the files that go with it."""

    root: Path
    folder: Path
    metadata: Path
    clinical: Path
    identity: Identity
    dicom_video: Path
    mp4s: list[Path] = field(default_factory=list)
    deid_data: list[Path] = field(default_factory=list)

    def run_args(self, profile: str, output: Path, keys: Path, *extra: str) -> list[str]:
        """``clinrelease run`` arguments over the whole input."""
        return [
            "run", "--profile", profile, "--input", str(self.folder), "--output", str(output),
            "--keys", str(keys), "--metadata", str(self.metadata), "--clinical", str(self.clinical), *extra,
        ]  # fmt: skip


def deid_data_dir() -> Path:
    """The data folder of the installed deid-data package (a ``test`` extra)."""
    spec = importlib.util.find_spec("deid_data")
    assert spec is not None and spec.submodule_search_locations, "deid-data is installed with the test extra"
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def shared_clips() -> list[Path]:
    """Every clip of ../shared/media (empty where it is absent)."""
    if not SHARED_MEDIA.is_dir():
        return []
    return sorted(p for p in SHARED_MEDIA.rglob("*") if p.suffix.lower() in {".mkv", ".mp4"})


def build_release_input(root: Path, frames: int = FRAMES) -> ReleaseInput:
    """Write the mixed input under ``root/in`` with its metadata and clinical tables beside it."""
    folder = root / "in"
    (folder / "deid").mkdir(parents=True, exist_ok=True)
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    identity = Identity()
    dicom_video = build_dicom_fixture(folder / "exam1.dcm", carphone_path(), "h264", frames, identity=identity).path
    mp4s = [build_mp4_fixture(folder / PHI_NAMED_MP4, carphone_path(), frames, identity=identity).path]
    # a second carphone cut (other frames, so other bytes) stands in for a second patient's visit
    mp4s.append(build_mp4_fixture(folder / "videos" / "visit3.mp4", carphone_path(), frames + 6, identity=identity).path)
    for clip in shared_clips():
        mp4s.append(build_mp4_fixture(folder / "videos" / f"shared_{clip.stem}.mp4", clip, frames, identity=identity).path)
    deid = []
    for name in DEID_DATA_FILES:
        target = folder / "deid" / name.replace("/", "_")
        shutil.copyfile(deid_data_dir() / name, target)
        deid.append(target)
    (folder / "deid" / "README.txt").write_text("sidecar note, not an item\n", encoding="utf-8")
    metadata = root / "metadata.csv"
    with open(metadata, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "patient_id", "patient_name", "birth_date", "sex", "study_date", "study_description"])
        for mp4 in mp4s:
            rel = mp4.relative_to(folder).as_posix()
            writer.writerow([rel, identity.patient_id, identity.patient_name, identity.birth_date, "F", "20230912", "Gait exam"])
    clinical = root / "clinical.csv"
    with open(clinical, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["patient_id", "visit_date", "birth_date", "age", "sex", "updrs_part3", "clinician_notes"])
        writer.writerow([identity.patient_id, "2023-04-11", "1952-03-17", "71", "F", "24", f"{identity.display_name} walked unaided"])
        writer.writerow(["MRN-OTHER-0001", "2023-05-02", "1948-11-30", "74", "M", "31", "freezing at turns"])
    return ReleaseInput(root, folder, metadata, clinical, identity, dicom_video, mp4s, deid)


def make_keys(folder: Path) -> Path:
    """A key folder made by the product's own ``keys init``."""
    init_keys(folder)
    return folder


def invoke(args: list[str], env: dict[str, str] | None = None):
    """Run the CLI in-process; fail on a traceback (every error must be a clean message)."""
    result = CliRunner().invoke(app, args, env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def json_result(result) -> dict:
    """The ``--json`` document a command printed."""
    return json.loads(result.stdout)


def data_digests(output: Path) -> dict[str, str]:
    """SHA-256 of every file under OUT/data, by release-relative path."""
    return {
        p.relative_to(output).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((output / "data").rglob("*"))
        if p.is_file()
    }


def manifest_data_lines(output: Path) -> list[str]:
    """The manifest lines that list released data files."""
    lines = (output / "manifest-sha256.txt").read_text(encoding="utf-8").splitlines()
    return sorted(line for line in lines if line.split(None, 1)[1].startswith("data/"))


def summary(output: Path) -> dict:
    """OUT/report/summary.json."""
    return json.loads((output / "report" / "summary.json").read_text(encoding="utf-8"))


def records(output: Path) -> list[dict]:
    """The per-item records of a release's work folder."""
    work = output.with_name(output.name + ".work") / "records"
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(work.glob("*.json"))]


def released_header(output: Path, relpath: str) -> pydicom.Dataset:
    """The header of a released file."""
    return pydicom.dcmread(output / relpath, stop_before_pixels=True)


@contextmanager
def anonymizer_plugin(folder: Path, monkeypatch, module: str, source: str, entries: dict[str, str]):
    """Install a third-party anonymizer as a package would: ``module`` on ``sys.path`` and a dist-info
    whose entry points (name -> attribute) are in the ``clinrelease.anonymizers`` group."""
    (folder / f"{module}.py").write_text(source)
    dist = folder / f"{module}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {module}:{attr}\n" for name, attr in entries.items())
    (dist / "entry_points.txt").write_text("[clinrelease.anonymizers]\n" + lines)
    monkeypatch.syspath_prepend(str(folder))
    try:
        yield
    finally:
        sys.modules.pop(module, None)


def release_clip_with_plugin(
    tmp_path: Path, monkeypatch, keys: Path, module: str, source: str, cls: str, *, frames: int, sample_every: int, video: Path | None = None
):
    """Release ``frames`` frames of ``video`` (the shared again.mkv by default) under pd_motor with the
    plug-in anonymizer ``module:cls``; returns the CLI result, the summary's item and the site's record."""
    from _verify_helpers import require_media

    folder = tmp_path / "in"
    build_dicom_fixture(folder / "exam.dcm", video or require_media("asl/again.mkv"), "h264", frames, identity=Identity())
    profile = tmp_path / f"{module}.yaml"
    profile.write_text(f"name: {module}\nextends: pd_motor\nanonymizer: {{name: {module}}}\nverify: {{sample_every: {sample_every}, ocr: {{enabled: false}}}}\n")
    out = tmp_path / "release"
    with anonymizer_plugin(tmp_path, monkeypatch, module, source, {module: cls}):
        result = invoke(["run", "-p", str(profile), "-i", str(folder), "-o", str(out), "-k", str(keys), "--json"])
    item = summary(out)["items"][0]
    return result, item, records(out)[0]

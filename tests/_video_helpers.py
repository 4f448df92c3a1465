"""Shared helpers for the video I/O, inspect and fixture tests."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest

import pydicom.data.download

pydicom.data.download._SIMULATE_NETWORK_OUTAGE = True

SHARED_MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
BENCH = Path(__file__).resolve().parents[1] / "bench"
#: frames per fixture: short enough for speed, long enough for GOP structure and B-frames
FIXTURE_FRAMES = 12


def pydicom_data_file(name: str) -> Path:
    """A file from the pydicom-data package (installed by the test extra), or skip."""
    import importlib.util

    spec = importlib.util.find_spec("data_store")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("pydicom-data is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / name
    if not path.is_file():
        pytest.skip(f"pydicom-data has no {name}")
    return path


def shared_clips() -> list[Path]:
    """The ASL clips in ../shared/media (empty where the folder is absent)."""
    return sorted((SHARED_MEDIA / "asl").glob("*.mkv")) if SHARED_MEDIA.is_dir() else []


def needs_shared_media() -> None:
    if not SHARED_MEDIA.is_dir():
        pytest.skip(f"shared media folder {SHARED_MEDIA} is not present (a fresh clone without ../shared)")


def needs_dciodvfy() -> str:
    tool = shutil.which("dciodvfy")
    if tool is None:
        pytest.skip("dciodvfy is not installed (apt-get install dicom3tools)")
    return tool


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images or stacks, in dB."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def first_frames(source: Path, count: int) -> list[np.ndarray]:
    from clinrelease.dicom.video import open_video

    return list(itertools.islice(open_video(source).frames(), count))

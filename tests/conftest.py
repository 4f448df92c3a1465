"""Shared test set-up: offline pydicom, the shared media folder, and markers.

The tests are laid out like the package (tests/dicom, tests/face, tests/verify, tests/release, ...)
and stay at this root where their module is top-level (items, lock, profiles, report, ...). The
folders have no ``__init__.py``: pytest's default import mode puts this folder on ``sys.path`` (so
``from _release_helpers import ...`` works from every folder), and a test file's name must therefore
be unique across the folders (pytest stops with "import file mismatch" otherwise).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# pydicom 3 tries to download missing test files even offline; this machine has no internet.
import pydicom.data.download

pydicom.data.download._SIMULATE_NETWORK_OUTAGE = True

os.environ.setdefault("OMP_NUM_THREADS", "1")

#: ../shared/media beside the clone (CI and developers have it; a user's fresh clone may not)
SHARED_MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"


def shared_clip(name: str) -> Path:
    """A clip from ../shared/media, or skip the test with the reason."""
    path = SHARED_MEDIA / name
    if not path.is_file():
        pytest.skip(f"shared media {path} is not present (a fresh clone without ../shared)")
    return path


@pytest.fixture
def shared_media() -> Path:
    if not SHARED_MEDIA.is_dir():
        pytest.skip(f"shared media folder {SHARED_MEDIA} is not present")
    return SHARED_MEDIA

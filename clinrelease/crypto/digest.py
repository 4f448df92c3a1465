"""File digests, read in blocks so that long videos never sit in memory whole."""

from __future__ import annotations

import hashlib
from pathlib import Path

_BLOCK = 1024 * 1024


def sha256_file(path: str | Path) -> str:
    """SHA-256 (lowercase hex) of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()

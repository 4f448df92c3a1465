"""BagIt-style manifests of a release (RFC 8493 layout, ``sha256sum -c`` compatible).

``OUT/manifest-sha256.txt`` lists every *payload* file of the release (everything except the tag
files below) as ``<sha256>  <relative path>``; ``OUT/tagmanifest-sha256.txt`` lists the tag files
(``bagit.txt``, the manifest, ``audit/*``). Both check with ``cd OUT && sha256sum -c FILE``. The
release keeps its own top-level layout (``data/``, ``clinical/``, ``report/``) rather than moving
everything under ``data/``, hence "BagIt-style".
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from clinrelease.crypto.digest import sha256_file
from clinrelease.errors import InputError
from clinrelease.files import write_atomic

MANIFEST = "manifest-sha256.txt"
TAGMANIFEST = "tagmanifest-sha256.txt"
BAGIT = "bagit.txt"
AUDIT_DIR = "audit"
#: top-level names that are tag files, not payload
TAG_NAMES = frozenset({MANIFEST, TAGMANIFEST, BAGIT, "bag-info.txt", AUDIT_DIR})


def _relpath(root: Path, path: Path) -> str:
    rel = path.relative_to(root).as_posix()
    if "\n" in rel or "\r" in rel:
        raise InputError("a released file name contains a line break", path)
    return rel


def payload_files(out_dir: str | Path) -> list[str]:
    """Relative POSIX paths of every payload file under ``out_dir``, sorted.

    Hidden temporary files (``.*.partial``) count too: a release must not hold any. Symbolic
    links are reported as payload so that verification flags them.
    """
    root = Path(out_dir)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == root:
            dirnames[:] = [d for d in dirnames if d not in TAG_NAMES]
            filenames = [f for f in filenames if f not in TAG_NAMES]
        dirnames.sort()
        for name in filenames:
            found.append(_relpath(root, here / name))
    return sorted(found, key=lambda p: p.encode("utf-8"))


def tag_files(out_dir: str | Path) -> list[str]:
    """Relative paths of the tag files a tag manifest covers (bagit.txt, manifest, audit/*)."""
    root = Path(out_dir)
    names = [n for n in (BAGIT, MANIFEST) if (root / n).is_file()]
    audit = root / AUDIT_DIR
    if audit.is_dir():
        names += sorted(_relpath(root, p) for p in audit.rglob("*") if p.is_file())
    return names


def _write_lines(path: Path, lines: Iterable[str]) -> Path:
    return write_atomic(path, "".join(lines))


def write_manifest(out_dir: str | Path, files: Iterable[tuple[str, str]] | None = None) -> Path:
    """Write ``bagit.txt`` and ``manifest-sha256.txt`` for the release; returns the manifest path.

    Parameters
    ----------
    out_dir:
        The release folder.
    files:
        ``(relative path, sha256 hex)`` pairs; default: hash every payload file on disk.
    """
    root = Path(out_dir)
    entries = sorted(files, key=lambda f: f[0].encode("utf-8")) if files is not None else [
        (rel, sha256_file(root / rel)) for rel in payload_files(root)
    ]
    _write_lines(root / BAGIT, ["BagIt-Version: 1.0\n", "Tag-File-Character-Encoding: UTF-8\n"])
    return _write_lines(root / MANIFEST, [f"{digest}  {rel}\n" for rel, digest in entries])


def write_tagmanifest(out_dir: str | Path) -> Path:
    """Write ``tagmanifest-sha256.txt`` over the tag files present now; returns its path."""
    root = Path(out_dir)
    return _write_lines(root / TAGMANIFEST, [f"{sha256_file(root / rel)}  {rel}\n" for rel in tag_files(root)])


def read_manifest(path: str | Path) -> tuple[dict[str, str], list[str]]:
    """Parse a manifest: ``({relative path: sha256}, problems)``."""
    entries: dict[str, str] = {}
    problems: list[str] = []
    for number, line in enumerate(Path(path).read_text("utf-8").splitlines(), start=1):
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest) or not rel:
            problems.append(f"{Path(path).name} line {number} is not '<sha256>  <path>'")
            continue
        if rel in entries:
            problems.append(f"{Path(path).name} lists {rel} twice")
        entries[rel] = digest
    return entries, problems

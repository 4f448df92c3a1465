"""The folders of one release, and what makes a folder a release.

Where things go::

    OUT/                      the release: nothing else may be in it (RELEASE_NAMES)
      data/...                released DICOM, paths from pseudonyms and UIDs
      clinical/...            released clinical tables
      report/index.html       the QA report; report/summary.json
      audit/                  released audit log, signed in-toto statement
      manifest-sha256.txt     BagIt-style manifest (+ tagmanifest-sha256.txt, bagit.txt)
    OUT.quarantine/ITEM/      what failed, with reasons.json (outside the release)
    OUT.work/                 the site's working state: staging, per-item records, internal log,
      ready/                  verified outputs waiting for the merge
      next/                   the next release, built by the merge, then swapped in for OUT
      release.lock            the release lock (clinrelease.lock)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinrelease.crypto.kdf import derive_hex
from clinrelease.errors import ConfigError, StorageError

if TYPE_CHECKING:
    from clinrelease.release.record import ItemRecord

#: what a release folder may hold at its top level (README "release/ holds"); anything else is refused
RELEASE_NAMES = frozenset({"data", "clinical", "report", "audit", "manifest-sha256.txt", "tagmanifest-sha256.txt", "bagit.txt"})


@dataclass(frozen=True)
class ReleasePaths:
    """The folders of one release."""

    output: Path
    quarantine: Path
    work: Path

    @classmethod
    def for_output(cls, output: Path, quarantine: Path | None = None, work: Path | None = None) -> ReleasePaths:
        output = output.resolve()
        return cls(
            output=output,
            quarantine=(quarantine or output.with_name(output.name + ".quarantine")).resolve(),
            work=(work or output.with_name(output.name + ".work")).resolve(),
        )

    @property
    def staging(self) -> Path:
        return self.work / "staging"

    @property
    def ready(self) -> Path:
        """Verified outputs waiting for the merge, under their release paths (``ready/data/...``)."""
        return self.work / "ready"

    @property
    def next(self) -> Path:
        """Where the merge builds the next release before swapping it in for OUT."""
        return self.work / "next"

    @property
    def records(self) -> Path:
        return self.work / "records"

    @property
    def visuals(self) -> Path:
        return self.work / "visuals"

    def make(self) -> None:
        """Create the work folders (OUT itself appears at the first merge, whole)."""
        for folder in (self.staging, self.records, self.visuals, self.ready):
            folder.mkdir(parents=True, exist_ok=True)
        self.output.parent.mkdir(parents=True, exist_ok=True)
        if self.output.exists() and not self.output.is_dir():
            raise ConfigError("the output must be a release folder, and this is a file", self.output)
        # the next release is hard-linked together in WORK and renamed into place: one filesystem
        where = self.output if self.output.exists() else self.output.parent
        if os.stat(self.work).st_dev != os.stat(where).st_dev:
            raise ConfigError(
                f"the work folder {self.work} is on another filesystem than the release folder (or the release "
                "folder is a mount point): the release is swapped in by a rename; put --work beside the output",
                self.output,
            )

    def released_file(self, record: ItemRecord) -> Path | None:
        """Where a released record's file is now: waiting in ready/, or in OUT; None when in neither."""
        for root in (self.ready, self.output):
            path = root / record.output
            if path.is_file():
                return path
        return None


def release_key_id(release_key: bytes) -> str:
    """A keyed fingerprint of the release key: tells two keys apart, reveals nothing of either."""
    return derive_hex(release_key, "release-key-id", "", 16)


def check_release_key(previous: dict[str, Any] | None, release_key: bytes, paths: ReleasePaths) -> None:
    """Refuse to continue a release made with another release key: its pseudonyms would mix two keys'."""
    recorded = (previous or {}).get("release_key_id")
    if recorded and recorded != release_key_id(release_key):
        raise ConfigError(
            f"this release was made with another release key (key id {recorded}; this key folder's is "
            f"{release_key_id(release_key)}): one release cannot hold pseudonyms of two keys. Run with the "
            "release's own key folder, or into a new output folder",
            paths.output,
        )


@contextmanager
def storage_errors(folder: Path) -> Iterator[None]:
    """Turn an OS error into :class:`StorageError` naming its path, else ``folder`` (exit code 5)."""
    try:
        yield
    except OSError as exc:
        raise StorageError.from_os_error(exc, folder) from None


def not_started(paths: ReleasePaths) -> ConfigError:
    return ConfigError(f"no release was started here: {paths.work / 'release.json'} is missing; run `clinrelease run` first", paths.output)

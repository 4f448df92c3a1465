"""A release's identity: a random nonce drawn once per release, and the release id derived from it.

The release id used to be HMAC(release key, profile digest), so every release made with the same
keys and profile had the same id: one release's signed audit folder was indistinguishable from
another's, and their escrows shared one vault folder (shredding one shredded both). Now each release
folder draws a 128-bit nonce the first time it is run (``WORK/release-nonce``), every later run,
shard and merge of that folder reuses it, and the id is HMAC(release key, profile digest, nonce).
The nonce is written into ``release_start`` and the signed statement.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path

from clinrelease.crypto.kdf import derive_hex
from clinrelease.errors import ConfigError

NONCE_FILE = "release-nonce"
_NONCE = re.compile(r"[0-9a-f]{32}")


def release_nonce(work: str | Path) -> str:
    """The nonce of the release whose work folder is ``work``: read it, or draw and store it once.

    Shards started at the same moment agree: the file is created exclusively, and a reader that
    finds it before its writer finished waits for the 32 hex characters.
    """
    path = Path(work) / NONCE_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_hex(16) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    for _ in range(100):
        text = path.read_text("ascii", errors="replace").strip()
        if _NONCE.fullmatch(text):
            return text
        time.sleep(0.02)
    raise ConfigError(f"not a release nonce (32 hex characters): {text[:40]!r}; the work folder was edited", path)


def derive_release_id(release_key: bytes, profile_digest: str, nonce: str) -> str:
    """The release id: 24 hex characters of HMAC(release key, "release-id" || profile digest || nonce)."""
    return derive_hex(release_key, "release-id", f"{profile_digest}:{nonce}", 24)

"""The release lock: one run (or merge) at a time per release, shards side by side.

The lock is ``fcntl.flock`` on ``WORK/release.lock`` (the work folder, outside the release). The
kernel drops a flock when its holder dies, so a lock left by a killed run (a dead pid in the file)
is simply taken over. A whole run and a merge take it exclusively; ``run --shard i/N`` takes it
shared, since shards of one release run side by side on purpose. The file names its last holder
(pid, host, command, start time) so that a refused run can say who holds it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from clinrelease.errors import LockedError

LOCK_NAME = "release.lock"


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {info['pid']} on host {info['host']} ({info['what']}, since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (no holder recorded)"


@contextmanager
def release_lock(work: Path, what: str, shared: bool = False) -> Iterator[Path]:
    """Hold the release lock of the work folder ``work`` while the block runs.

    Parameters
    ----------
    work:
        The release's work folder (created when missing).
    what:
        What the holder does (``run``, ``merge``, ``run --shard 0/2``), recorded in the lock file.
    shared:
        Take the lock shared (shards) rather than exclusive.

    Raises
    ------
    LockedError
        Another process holds the lock in a conflicting mode; raised at once, never waited for.
    """
    work.mkdir(parents=True, exist_ok=True)
    path = work / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(
                f"another run is writing this release: the lock is held by {_holder(path)}; "
                "wait for it to finish (a lock whose process has died is taken over by the next run)",
                path,
            ) from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "what": what, "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the flock

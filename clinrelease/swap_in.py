"""Putting a new release state in place of the old one in one step.

A release is rebuilt beside the old one (in the work folder, released files hard-linked, so nothing
is copied) and then exchanged with it: ``renameat2(RENAME_EXCHANGE)`` swaps the two folders in one
atomic step on Linux, so a reader (or a crash) sees either the whole old release or the whole new
one. Where the call is missing, two renames do it, with a moment in between when the release
folder is absent (never a mix of the two).
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import stat
from pathlib import Path

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders atomically; False where the system cannot (then nothing changed)."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(b))


def swap_in(new: Path, target: Path, previous: Path) -> None:
    """Put folder ``new`` at ``target``; the old ``target`` (if any) is removed.

    ``previous`` is a free path on the same filesystem, used only where the atomic exchange is not
    available. ``target`` keeps its permission bits.
    """
    if not target.exists():
        os.rename(new, target)
        return
    os.chmod(new, stat.S_IMODE(target.stat().st_mode))
    if _exchange(new, target):
        shutil.rmtree(new)  # now the old release
        return
    shutil.rmtree(previous, ignore_errors=True)
    os.rename(target, previous)
    os.rename(new, target)
    shutil.rmtree(previous)

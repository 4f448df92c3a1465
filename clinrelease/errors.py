"""The project's error types.

Every error a user can cause (bad input, bad configuration, a missing model) is a
:class:`ClinReleaseError` whose message names the file and says what to do. The CLI turns
these into a one-line message and an exit code; anything else is a bug and keeps its traceback.

The exit codes, decided here only (README lists them):

* 0: everything was released (or the command did what was asked);
* 1: something was quarantined, or a verification failed;
* 2: a usage or input error; nothing was done;
* 3: some inputs could not be read: they are item errors in the summary and report, the rest of
  the batch was released;
* 4: a vault entry does not belong to the released file (``reverse``);
* 5: an OS or storage error (full disk, read-only or missing folder): the release is left as it
  was before the command;
* 6: another run holds the release's lock; nothing was done.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

EXIT_OK = 0
EXIT_QUARANTINED = 1
EXIT_USAGE = 2
EXIT_ITEM_ERRORS = 3
EXIT_VAULT_ENTRY = 4
EXIT_STORAGE = 5
EXIT_LOCKED = 6
EXIT_SERVER = 7

#: OS errors that say the storage, not one input, is at fault: the run stops instead of going on
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


class ClinReleaseError(Exception):
    """Base class of every error clinrelease raises on purpose.

    Parameters
    ----------
    message:
        What went wrong and, where possible, what to do about it.
    path:
        The file or folder the problem is about, when there is one.
    """

    #: process exit code the CLI uses for this error
    exit_code: int = EXIT_USAGE

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class InputError(ClinReleaseError):
    """An input file cannot be read or is not what it claims to be (exit code 2)."""


class ConfigError(ClinReleaseError):
    """A profile, key folder or command-line option is wrong (exit code 2)."""


class MissingModelError(ConfigError):
    """A model file that must come from an installed package or a configured folder is absent."""


class VerificationError(ClinReleaseError):
    """An output failed a verification or policy check (exit code 1)."""

    exit_code = EXIT_QUARANTINED


class StorageError(ClinReleaseError):
    """An OS error on a path the tool writes or reads (full disk, read-only folder) (exit code 5)."""

    exit_code = EXIT_STORAGE

    @classmethod
    def from_os_error(cls, exc: OSError, folder: str | Path | None = None) -> StorageError:
        """A message naming the path and the OS's reason, e.g. ``OUT.work/records: No space left on device``.

        ``folder`` is named when the error carries no file name (a failed ``write`` on an open file).
        """
        named = exc.filename if exc.filename is not None else folder
        reason = (exc.strerror or os.strerror(exc.errno)) if exc.errno else str(exc)
        hint = " (free some space, then run the same command again)" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        return cls(f"{reason}{hint}", os.fsdecode(named) if named is not None else None)


class LockedError(ClinReleaseError):
    """Another run holds the release's lock (exit code 6)."""

    exit_code = EXIT_LOCKED


class ServerError(ClinReleaseError):
    """A PACS or archive server could not be reached, refused us, or broke off (exit code 7)."""

    exit_code = EXIT_SERVER

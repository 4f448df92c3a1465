"""The project's error types.

Every error a user can cause (bad input, bad configuration, a missing model) is a
:class:`ClinReleaseError` whose message names the file and says what to do. The CLI turns
these into a one-line message and an exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


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
    exit_code: int = 2

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

    exit_code = 1


class ServerError(ClinReleaseError):
    """A PACS or archive server could not be reached, refused us, or broke off (exit code 3)."""

    exit_code = 3

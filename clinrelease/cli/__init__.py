"""The ``clinrelease`` command line. Only this package knows about the terminal."""

from __future__ import annotations

from clinrelease.cli import (  # noqa: F401 - each module registers its commands on the shared apps
    audit_cmd,
    inspect_cmd,
    keys_cmd,
    pacs_cmd,
    pool_cmd,
    profiles_cmd,
    reverse_cmd,
    run_cmd,
    swap_cmd,
    verify_cmd,
)
from clinrelease.cli.app import app

__all__ = ["app"]

"""The ``clinrelease`` command line. Only this package knows about the terminal."""

from __future__ import annotations

import importlib

from clinrelease.cli.app import app

# Each module registers its commands on the shared Typer apps when imported.
_COMMAND_MODULES = [
    "inspect_cmd",
    "run_cmd",
    "profiles_cmd",
    "keys_cmd",
    "audit_cmd",
    "reverse_cmd",
    "verify_cmd",
    "swap_cmd",
]
for _name in _COMMAND_MODULES:
    try:
        importlib.import_module(f"clinrelease.cli.{_name}")
    except ModuleNotFoundError as _exc:  # a command module not written yet
        if _exc.name != f"clinrelease.cli.{_name}":
            raise

__all__ = ["app"]

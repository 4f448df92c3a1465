"""What every command shares: error handling and exit codes, ``--json`` output, progress bars.

Exit codes are decided in :mod:`clinrelease.errors` (0 ok, 1 quarantined or failed a check, 2 usage
or input error, 3 item errors, 4 vault entry mismatch, 5 OS/storage error, 6 release locked).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from clinrelease.errors import EXIT_OK, EXIT_QUARANTINED, EXIT_USAGE, ClinReleaseError, StorageError

#: what the audit and verify commands exit with when a check fails (the code of "quarantined")
EXIT_FAILED = EXIT_QUARANTINED
__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE"]  # the commands import the codes from here

#: the ``--json`` option every reporting command takes
JsonOption = typer.Option(False, "--json", help="Print one JSON object on stdout instead of text.")

# options `run` and `pacs run` share, declared once
KeysOption = typer.Option(Path("keys"), "--keys", "-k", help="Key folder from `clinrelease keys init`.")
ClinicalOption = typer.Option(None, "--clinical", help="Clinical table (CSV) to release beside the items.")
WorkersOption = typer.Option(1, "--workers", "-w", min=1, help="Items processed in parallel (local processes).")
EscrowToOption = typer.Option(None, "--escrow-to", help="Custodian public key; originals are escrowed to it. Repeatable.")
VaultOption = typer.Option(None, "--vault", help="Escrow vault folder (outside the release).")
IrbOption = typer.Option(None, "--irb", help="IRB approval reference, recorded in the audit log.")
DuaOption = typer.Option(None, "--dua", help="Data use agreement reference, recorded in the audit log.")
OperatorOption = typer.Option(None, "--operator", help="Who runs the release (default: the login name).")

# Markup off: what is printed carries paths, header values and reasons, and Rich would read
# "scan[bold].dcm" or ".[dask]" as markup and drop the brackets. Colour goes through styled().
# Soft wrap: a long path or command line stays one line to copy (tables still fold their cells).
err_console = Console(stderr=True, markup=False, soft_wrap=True)
out_console = Console(markup=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])


def styled(label: str, style: str, message: object = "") -> Text:
    """``label`` in ``style``, then ``message`` exactly as written (never read as markup)."""
    text = Text(label, style=style)
    if message != "":
        text.append(f" {message}")
    return text


def handles_errors(func: F) -> F:
    """Turn a :class:`ClinReleaseError` (or an OS error: a full disk, a read-only folder) into a
    one-line message on stderr naming the path, and its exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            try:
                return func(*args, **kwargs)
            except OSError as exc:
                raise StorageError.from_os_error(exc) from None
        except ClinReleaseError as exc:
            err_console.print(styled("error:", "bold red", exc), highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


def emit_json(obj: Any) -> None:
    """Write ``obj`` as JSON on stdout (numpy scalars and paths made plain)."""
    sys.stdout.write(json.dumps(obj, indent=2, default=_plain, sort_keys=False) + "\n")


def _plain(value: Any) -> Any:
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(value)


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Progress]:
    """A rich progress bar on stderr; silent when ``enabled`` is false (``--json``, CI logs)."""
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=not enabled,
        transient=False,
    )
    with progress:
        yield progress


def track(items: Iterable[Any], description: str, total: int | None = None, enabled: bool = True) -> Iterator[Any]:
    """Iterate ``items`` under a progress bar."""
    with progress_bar(enabled) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)

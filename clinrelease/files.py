"""Files written whole or not at all.

A reader (a resumed run, ``audit verify``, a custodian) never finds half a record, key or log: the
bytes go to a temporary file beside the target, are flushed to disk, and the temporary file is
renamed over the target in one step. The temporary file is removed when anything fails.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable

__all__ = ["atomic_file", "write_atomic", "write_json_atomic"]


@contextmanager
def atomic_file(path: str | Path, *, mode: int = 0o644, durable: bool = True) -> Iterator[IO[bytes]]:
    """A binary file to write ``path`` through, with permissions ``mode``: what was written replaces
    ``path`` in one step when the block ends, and nothing does when it raises.

    ``durable=False`` skips the flush to disk, for working state that a reader treats as missing
    when a crash has left it empty (it is then redone): a disk flush a file costs more than
    writing a small one.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, data: bytes | str, *, mode: int = 0o644, durable: bool = True) -> Path:
    """Write ``data`` (text is UTF-8) to ``path`` in one step, with permissions ``mode`` (``durable``:
    as :func:`atomic_file`)."""
    with atomic_file(path, mode=mode, durable=durable) as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def write_json_atomic(
    path: str | Path,
    obj: Any,
    *,
    default: Callable[[Any], Any] | None = None,
    sort_keys: bool = True,
    mode: int = 0o644,
    indent: int | None = 2,
    durable: bool = True,
) -> Path:
    """:func:`write_atomic` of ``obj`` as JSON (indented unless ``indent`` is None) with a final newline.

    ``indent=None`` is for files only programs read: Python's C encoder serves only that case,
    several times faster than the indenting one on a large record.
    """
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, default=default) + "\n"
    return write_atomic(path, text, mode=mode, durable=durable)

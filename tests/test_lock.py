"""The release lock: one whole run or merge at a time, shards side by side, dead holders taken over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clinrelease.errors import EXIT_LOCKED, LockedError
from clinrelease.lock import LOCK_NAME, release_lock


def test_a_second_exclusive_holder_is_refused_at_once_naming_the_lock_and_holder(tmp_path: Path) -> None:
    with release_lock(tmp_path / "work", "run"):
        with pytest.raises(LockedError) as refused:
            with release_lock(tmp_path / "work", "merge"):
                pass
    message = str(refused.value)
    assert str(tmp_path / "work" / LOCK_NAME) in message and f"pid {os.getpid()}" in message and "(run," in message
    assert refused.value.exit_code == EXIT_LOCKED == 6
    with release_lock(tmp_path / "work", "merge"):  # released when the first block ended
        pass


def test_shards_share_the_lock_and_a_whole_run_waits_for_none_of_them(tmp_path: Path) -> None:
    work = tmp_path / "work"
    with release_lock(work, "run --shard 0/2", shared=True), release_lock(work, "run --shard 1/2", shared=True):
        with pytest.raises(LockedError, match="run --shard 1/2"):
            with release_lock(work, "run"):
                pass


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    work = tmp_path / "work"
    code = f"from clinrelease.lock import release_lock\nimport os\nwith release_lock(__import__('pathlib').Path({str(work)!r}), 'run'):\n    os._exit(0)"
    dead = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, check=True)
    assert dead.returncode == 0
    holder = json.loads((work / LOCK_NAME).read_text())
    assert holder["pid"] != os.getpid()  # the dead process is still named in the file
    with release_lock(work, "run"):
        assert json.loads((work / LOCK_NAME).read_text())["pid"] == os.getpid()

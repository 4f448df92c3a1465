"""Files written whole or not at all (clinrelease.files)."""

from __future__ import annotations

import stat

import pytest

from clinrelease.files import atomic_file, write_atomic, write_json_atomic


def test_a_write_that_fails_halfway_leaves_the_old_file_and_no_partial_one(tmp_path):
    target = write_atomic(tmp_path / "record.json", '{"status": "released"}\n')
    with pytest.raises(RuntimeError):
        with atomic_file(target) as fh:
            fh.write(b'{"status": "quar')
            raise RuntimeError("disk pulled")
    assert target.read_text() == '{"status": "released"}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


def test_a_whole_write_replaces_the_file_with_the_permissions_asked_for(tmp_path):
    target = tmp_path / "choices.json"
    write_json_atomic(target, {"b": 1, "a": [2]}, indent=1, mode=0o600)
    assert target.read_text() == '{\n "a": [\n  2\n ],\n "b": 1\n}\n'
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    with atomic_file(target, mode=0o640) as fh:
        fh.write(b"checkpoint")
    assert target.read_bytes() == b"checkpoint" and stat.S_IMODE(target.stat().st_mode) == 0o640


def test_working_state_is_written_whole_without_a_disk_flush_and_a_crash_emptied_record_reads_as_missing(tmp_path, monkeypatch):
    import os

    from clinrelease.release.record import load_json

    flushed = []
    monkeypatch.setattr(os, "fsync", flushed.append)
    target = write_json_atomic(tmp_path / "item.json", {"status": "released"}, durable=False)
    assert flushed == [] and load_json(target) == {"status": "released"}
    write_atomic(tmp_path / "log.jsonl", "{}\n")
    assert len(flushed) == 1  # the default flushes
    target.write_bytes(b"")  # what a crash can leave of a file renamed before its bytes reached the disk
    assert load_json(target) is None

"""Swapping a new release state in for the old one."""

from __future__ import annotations

from pathlib import Path

from clinrelease.swap_in import swap_in


def test_swap_in_replaces_the_whole_folder_keeps_its_mode_and_shares_hard_linked_files(tmp_path: Path) -> None:
    target, new = tmp_path / "release", tmp_path / "work" / "next"
    (target / "data").mkdir(parents=True)
    (target / "data" / "kept.dcm").write_bytes(b"kept")
    (target / "data" / "withdrawn.dcm").write_bytes(b"gone")
    (target / "report").mkdir()
    (target / "report" / "summary.json").write_text("old")
    target.chmod(0o750)
    (new / "data").mkdir(parents=True)
    (new / "data" / "kept.dcm").hardlink_to(target / "data" / "kept.dcm")
    (new / "report").mkdir()
    (new / "report" / "summary.json").write_text("new")
    swap_in(new, target, tmp_path / "work" / "previous")
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()) == [
        "data/kept.dcm", "report/summary.json"]  # fmt: skip
    assert (target / "data" / "kept.dcm").read_bytes() == b"kept"
    assert (target / "report" / "summary.json").read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o750
    assert not new.exists() and not (tmp_path / "work" / "previous").exists()


def test_swap_in_creates_the_first_release(tmp_path: Path) -> None:
    new = tmp_path / "next"
    new.mkdir()
    (new / "bagit.txt").write_text("BagIt-Version: 1.0\n")
    swap_in(new, tmp_path / "release", tmp_path / "previous")
    assert (tmp_path / "release" / "bagit.txt").is_file() and not new.exists()

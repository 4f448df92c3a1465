"""`clinrelease pool build|check|show` on real donor photos and real generated faces."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from _release_helpers import invoke
from clinrelease.models import model_path, package_dir

needs_generator = pytest.mark.skipif(
    package_dir("openvino") is None or package_dir("random_face") is None,
    reason="the generator extra (openvino, random-face) is not installed",
)


def _donors(folder: Path) -> Path:
    folder.mkdir()
    shutil.copy(model_path("sample_astronaut"), folder / "astronaut.png")
    shutil.copy(package_dir("insightface") / "data/images/Tom_Hanks_54745.png", folder / "hanks.png")
    return folder


def test_pool_check_names_rejected_files_and_duplicate_donors(tmp_path: Path) -> None:
    good = _donors(tmp_path / "good")
    result = invoke(["pool", "check", str(good), "--k", "2", "--json"])
    doc = json.loads(result.output)
    assert result.exit_code == 0 and doc["ok"] and doc["usable"] == ["astronaut.png", "hanks.png"]
    assert doc["duplicates"] == [] and doc["shared_donor_probability"] == 1.0
    bad = _donors(tmp_path / "bad")
    shutil.copy(bad / "astronaut.png", bad / "astronaut_again.png")  # the same person twice
    shutil.copy(model_path("sample_astronaut").parent / "coffee.png", bad / "coffee.png")  # no face
    result = invoke(["pool", "check", str(bad), "--k", "2"])
    assert result.exit_code == 1
    assert "rejected coffee.png: no face found" in result.output
    assert "duplicate: astronaut.png ~ astronaut_again.png" in result.output and "NOT usable" in result.output


def test_pool_check_counts_what_the_generators_vetting_would_reject_by_reason(tmp_path: Path) -> None:
    """The astronaut smiles with her teeth showing under a fringe, hair down her cheeks; Hanks wears
    glasses, head turned: every reason of every donor is listed and counted."""
    folder = _donors(tmp_path / "donors")
    doc = json.loads(invoke(["pool", "check", str(folder), "--k", "2", "--json"]).output)
    by_file = {v["file"]: v["kinds"] for v in doc["vetting"]}
    assert by_file["astronaut.png"] == ["open mouth", "hair fringe or head covering over the forehead", "hair or a beard over the face"]
    assert {"turned head", "glasses"} <= set(by_file["hanks.png"])
    counts = doc["vetting_counts"]
    assert counts["hair fringe or head covering over the forehead"] == counts["glasses"] == counts["open mouth"] == 1
    assert sum(counts.values()) == sum(len(k) for k in by_file.values())
    text = invoke(["pool", "check", str(folder), "--k", "2"]).output
    assert "the generator's vetting would reject 2 of 2 donors:" in text and "hair fringe or head covering over the forehead 1" in text


def test_pool_check_of_a_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke(["pool", "check", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_pool_show_lists_the_builtin_donors_and_the_generator_licence() -> None:
    result = invoke(["pool", "show", "--json"])
    doc = json.loads(result.output)
    assert result.exit_code == 0 and "P001" in doc["builtin"]["donors"] and doc["builtin"]["shared_donor_probability"] > 0.9
    assert "non-commercial" in doc["generator"]["licence"]
    assert doc["generator"]["installed"] == (package_dir("openvino") is not None and package_dir("random_face") is not None)


@needs_generator
def test_pool_build_from_generator_writes_a_vetted_pool_with_its_licence(tmp_path: Path) -> None:
    from clinrelease.face.generator import LICENCE
    from clinrelease.face.surrogates import DonorPool

    folder = tmp_path / "pool"
    result = invoke(["pool", "build", str(folder), "--from-generator", "2", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["files"] == ["generated_000.png", "generated_001.png"]
    assert (folder / "LICENCE.txt").read_text().strip() == LICENCE
    assert len(DonorPool.load(folder)) == 2
    check = json.loads(invoke(["pool", "check", str(folder), "--k", "2", "--json"]).output)
    assert check["ok"] and check["vetting"] == [] and check["duplicates"] == [] and check["licence"] == LICENCE
    # a second build into the same folder would mix two pools
    again = invoke(["pool", "build", str(folder), "--from-generator", "2"])
    assert again.exit_code == 2 and "already holds donor images" in again.output

"""``clinrelease profiles list|show|validate``, through Typer and through the installed entry point."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import clinrelease.cli.profiles_cmd  # noqa: F401  (registers the commands on profiles_app)
from clinrelease.cli.app import app
from clinrelease.profiles import load_profile

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, ["profiles", *args])


def test_list_table_and_json() -> None:
    result = invoke("list")
    assert result.exit_code == 0, result.output
    for name in ("basic", "pd_gait", "pd_face", "pd_motor"):
        assert name in result.stdout
    as_json = json.loads(invoke("list", "--json").stdout)
    by_name = {p["name"]: p for p in as_json["profiles"]}
    assert by_name["pd_face"]["extends"] == "pd_gait"
    assert by_name["basic"]["description"] == load_profile("basic").description
    assert Path(by_name["pd_gait"]["path"]).is_file()


def test_show_prints_the_resolved_profile() -> None:
    result = invoke("show", "pd_face")
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.stdout)
    profile = load_profile("pd_face")
    assert shown == profile.to_dict()
    assert profile.digest in result.stdout
    as_json = json.loads(invoke("show", "pd_face", "--json").stdout)
    assert as_json["digest"] == profile.digest
    assert as_json["profile"]["deid"]["options"] == list(load_profile("pd_gait").deid.options)


def test_show_unknown_profile_exits_2_with_a_message() -> None:
    result = invoke("show", "no_such_profile")
    assert result.exit_code == 2
    assert "no profile named 'no_such_profile'" in result.stderr
    assert "Traceback" not in result.output


def test_validate_ok_and_failing(tmp_path: Path) -> None:
    ok = invoke("validate", "pd_motor")
    assert ok.exit_code == 0 and load_profile("pd_motor").digest in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\nanonymizer: {params: {identity_strength: 1.5}, bystander: smudge}\nfaces: {patient_rule: tallest}\n"
    )
    result = invoke("validate", str(bad))
    assert result.exit_code == 2
    assert "3 problem(s)" in result.stderr
    assert f"{bad}: anonymizer.params.identity_strength: 1.5 is not between 0 and 1" in result.stderr
    assert f"{bad}: anonymizer.bystander: 'smudge' is not allowed (allowed: swap, textured_blur, blur, mask, pixelate)" in result.stderr
    assert f"{bad}: faces.patient_rule: 'tallest' is not allowed (allowed: largest, most_present, all)" in result.stderr
    as_json = invoke("validate", str(bad), "--json")
    assert as_json.exit_code == 2
    report = json.loads(as_json.stdout)
    assert report["ok"] is False and report["digest"] is None
    assert {p["key"] for p in report["problems"]} == {
        "anonymizer.params.identity_strength",
        "anonymizer.bystander",
        "faces.patient_rule",
    }


def test_installed_entry_point_validates(tmp_path: Path) -> None:
    exe = shutil.which("clinrelease", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("the clinrelease entry point is not installed in this environment (pip install -e .)")
    good = subprocess.run([exe, "profiles", "validate", "pd_gait", "--json"], capture_output=True, text=True, timeout=120)
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["digest"] == load_profile("pd_gait").digest
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nverify: {sample_every: 0}\n")
    result = subprocess.run([exe, "profiles", "validate", str(bad)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert f"{bad}: verify.sample_every: 0 must be at least 1" in result.stderr

"""``clinrelease swap train|info|delete`` on real media with the tiny CPU configuration."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from _learned_helpers import astronaut, carphone
from clinrelease.cli import app
from clinrelease.face.learned.faceswap import model_digest, read_checkpoint

runner = CliRunner()


def _train(out, steps, *extra):
    args = ["swap", "train", "--patient", str(carphone()), "--surrogate", str(astronaut()), "--out", str(out)]
    return runner.invoke(app, [*args, "--steps", str(steps), "--device", "cpu", "--every", "3", *extra])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "patient.pt"
    first = _train(out, 10, "--tiny", "--checkpoint-every", "5", "--batch-size", "4")
    return out, first


def test_train_prints_progress_and_the_digest(trained):
    out, result = trained
    assert result.exit_code == 0, result.output
    assert "training  loss" in result.output  # the progress bar shows the loss
    assert f"digest {model_digest(out)}" in result.output
    assert "trained 10 steps to step 10 on cpu" in result.output
    assert "40 patient / 1 surrogate crops" in result.output  # 120 frames, every 3rd
    assert "escrow it" in result.output  # the identifying-data warning
    ckpt = read_checkpoint(out)
    assert ckpt["step"] == 10 and ckpt["config"]["crop_size"] == 64 and ckpt["config"]["batch_size"] == 4


def test_train_resumes_and_reports_json(trained):
    out, _ = trained
    result = _train(out, 14, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["resumed"] is True and summary["start_step"] == 10 and summary["step"] == 14
    assert summary["digest"] == model_digest(out)
    info = runner.invoke(app, ["swap", "info", str(out), "--json"])
    assert info.exit_code == 0, info.output
    data = json.loads(info.stdout[info.stdout.index("{") :])
    assert data["step"] == 14 and data["digest"] == summary["digest"]
    text = runner.invoke(app, ["swap", "info", str(out)])
    assert "step        14" in text.output and "64 px" in text.output


def test_usage_errors_exit_2(tmp_path):
    missing = runner.invoke(app, ["swap", "info", str(tmp_path / "none.pt")])
    assert missing.exit_code == 2 and "faceswap model not found" in missing.output
    gpu = _train(tmp_path / "m.pt", 2, "--tiny", "--device", "cuda")
    assert gpu.exit_code == 2 and "no CUDA GPU" in gpu.output
    bad = runner.invoke(
        app, ["swap", "train", "--patient", str(tmp_path / "none.mp4"), "--surrogate", str(astronaut()),
              "--out", str(tmp_path / "m.pt"), "--tiny", "--device", "cpu"]
    )
    assert bad.exit_code == 2 and "no such file" in bad.output
    other = tmp_path / "notes.txt"
    other.write_text("keep me")
    refused = runner.invoke(app, ["swap", "delete", str(other)])
    assert refused.exit_code == 2 and other.read_text() == "keep me"


def test_delete_removes_the_model(tmp_path, trained):
    out, _ = trained
    copy = tmp_path / "copy.pt"
    copy.write_bytes(out.read_bytes())
    result = runner.invoke(app, ["swap", "delete", str(copy)])
    assert result.exit_code == 0 and not copy.exists()


def test_key_bound_model_is_refused_for_another_patient_or_key(tmp_path):
    from clinrelease.dicom.keyed import pseudonym
    from clinrelease.errors import ConfigError
    from clinrelease.face.learned.faceswap import faceswap_anonymizer

    key = bytes(range(32))
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "release.key").write_text(key.hex())
    (tmp_path / "keys" / "release.key").chmod(0o600)
    who = pseudonym(key, "MRN-0042")
    out = tmp_path / f"{who}.pt"
    args = ["swap", "train", "--patient", str(carphone()), "--keys", str(tmp_path / "keys"), "--patient-id", "MRN-0042",
            "--out", str(out), "--steps", "2", "--tiny", "--device", "cpu", "--every", "12"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    identity = read_checkpoint(out)["identity"]
    assert identity["pseudonym"] == who and len(identity["surrogate_digest"]) == 64
    assert "MRN-0042" not in out.read_bytes().decode("latin-1")  # only the pseudonym is stored
    info = runner.invoke(app, ["swap", "info", str(out)])
    assert f"made for    {who} with the key's surrogate" in info.output

    # what `run` passes: the profile's model path with a placeholder, the key and the pseudonym
    template = str(tmp_path / "{pseudonym}.pt")
    ok = faceswap_anonymizer(model=template, key=key, pseudonym=who, device="cpu")
    assert ok.digest == model_digest(out)
    shutil_copy = tmp_path / "other.pt"
    shutil_copy.write_bytes(out.read_bytes())
    with pytest.raises(ConfigError, match=f"trained for patient {who}, not PZZZZ"):
        faceswap_anonymizer(model=shutil_copy, key=key, pseudonym="PZZZZ", device="cpu")
    with pytest.raises(ConfigError, match="another release key"):
        faceswap_anonymizer(model=template, key=bytes(range(1, 33)), pseudonym=who, device="cpu")
    with pytest.raises(ConfigError, match="needs the patient's pseudonym"):
        faceswap_anonymizer(model=template, device="cpu")
    # resuming under another identity is refused too
    clash = runner.invoke(app, [*args[:6], "--pseudonym", "PZZZZ", *args[8:]])
    assert clash.exit_code == 2 and "trained for" in clash.output
    missing = runner.invoke(app, ["swap", "train", "--patient", str(carphone()), "--out", str(tmp_path / "x.pt"),
                                  "--tiny", "--device", "cpu"])
    assert missing.exit_code == 2 and "name the surrogate" in missing.output

"""The command line of keys, reversal and audit: CliRunner on `clinrelease.cli:app`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _audit_helpers import build_release
from clinrelease.audit.dsse import pae
from clinrelease.cli import app
from clinrelease.crypto.escrow import Vault
from clinrelease.crypto.keys import load_custodian_private

PASS = "pw for tests"


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("CLINRELEASE_PASSPHRASE", raising=False)
    return CliRunner()


def _clean(result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output


def test_keys_init_then_refuses_again(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["keys", "init", str(tmp_path / "k"), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert Path(info["signing_pub"]).is_file() and len(info["signing_key_id"]) == 64
    again = runner.invoke(app, ["keys", "init", str(tmp_path / "k")])
    assert again.exit_code == 2 and "refusing to overwrite" in again.output
    _clean(again)


def test_keys_custodian_from_env_prompt_and_neither(runner: CliRunner, tmp_path: Path) -> None:
    from_env = runner.invoke(app, ["keys", "custodian", "alice", str(tmp_path)], env={"CLINRELEASE_PASSPHRASE": PASS})
    assert from_env.exit_code == 0, from_env.output
    load_custodian_private(tmp_path / "alice.key", PASS)
    prompted = runner.invoke(app, ["keys", "custodian", "bob", str(tmp_path), "--rsa", "--json"], input=f"{PASS}\n{PASS}\n")
    assert prompted.exit_code == 0, prompted.output
    assert json.loads(prompted.stdout[prompted.stdout.index("{"):])["kind"] == "rsa3072"
    load_custodian_private(tmp_path / "bob.key", PASS)
    mismatch_then_none = runner.invoke(app, ["keys", "custodian", "carol", str(tmp_path)], input="one two three four\ntwo\n")
    assert mismatch_then_none.exit_code == 2 and "no passphrase" in mismatch_then_none.output
    none = runner.invoke(app, ["keys", "custodian", "dave", str(tmp_path)])
    assert none.exit_code == 2 and "CLINRELEASE_PASSPHRASE" in none.output
    assert not (tmp_path / "dave.key").exists()
    _clean(none)


def test_keys_custodian_with_a_weak_passphrase_exits_2_and_writes_nothing(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["keys", "custodian", "alice", str(tmp_path / "c")], env={"CLINRELEASE_PASSPHRASE": "x"})
    assert result.exit_code == 2 and "passphrase too weak" in result.output and "at least 12" in result.output
    assert not (tmp_path / "c" / "alice.key").exists()
    _clean(result)


def test_keys_rewrap_upgrades_a_legacy_key_that_reverse_warns_about(runner: CliRunner, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import x25519

    private = x25519.X25519PrivateKey.generate()
    key = tmp_path / "old.key"
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.BestAvailableEncryption(b"old")))
    key.chmod(0o600)
    (tmp_path / "old.pub").write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    original, released = tmp_path / "original.bin", tmp_path / "released.bin"
    original.write_bytes(os.urandom(3000))
    released.write_bytes(b"released")
    import hashlib

    with Vault(tmp_path / "vault").open_release("rel-old", [tmp_path / "old.pub"]) as s:
        s.escrow(original, "2.25.7", hashlib.sha256(released.read_bytes()).hexdigest())
    base = ["reverse", str(released), "--vault", str(tmp_path / "vault"), "--key", str(key)]
    warned = runner.invoke(app, [*base, "--output", str(tmp_path / "one.bin")], env={"CLINRELEASE_PASSPHRASE": "old"})
    assert warned.exit_code == 0, warned.output
    assert f"clinrelease keys rewrap {key}" in " ".join(warned.output.split())
    weak = runner.invoke(app, ["keys", "rewrap", str(key)], env={"CLINRELEASE_PASSPHRASE": "old", "CLINRELEASE_NEW_PASSPHRASE": "new"})
    assert weak.exit_code == 2 and "too weak" in weak.output
    done = runner.invoke(app, ["keys", "rewrap", str(key), "--json"], env={"CLINRELEASE_PASSPHRASE": "old"}, input=f"{PASS}\n{PASS}\n")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout[done.stdout.index("{"):])["was_legacy"] is True
    quiet = runner.invoke(app, [*base, "--output", str(tmp_path / "two.bin")], env={"CLINRELEASE_PASSPHRASE": PASS})
    assert quiet.exit_code == 0 and "PBKDF2" not in quiet.output
    assert (tmp_path / "two.bin").read_bytes() == original.read_bytes()
    for result in (warned, weak, done, quiet):
        _clean(result)


@pytest.fixture
def vault_setup(runner: CliRunner, tmp_path: Path) -> dict:
    env = {"CLINRELEASE_PASSPHRASE": PASS}
    for name in ("alice", "mallory"):
        assert runner.invoke(app, ["keys", "custodian", name, str(tmp_path / "cust")], env=env).exit_code == 0
    assert runner.invoke(app, ["keys", "init", str(tmp_path / "keys")]).exit_code == 0
    original = tmp_path / "original.bin"
    original.write_bytes(os.urandom(20_000))
    released = tmp_path / "released.bin"
    released.write_bytes(b"de-identified")
    import hashlib

    with Vault(tmp_path / "vault").open_release("rel-cli", [tmp_path / "cust" / "alice.pub"], chunk_size=8192) as s:
        s.escrow(original, "2.25.99", hashlib.sha256(released.read_bytes()).hexdigest())
    return {"tmp": tmp_path, "original": original, "released": released}


def test_reverse_restores_and_logs_a_signed_event(runner: CliRunner, vault_setup: dict) -> None:
    t = vault_setup["tmp"]
    args = ["reverse", str(vault_setup["released"]), "--vault", str(t / "vault"), "--key", str(t / "cust" / "alice.key"),
            "--output", str(t / "back.bin"), "--log", str(t / "site.jsonl"), "--signing-key", str(t / "keys" / "signing.key"),
            "--reason", "re-contact", "--json"]
    result = runner.invoke(app, args, input=f"{PASS}\n")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout[result.stdout.index("{"):])
    assert info["audit_seq"] == 0 and info["release_id"] == "rel-cli"
    assert (t / "back.bin").read_bytes() == vault_setup["original"].read_bytes()
    check = runner.invoke(app, ["audit", "verify-log", str(t / "site.jsonl"), "--key", str(t / "keys" / "signing.pub"), "--json"])
    assert check.exit_code == 0 and json.loads(check.stdout)["signed"] == 1


def test_reverse_with_wrong_key_or_no_passphrase_exits_2_cleanly(runner: CliRunner, vault_setup: dict) -> None:
    t = vault_setup["tmp"]
    base = ["reverse", str(vault_setup["released"]), "--vault", str(t / "vault"), "--output", str(t / "back.bin")]
    wrong = runner.invoke(app, [*base, "--key", str(t / "cust" / "mallory.key")], env={"CLINRELEASE_PASSPHRASE": PASS})
    assert wrong.exit_code == 2 and "not one release rel-cli was escrowed to" in wrong.output
    no_pass = runner.invoke(app, [*base, "--key", str(t / "cust" / "alice.key")])
    assert no_pass.exit_code == 2 and "no passphrase" in no_pass.output
    half = runner.invoke(app, [*base, "--key", str(t / "cust" / "alice.key"), "--log", str(t / "l.jsonl")],
                         env={"CLINRELEASE_PASSPHRASE": PASS})
    assert half.exit_code == 2 and "--log and --signing-key go together" in half.output
    for result in (wrong, no_pass, half):
        _clean(result)
    assert not (t / "back.bin").exists()


def test_reverse_with_a_world_readable_custodian_key_exits_2_naming_the_chmod(runner: CliRunner, vault_setup: dict) -> None:
    t = vault_setup["tmp"]
    key = t / "cust" / "alice.key"
    key.chmod(0o644)
    result = runner.invoke(app, ["reverse", str(vault_setup["released"]), "--vault", str(t / "vault"), "--key", str(key),
                                 "--output", str(t / "back.bin")], env={"CLINRELEASE_PASSPHRASE": PASS})
    assert result.exit_code == 2 and f"chmod 600 {key}" in " ".join(result.output.split())
    assert not (t / "back.bin").exists()
    _clean(result)


def test_reverse_of_a_swapped_vault_entry_exits_4_and_writes_nothing(runner: CliRunner, vault_setup: dict) -> None:
    t = vault_setup["tmp"]
    other_original, other_released = t / "other-original.bin", t / "other-released.bin"
    other_original.write_bytes(os.urandom(5000))
    other_released.write_bytes(b"another patient, de-identified")
    import hashlib

    with Vault(t / "vault").open_release("rel-cli", [t / "cust" / "alice.pub"], chunk_size=8192) as s:
        s.escrow(other_original, "2.25.100", hashlib.sha256(other_released.read_bytes()).hexdigest())
    objects = t / "vault" / "rel-cli" / "objects"
    mine, theirs = (objects / f"{hashlib.sha256(f.read_bytes()).hexdigest()}.json" for f in (vault_setup["released"], other_released))
    data = mine.read_bytes()
    mine.write_bytes(theirs.read_bytes())
    theirs.write_bytes(data)
    args = ["reverse", str(vault_setup["released"]), "--vault", str(t / "vault"), "--key", str(t / "cust" / "alice.key"),
            "--output", str(t / "back.bin")]
    result = runner.invoke(app, args, env={"CLINRELEASE_PASSPHRASE": PASS})
    assert result.exit_code == 4, result.output
    assert "does not belong to" in result.output and "swapped or edited" in result.output
    assert not (t / "back.bin").exists()
    _clean(result)


def test_audit_verify_exit_codes_and_json(runner: CliRunner, tmp_path: Path) -> None:
    release = build_release(tmp_path)
    pub = str(release.keys.directory / "signing.pub")
    ok = runner.invoke(app, ["audit", "verify", str(release.out), "--key", pub])
    assert ok.exit_code == 0 and "verified" in ok.stdout
    (release.out / "data" / "extra.dcm").write_bytes(b"x")
    bad = runner.invoke(app, ["audit", "verify", str(release.out), "--key", pub, "--json"])
    assert bad.exit_code == 1
    report = json.loads(bad.stdout)
    assert report["ok"] is False and report["checks"]["files"] is False
    assert "file added: data/extra.dcm is not in the signed statement" in report["failures"]
    missing_key = runner.invoke(app, ["audit", "verify", str(release.out), "--key", str(tmp_path / "nope.pub")])
    not_release = runner.invoke(app, ["audit", "verify", str(tmp_path), "--key", pub])
    assert missing_key.exit_code == 2 and "public key not found" in missing_key.output
    assert not_release.exit_code == 2 and "not a finalized release" in not_release.output
    _clean(missing_key)


def test_audit_pae_writes_the_signed_bytes(runner: CliRunner, tmp_path: Path) -> None:
    release = build_release(tmp_path)
    result = runner.invoke(app, ["audit", "pae", str(release.out), "-o", str(tmp_path / "pae.bin")])
    assert result.exit_code == 0
    data = (tmp_path / "pae.bin").read_bytes()
    envelope = json.loads((release.out / "audit" / "statement.dsse.json").read_bytes())
    import base64

    assert data == pae(envelope["payloadType"], base64.b64decode(envelope["payload"]))
    release.keys.signing_pub.verify(base64.b64decode(envelope["signatures"][0]["sig"]), data)

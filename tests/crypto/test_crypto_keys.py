"""Key folders and custodian key pairs: real key generation, real files, real openssl."""

from __future__ import annotations

import base64
import json
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519

from clinrelease.crypto.kdf import derive
from clinrelease.crypto.keys import (
    create_custodian,
    custodian_key_is_legacy,
    init_keys,
    key_id,
    load_custodian_private,
    load_custodian_public,
    load_keys,
    load_release_key,
    load_signing_private,
    rewrap_custodian,
)
from clinrelease.crypto.protect import Argon2Cost, passphrase_problem
from clinrelease.errors import ConfigError


PASS = "correct horse battery staple"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_keys_writes_private_files_0600_and_loads_back(tmp_path: Path) -> None:
    made = init_keys(tmp_path / "keys")
    assert _mode(tmp_path / "keys" / "release.key") == 0o600
    assert _mode(tmp_path / "keys" / "signing.key") == 0o600
    loaded = load_keys(tmp_path / "keys")
    assert loaded.release_key == made.release_key and len(made.release_key) == 32
    assert loaded.signing_key is not None
    assert loaded.signing_pub.public_bytes_raw() == made.signing_pub.public_bytes_raw()
    message = b"audit"
    loaded.signing_pub.verify(loaded.signing_key.sign(message), message)
    # keyed values are stable across a reload
    assert derive(loaded.release_key, "uid", "x") == derive(made.release_key, "uid", "x")


def test_init_keys_refuses_to_overwrite(tmp_path: Path) -> None:
    init_keys(tmp_path)
    before = (tmp_path / "release.key").read_bytes()
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        init_keys(tmp_path)
    assert (tmp_path / "release.key").read_bytes() == before


def test_load_keys_missing_says_how_to_create_them(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"run `clinrelease keys init .*` to create the release keys"):
        load_keys(tmp_path / "nokeys")
    init_keys(tmp_path / "k")
    (tmp_path / "k" / "signing.key").unlink()
    with pytest.raises(ConfigError, match="keys init"):
        load_keys(tmp_path / "k")
    assert load_keys(tmp_path / "k", need_signing=False).signing_key is None


def test_mismatched_signing_pair_is_rejected(tmp_path: Path) -> None:
    init_keys(tmp_path / "a")
    init_keys(tmp_path / "b")
    shutil.copyfile(tmp_path / "b" / "signing.pub", tmp_path / "a" / "signing.pub")
    with pytest.raises(ConfigError, match="does not match signing.key"):
        load_keys(tmp_path / "a")


def test_release_key_accepts_raw_bytes_and_rejects_wrong_length(tmp_path: Path) -> None:
    (tmp_path / "raw.key").write_bytes(bytes(range(32)))
    (tmp_path / "raw.key").chmod(0o600)
    assert load_release_key(tmp_path / "raw.key") == bytes(range(32))
    (tmp_path / "short.key").write_text("abcd\n")
    (tmp_path / "short.key").chmod(0o600)
    with pytest.raises(ConfigError, match="expected 32 bytes"):
        load_release_key(tmp_path / "short.key")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_private_keys_readable_by_group_or_others_are_refused_with_the_chmod_to_run(tmp_path: Path, mode: int) -> None:
    init_keys(tmp_path / "keys")
    custodian = create_custodian("alice", tmp_path / "cust", PASS, cost=Argon2Cost(memory_kib=1024, iterations=1, lanes=1))
    loaders = {
        tmp_path / "keys" / "release.key": lambda: load_keys(tmp_path / "keys"),
        tmp_path / "keys" / "signing.key": lambda: load_signing_private(tmp_path / "keys" / "signing.key"),
        custodian.private_path: lambda: load_custodian_private(custodian.private_path, PASS),
    }
    for path, load in loaders.items():
        path.chmod(mode)
        with pytest.raises(ConfigError, match=f"mode 0{mode:o}.*run `chmod 600 {re.escape(str(path))}`"):
            load()
        path.chmod(0o600)
        load()


@pytest.mark.parametrize("kind", ["x25519", "rsa3072"])
def test_custodian_pair_is_protected_by_argon2id_with_the_stated_parameters(tmp_path: Path, kind: str) -> None:
    made = create_custodian("alice", tmp_path, PASS, kind=kind)  # type: ignore[arg-type]
    assert _mode(made.private_path) == 0o600
    document = json.loads(made.private_path.read_text())
    assert document["format"] == "clinrelease-custodian-key/2" and document["cipher"] == "AES-256-GCM"
    assert {k: document["kdf"][k] for k in ("name", "memory_kib", "iterations", "lanes")} == {
        "name": "argon2id", "memory_kib": 65536, "iterations": 3, "lanes": 4}
    assert len(base64.b64decode(document["kdf"]["salt"])) == 16
    assert not custodian_key_is_legacy(made.private_path)
    private = load_custodian_private(made.private_path, PASS)
    assert key_id(private.public_key()) == key_id(load_custodian_public(made.public_path)) == made.fingerprint
    with pytest.raises(ConfigError, match="wrong passphrase"):
        load_custodian_private(made.private_path, PASS + "!")
    with pytest.raises(ConfigError, match="no passphrase"):
        load_custodian_private(made.private_path, None)
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        create_custodian("alice", tmp_path, PASS, kind=kind)  # type: ignore[arg-type]


def test_custodian_key_file_with_a_lowered_cost_does_not_decrypt(tmp_path: Path) -> None:
    made = create_custodian("alice", tmp_path, PASS)
    document = json.loads(made.private_path.read_text())
    document["kdf"]["iterations"] = 1  # the stored cost is authenticated: lowering it breaks the file
    made.private_path.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match="altered"):
        load_custodian_private(made.private_path, PASS)
    document["kdf"]["memory_kib"] = 1 << 40  # and a cost beyond the limits is refused, not run
    made.private_path.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match="memory_kib .* out of range"):
        load_custodian_private(made.private_path, PASS)


@pytest.mark.parametrize(
    ("weak", "why"),
    [
        ("s3cret", "6 characters; use at least 12"),
        ("a", "it has 1 character;"),
        ("aaaaaaaaaaaaaaaa", "only 1 different characters"),
        ("abababababab", "only 2 different characters"),
        ("abcdefghijklmnop", "run of the alphabet"),
        ("1234567890123", "run of the alphabet, the digits"),
        ("qwertyuiopasdf", "keyboard row"),
        ("Password2024!", "common password word"),
        ("letmeinletmein", "common password word"),
    ],
)
def test_weak_custodian_passphrases_are_refused_and_nothing_written(tmp_path: Path, weak: str, why: str) -> None:
    assert passphrase_problem(weak) is not None
    with pytest.raises(ConfigError, match=f"passphrase too weak to protect a custodian key: .*{re.escape(why)}"):
        create_custodian("alice", tmp_path, weak)
    assert list(tmp_path.iterdir()) == []


def test_reasonable_passphrases_pass_the_policy() -> None:
    for phrase in (PASS, "pw for tests", "Tr0ub4dor&3-xyz", "ich bin ein Berliner 1963"):
        assert passphrase_problem(phrase) is None, phrase


def _legacy_custodian(folder: Path, passphrase: str) -> Path:
    """A custodian key as clinrelease wrote it before: PKCS#8 PEM encrypted by PBKDF2 (2048 rounds)."""
    private = x25519.X25519PrivateKey.generate()
    path = folder / "old.key"
    path.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.BestAvailableEncryption(passphrase.encode())))
    path.chmod(0o600)
    return path


def test_legacy_pbkdf2_custodian_key_still_loads_and_rewrap_moves_it_to_argon2id(tmp_path: Path) -> None:
    legacy = _legacy_custodian(tmp_path, "short")
    assert custodian_key_is_legacy(legacy)
    before = key_id(load_custodian_private(legacy, "short").public_key())
    with pytest.raises(ConfigError, match="too weak"):
        rewrap_custodian(legacy, "short", "short again")
    assert custodian_key_is_legacy(legacy)
    rewrap_custodian(legacy, "short", PASS)
    assert not custodian_key_is_legacy(legacy) and _mode(legacy) == 0o600
    assert key_id(load_custodian_private(legacy, PASS).public_key()) == before  # the same key pair
    with pytest.raises(ConfigError, match="wrong passphrase"):
        load_custodian_private(legacy, "short")
    assert not list(tmp_path.glob(".*.partial"))


def test_custodian_bad_names_kinds_and_passphrases(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="custodian name"):
        create_custodian("../evil", tmp_path, PASS)
    with pytest.raises(ConfigError, match="empty passphrase"):
        create_custodian("ok", tmp_path, "")
    with pytest.raises(ConfigError, match="kind"):
        create_custodian("ok", tmp_path, PASS, kind="dsa")  # type: ignore[arg-type]
    init_keys(tmp_path / "k")
    with pytest.raises(ConfigError, match="expected X25519 or RSA"):
        load_custodian_public(tmp_path / "k" / "signing.pub")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_key_id_matches_openssl_der_digest(tmp_path: Path) -> None:
    made = init_keys(tmp_path)
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-in", str(tmp_path / "signing.pub"), "-outform", "DER"],
        check=True, capture_output=True,
    ).stdout
    import hashlib

    assert hashlib.sha256(der).hexdigest() == made.signing_key_id

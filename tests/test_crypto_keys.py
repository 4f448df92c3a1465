"""Key folders and custodian key pairs: real key generation, real files, real openssl."""

from __future__ import annotations

import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from clinrelease.crypto.kdf import derive
from clinrelease.crypto.keys import (
    create_custodian,
    init_keys,
    key_id,
    load_custodian_private,
    load_custodian_public,
    load_keys,
    load_release_key,
    load_signing_private,
)
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
    custodian = create_custodian("alice", tmp_path / "cust", PASS)
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
def test_custodian_pair_is_passphrase_protected(tmp_path: Path, kind: str) -> None:
    made = create_custodian("alice", tmp_path, "s3cret", kind=kind)  # type: ignore[arg-type]
    assert _mode(made.private_path) == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in made.private_path.read_bytes()
    private = load_custodian_private(made.private_path, "s3cret")
    assert key_id(private.public_key()) == key_id(load_custodian_public(made.public_path)) == made.fingerprint
    with pytest.raises(ConfigError, match="wrong passphrase"):
        load_custodian_private(made.private_path, "guess")
    with pytest.raises(ConfigError, match="no passphrase"):
        load_custodian_private(made.private_path, None)
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        create_custodian("alice", tmp_path, "s3cret", kind=kind)  # type: ignore[arg-type]


def test_custodian_bad_names_kinds_and_passphrases(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="custodian name"):
        create_custodian("../evil", tmp_path, "pw")
    with pytest.raises(ConfigError, match="empty passphrase"):
        create_custodian("ok", tmp_path, "")
    with pytest.raises(ConfigError, match="kind"):
        create_custodian("ok", tmp_path, "pw", kind="dsa")  # type: ignore[arg-type]
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
    # openssl can read the encrypted custodian key with the passphrase, and only with it
    custodian = create_custodian("bob", tmp_path, "pw")
    ok = subprocess.run(["openssl", "pkey", "-in", str(custodian.private_path), "-passin", "pass:pw", "-noout"])
    bad = subprocess.run(["openssl", "pkey", "-in", str(custodian.private_path), "-passin", "pass:no", "-noout"], capture_output=True)
    assert ok.returncode == 0 and bad.returncode != 0

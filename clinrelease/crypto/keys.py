"""Release keys, signing keys and custodian key pairs on disk.

A *key folder* (``clinrelease keys init DIR``) holds what one release site needs:

``release.key``
    32 random bytes as 64 hex characters: the HMAC key every keyed value of a release is derived
    from (:mod:`clinrelease.crypto.kdf`). Mode 0600.

Every private key file (``release.key``, ``signing.key``, a custodian's ``NAME.key``) is written
mode 0600 and refused when loaded with any group or other permission bit set; the message names
the ``chmod 600 PATH`` to run.
``signing.key`` / ``signing.pub``
    An Ed25519 key pair (PKCS#8 / SubjectPublicKeyInfo PEM) that signs the audit statement. The
    private file is mode 0600 and unencrypted so that unattended runs can sign; protect the folder.

A *custodian* (``clinrelease keys custodian NAME DIR``) holds ``NAME.key`` (the PKCS#8 key
encrypted under a passphrase stretched with Argon2id, :mod:`clinrelease.crypto.protect`, mode 0600)
and ``NAME.pub``: X25519 for HPKE, or RSA-3072 for custodians whose keys live on smartcards/HSMs
that only speak RSA-OAEP. Escrowed originals are wrapped to the public halves
(:mod:`clinrelease.crypto.escrow`). New passphrases must pass the policy of
:func:`clinrelease.crypto.protect.passphrase_problem`. Keys written before (PKCS#8 PEM under PBKDF2
with 2048 iterations) still load; :func:`rewrap_custodian` re-protects them.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Union

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa, x25519

from clinrelease.crypto import protect
from clinrelease.crypto.kdf import KEY_BYTES
from clinrelease.errors import ConfigError
from clinrelease.files import write_atomic

RELEASE_KEY_FILE = "release.key"
SIGNING_KEY_FILE = "signing.key"
SIGNING_PUB_FILE = "signing.pub"
#: environment variable scripts use to pass a custodian passphrase
PASSPHRASE_ENV = "CLINRELEASE_PASSPHRASE"

CustodianKind = Literal["x25519", "rsa3072"]
CustodianPublicKey = Union[x25519.X25519PublicKey, rsa.RSAPublicKey]
CustodianPrivateKey = Union[x25519.X25519PrivateKey, rsa.RSAPrivateKey]


@dataclass(frozen=True)
class KeySet:
    """The keys of one release site, loaded from a key folder.

    Attributes
    ----------
    release_key:
        32-byte HMAC key for every keyed value of a release.
    signing_key:
        Ed25519 private key that signs the audit statement; ``None`` when loaded without it.
    signing_pub:
        The matching public key (what auditors verify against).
    directory:
        The key folder.
    """

    release_key: bytes
    signing_key: ed25519.Ed25519PrivateKey | None
    signing_pub: ed25519.Ed25519PublicKey
    directory: Path

    @property
    def signing_key_id(self) -> str:
        """The DSSE key id of the signing key (see :func:`key_id`)."""
        return key_id(self.signing_pub)


@dataclass(frozen=True)
class Custodian:
    """A custodian key pair written by :func:`create_custodian`."""

    name: str
    kind: CustodianKind
    private_path: Path
    public_path: Path
    fingerprint: str


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 and write ``data``; never overwrite an existing file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError("already exists; refusing to overwrite a key", path) from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)  # the umask cannot widen it, but be explicit


def _write_public(path: Path, data: bytes) -> None:
    try:
        with open(path, "xb") as fh:
            fh.write(data)
    except FileExistsError:
        raise ConfigError("already exists; refusing to overwrite a key", path) from None


def public_der(key: ed25519.Ed25519PublicKey | CustodianPublicKey) -> bytes:
    """The DER SubjectPublicKeyInfo bytes of a public key."""
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(key: ed25519.Ed25519PublicKey | CustodianPublicKey) -> str:
    """SHA-256 (hex) of the key's DER SubjectPublicKeyInfo.

    The same value ``openssl pkey -pubin -in KEY.pub -outform DER | sha256sum`` prints, so an
    auditor can match a key id without this tool.
    """
    return hashlib.sha256(public_der(key)).hexdigest()


def init_keys(directory: str | Path) -> KeySet:
    """Create a key folder: ``release.key``, ``signing.key`` and ``signing.pub``.

    Parameters
    ----------
    directory:
        Folder to write into; created (mode 0700) when missing.

    Returns
    -------
    KeySet
        The new keys.

    Raises
    ------
    ConfigError
        When any of the three files already exists (nothing is written then).
    """
    directory = Path(directory)
    targets = [directory / name for name in (RELEASE_KEY_FILE, SIGNING_KEY_FILE, SIGNING_PUB_FILE)]
    for target in targets:
        if target.exists():
            raise ConfigError("already exists; refusing to overwrite release keys", target)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    release_key = os.urandom(KEY_BYTES)
    signing_key = ed25519.Ed25519PrivateKey.generate()
    write_private(targets[0], release_key.hex().encode("ascii") + b"\n")
    write_private(
        targets[1],
        signing_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    _write_public(
        targets[2],
        signing_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
    return KeySet(release_key, signing_key, signing_key.public_key(), directory)


def check_private_mode(path: Path) -> None:
    """Refuse a private key file that group or others may read or write.

    A key anyone on the machine can read is no longer private; the message names the ``chmod`` to run.
    """
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(
            f"private key is accessible by group or others (mode {mode:04o}); run `chmod 600 {path}` and try again",
            path,
        )


def _missing(path: Path, directory: Path) -> ConfigError:
    return ConfigError(f"missing; run `clinrelease keys init {directory}` to create the release keys", path)


def load_release_key(path: str | Path) -> bytes:
    """Read a ``release.key`` file (64 hex characters, or 32 raw bytes); it must be mode 0600."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("release key not found", path)
    check_private_mode(path)
    raw = path.read_bytes()
    text = raw.strip()
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        key = raw
    if len(key) != KEY_BYTES:
        raise ConfigError(f"not a release key: expected {KEY_BYTES} bytes (64 hex characters)", path)
    return key


def load_signing_private(path: str | Path) -> ed25519.Ed25519PrivateKey:
    """Load an unencrypted Ed25519 private key (PEM); it must be mode 0600."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("signing key not found", path)
    check_private_mode(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"not an unencrypted PEM private key ({exc})", path) from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError("not an Ed25519 signing key", path)
    return key


def load_signing_public(path: str | Path) -> ed25519.Ed25519PublicKey:
    """Load an Ed25519 public key (PEM SubjectPublicKeyInfo)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("public key not found", path)
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except ValueError as exc:
        raise ConfigError(f"not a PEM public key ({exc})", path) from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ConfigError("not an Ed25519 public key", path)
    return key


def load_keys(directory: str | Path, need_signing: bool = True) -> KeySet:
    """Load a key folder written by :func:`init_keys`.

    Parameters
    ----------
    directory:
        The key folder.
    need_signing:
        When false, a missing ``signing.key`` is allowed (workers that only derive keyed values);
        ``signing_key`` is ``None`` then.

    Raises
    ------
    ConfigError
        A file is missing (the message says to run ``clinrelease keys init DIR``) or malformed.
    """
    directory = Path(directory)
    release_path = directory / RELEASE_KEY_FILE
    signing_path = directory / SIGNING_KEY_FILE
    pub_path = directory / SIGNING_PUB_FILE
    if not release_path.is_file():
        raise _missing(release_path, directory)
    if not pub_path.is_file():
        raise _missing(pub_path, directory)
    signing_key = None
    if signing_path.is_file():
        signing_key = load_signing_private(signing_path)
    elif need_signing:
        raise _missing(signing_path, directory)
    signing_pub = load_signing_public(pub_path)
    if signing_key is not None and public_der(signing_key.public_key()) != public_der(signing_pub):
        raise ConfigError("does not match signing.key; the key folder is inconsistent", pub_path)
    return KeySet(load_release_key(release_path), signing_key, signing_pub, directory)


def create_custodian(
    name: str,
    directory: str | Path,
    passphrase: str,
    kind: CustodianKind = "x25519",
    cost: protect.Argon2Cost = protect.DEFAULT_COST,
) -> Custodian:
    """Create a custodian key pair ``DIR/NAME.key`` (encrypted PKCS#8 PEM, 0600) + ``DIR/NAME.pub``.

    Parameters
    ----------
    name:
        Custodian name: letters, digits, ``-``, ``_`` and ``.``.
    directory:
        Folder to write into (created when missing).
    passphrase:
        Protects the private key (Argon2id); must pass the passphrase policy.
    kind:
        ``"x25519"`` (HPKE, default) or ``"rsa3072"`` (RSA-OAEP-SHA256).
    cost:
        Argon2id cost; keep the default (the CLI offers no other), tests of escrow pass a lower one.
    """
    if not name or not all(c.isalnum() or c in "-_." for c in name) or name.startswith("."):
        raise ConfigError(f"custodian name {name!r}: use letters, digits, '-', '_' or '.'")
    if not passphrase:
        raise ConfigError("an empty passphrase would leave the custodian key unprotected")
    protect.check_passphrase(passphrase)
    directory = Path(directory)
    private_path, public_path = directory / f"{name}.key", directory / f"{name}.pub"
    for target in (private_path, public_path):
        if target.exists():
            raise ConfigError("already exists; refusing to overwrite a custodian key", target)
    if kind == "x25519":
        private: CustodianPrivateKey = x25519.X25519PrivateKey.generate()
    elif kind == "rsa3072":
        private = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    else:
        raise ConfigError(f"custodian key kind {kind!r}: use 'x25519' or 'rsa3072'")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    public = private.public_key()
    write_private(private_path, _protected_bytes(private, passphrase, cost))
    _write_public(
        public_path, public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return Custodian(name, kind, private_path, public_path, key_id(public))


def load_custodian_public(path: str | Path) -> CustodianPublicKey:
    """Load a custodian public key (X25519 or RSA, PEM)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("custodian public key not found", path)
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except ValueError as exc:
        raise ConfigError(f"not a PEM public key ({exc})", path) from None
    if not isinstance(key, (x25519.X25519PublicKey, rsa.RSAPublicKey)):
        raise ConfigError("not a custodian key: expected X25519 or RSA", path)
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 3072:
        raise ConfigError(f"RSA custodian key has {key.key_size} bits; at least 3072 are required", path)
    return key


def _protected_bytes(
    private: CustodianPrivateKey, passphrase: str, cost: protect.Argon2Cost = protect.DEFAULT_COST
) -> bytes:
    der = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return protect.protect(der, passphrase, key_id(private.public_key()), cost)


def custodian_key_is_legacy(path: str | Path) -> bool:
    """Whether a custodian key file is the older PKCS#8 PEM under PBKDF2 (re-protect it with rewrap)."""
    return not protect.is_protected_document(Path(path).read_bytes())


def load_custodian_private(path: str | Path, passphrase: str | None) -> CustodianPrivateKey:
    """Load and decrypt a custodian private key (Argon2id file, or a legacy PBKDF2 PKCS#8 PEM).

    Raises
    ------
    ConfigError
        Missing file, readable by others, missing or wrong passphrase, or not a custodian key.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError("custodian key not found", path)
    check_private_mode(path)
    if not passphrase:
        raise ConfigError(f"no passphrase given for the custodian key; set {PASSPHRASE_ENV} or enter it", path)
    data = path.read_bytes()
    if protect.is_protected_document(data):
        try:
            key = serialization.load_der_private_key(protect.unprotect(data, passphrase), password=None)
        except protect.InvalidTag:
            raise ConfigError("wrong passphrase, or the custodian key file was altered", path) from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"not a custodian private key ({exc})", path) from None
    else:
        try:
            key = serialization.load_pem_private_key(data, password=passphrase.encode("utf-8"))
        except TypeError:
            raise ConfigError("not a passphrase-protected custodian key", path) from None
        except ValueError:
            raise ConfigError("wrong passphrase, or not a custodian private key", path) from None
    if not isinstance(key, (x25519.X25519PrivateKey, rsa.RSAPrivateKey)):
        raise ConfigError("not a custodian key: expected X25519 or RSA", path)
    return key


def rewrap_custodian(path: str | Path, passphrase: str, new_passphrase: str) -> None:
    """Re-protect a custodian key under ``new_passphrase`` with Argon2id (also upgrades legacy keys).

    The key pair itself (and so every escrow wrapped to it) stays the same; the file is replaced
    atomically and stays mode 0600.

    Raises
    ------
    ConfigError
        The key cannot be loaded with ``passphrase``, or ``new_passphrase`` fails the policy.
    """
    path = Path(path)
    private = load_custodian_private(path, passphrase)
    protect.check_passphrase(new_passphrase)
    write_atomic(path, _protected_bytes(private, new_passphrase), mode=0o600)

"""Passphrase protection of custodian private keys: Argon2id + AES-256-GCM, and a passphrase policy.

A custodian key decrypts every original escrowed to it, so its passphrase is stretched with
Argon2id (RFC 9106) at the second recommended option: memory 64 MiB, 3 passes, 4 lanes, a random
16-byte salt, a 32-byte key (about 0.2 s on one core here). The unencrypted PKCS#8 DER of the key is
encrypted with AES-256-GCM under that key; the file is one JSON object::

    {"format": "clinrelease-custodian-key/2",
     "kdf": {"name": "argon2id", "version": 19, "memory_kib": 65536, "iterations": 3, "lanes": 4,
             "salt": BASE64},
     "cipher": "AES-256-GCM", "nonce": BASE64, "public_key_id": SHA-256 of the public key's DER,
     "ciphertext": BASE64}

Every field but ``ciphertext`` is authenticated data (sorted compact JSON), so lowering the stored
cost or pointing the file at another public key makes decryption fail. Keys written before this
format are PKCS#8 PEM encrypted by PBKDF2 (2048 iterations): still read, flagged as legacy, and
re-protected with ``clinrelease keys rewrap``.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from clinrelease.errors import ConfigError

FORMAT = "clinrelease-custodian-key/2"
#: Argon2id cost of new custodian keys (RFC 9106 section 4, second recommended option)
ARGON2_MEMORY_KIB = 64 * 1024
ARGON2_ITERATIONS = 3
ARGON2_LANES = 4


@dataclass(frozen=True)
class Argon2Cost:
    """Argon2id cost: memory in KiB, passes, lanes. New custodian keys use :data:`DEFAULT_COST`."""

    memory_kib: int = ARGON2_MEMORY_KIB
    iterations: int = ARGON2_ITERATIONS
    lanes: int = ARGON2_LANES


DEFAULT_COST = Argon2Cost()
#: a stored cost above these is refused rather than run (a crafted file must not exhaust memory)
_MAX_MEMORY_KIB = 4 * 1024 * 1024
_MAX_ITERATIONS = 64
_MAX_LANES = 64
#: the passphrase policy of new custodian keys
MIN_PASSPHRASE_CHARS = 12
MIN_DISTINCT_CHARS = 6
_RUNS = ("abcdefghijklmnopqrstuvwxyz", "0123456789", "qwertyuiopasdfghjklzxcvbnm", "azertyuiopqsdfghjklmwxcvbn")
_COMMON_WORDS = ("password", "passphrase", "passwort", "qwerty", "letmein", "welcome", "admin", "secret", "custodian",
                 "clinrelease", "iloveyou", "changeme")


def passphrase_problem(phrase: str) -> str | None:
    """Why ``phrase`` is too weak to protect a custodian key, or ``None`` when it is acceptable.

    The policy: at least 12 characters, at least 6 different ones, not a run of the alphabet, the
    digits or a keyboard row (forwards or backwards, repeated or not), and not a common password
    word padded with digits or punctuation.
    """
    if len(phrase) < MIN_PASSPHRASE_CHARS:
        count = f"{len(phrase)} character" + ("" if len(phrase) == 1 else "s")
        return f"it has {count}; use at least {MIN_PASSPHRASE_CHARS} (a few unrelated words work well)"
    if len(set(phrase)) < MIN_DISTINCT_CHARS:
        return f"it uses only {len(set(phrase))} different characters; use at least {MIN_DISTINCT_CHARS}"
    lowered = phrase.lower()
    for run in _RUNS:
        if lowered in run * 3 or lowered in run[::-1] * 3:
            return "it is a run of the alphabet, the digits or a keyboard row"
    core = lowered.strip("0123456789 !?.,-_#*@$%&+=")
    if core in _COMMON_WORDS or any(core == word * (len(core) // len(word)) for word in _COMMON_WORDS if core):
        return "it is a common password word padded with digits or punctuation"
    return None


def check_passphrase(phrase: str) -> None:
    """Raise :class:`ConfigError` naming the rule when ``phrase`` fails :func:`passphrase_problem`."""
    problem = passphrase_problem(phrase)
    if problem is not None:
        raise ConfigError(f"passphrase too weak to protect a custodian key: {problem}")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _aad(document: dict[str, Any]) -> bytes:
    header = {k: v for k, v in document.items() if k != "ciphertext"}
    return json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _stretch(passphrase: str, kdf: dict[str, Any]) -> bytes:
    return Argon2id(
        salt=base64.b64decode(kdf["salt"]),
        length=32,
        iterations=kdf["iterations"],
        lanes=kdf["lanes"],
        memory_cost=kdf["memory_kib"],
    ).derive(passphrase.encode("utf-8"))


def protect(private_der: bytes, passphrase: str, public_key_id: str, cost: Argon2Cost = DEFAULT_COST) -> bytes:
    """The file bytes of a custodian key: ``private_der`` (PKCS#8) encrypted under ``passphrase``.

    ``cost`` is stored in the file (and authenticated), so reading needs no setting; only tests
    that exercise escrow rather than the KDF pass a lower one.
    """
    document: dict[str, Any] = {
        "format": FORMAT,
        "kdf": {
            "name": "argon2id",
            "version": 19,
            "memory_kib": cost.memory_kib,
            "iterations": cost.iterations,
            "lanes": cost.lanes,
            "salt": _b64(os.urandom(16)),
        },
        "cipher": "AES-256-GCM",
        "nonce": _b64(os.urandom(12)),
        "public_key_id": public_key_id,
    }
    key = _stretch(passphrase, document["kdf"])
    sealed = AESGCM(key).encrypt(base64.b64decode(document["nonce"]), private_der, _aad(document))
    document["ciphertext"] = _b64(sealed)
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def is_protected_document(data: bytes) -> bool:
    """Whether ``data`` looks like a file written by :func:`protect` (not a legacy PEM)."""
    return data.lstrip().startswith(b"{")


def unprotect(data: bytes, passphrase: str) -> bytes:
    """The PKCS#8 DER inside a file written by :func:`protect`.

    Raises
    ------
    ValueError
        Not such a file, or a stored cost beyond the limits.
    InvalidTag
        Wrong passphrase, or the file was altered.
    """
    document = json.loads(data)
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"format {document.get('format') if isinstance(document, dict) else None!r}")
    kdf = document["kdf"]
    if kdf.get("name") != "argon2id" or document.get("cipher") != "AES-256-GCM":
        raise ValueError(f"unknown KDF or cipher {kdf.get('name')!r} / {document.get('cipher')!r}")
    for name, limit in (("memory_kib", _MAX_MEMORY_KIB), ("iterations", _MAX_ITERATIONS), ("lanes", _MAX_LANES)):
        if not isinstance(kdf.get(name), int) or not 1 <= kdf[name] <= limit:
            raise ValueError(f"Argon2id {name} {kdf.get(name)!r} out of range")
    key = _stretch(passphrase, kdf)
    return AESGCM(key).decrypt(base64.b64decode(document["nonce"]), base64.b64decode(document["ciphertext"]), _aad(document))


__all__ = [
    "DEFAULT_COST",
    "Argon2Cost",
    "ARGON2_ITERATIONS",
    "ARGON2_LANES",
    "ARGON2_MEMORY_KIB",
    "FORMAT",
    "InvalidTag",
    "check_passphrase",
    "is_protected_document",
    "passphrase_problem",
    "protect",
    "unprotect",
]

"""Escrow of original files to custodians, and authorized reversal.

Layout of a vault (it lives outside the release; only custodians can open it)::

    VAULT/<release_id>/keys/<wrap_id>.json      the data key wrapped to each custodian
    VAULT/<release_id>/objects/<sha256>.json    one entry per released output (named by its digest)
    VAULT/<release_id>/objects/<sha256>.bin     the original file, encrypted in chunks

Each :meth:`Vault.open_release` draws a random 32-byte *data key*, splits it M-of-N with Shamir
(:mod:`clinrelease.crypto.shamir`; M = 1 gives every custodian the whole key) and wraps each share
to one custodian: HPKE (RFC 9180, DHKEM-X25519, HKDF-SHA256, AES-256-GCM) for X25519 custodians,
RSA-OAEP-SHA256 for RSA ones, with the release id and wrap id as HPKE info / OAEP label.

Each original is encrypted with AES-256-GCM in chunks (default 4 MiB) under a per-object key
``HKDF-SHA256(data_key, info="clinrelease escrow object v1" || release_id || object_id)``. Every
chunk is stored as ``nonce (12 random bytes) || ciphertext || tag`` and authenticated with

    AAD = "clinrelease-escrow-v1" 0x00 release_id 0x00 output_uid 0x00 sha256(output) (32 bytes)
          || chunk index (8 bytes, big-endian) || final flag (1 byte)

so chunks cannot be moved between objects or releases, reordered, dropped or truncated away.
Deleting ``keys/`` (:meth:`Vault.shred`) makes reversal impossible (crypto-shredding).

Each entry (format ``clinrelease-escrow-object/2``) carries ``mac`` =
``HMAC-SHA256(data_key, "escrow-entry" 0x00 canonical JSON of the other fields)``, so no field
(original digest, size, UID, wrap id) can be edited or an entry moved without the data key.
:func:`reverse` takes the released file's own SHA-256 and SOP Instance UID, refuses an entry that
names another output (:class:`VaultEntryError`, exit code 4: entry files swapped or edited), checks
the MAC once the data key is recovered, and decrypts with the file's own digest in the AAD. Entries
written before the MAC (format ``/1``) are still reversed, because the AAD of every chunk already
binds the released digest that reversal now computes from the file; their other fields are
unauthenticated, and the decrypted original's digest must still match the entry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hpke
from cryptography.hazmat.primitives.asymmetric import padding, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from clinrelease.crypto import shamir
from clinrelease.crypto.digest import sha256_file
from clinrelease.crypto.kdf import derive, derive_hex
from clinrelease.crypto.keys import (
    CustodianPrivateKey,
    CustodianPublicKey,
    key_id,
    load_custodian_private,
    load_custodian_public,
)
from clinrelease.errors import EXIT_VAULT_ENTRY, ConfigError, InputError
from clinrelease.files import write_atomic

#: default plaintext bytes per encrypted chunk
CHUNK_SIZE = 4 * 1024 * 1024
KEYS_FORMAT = "clinrelease-escrow-keys/1"
OBJECT_FORMAT = "clinrelease-escrow-object/2"
#: entries written before the entry MAC; still reversible (see the module docstring)
LEGACY_OBJECT_FORMAT = "clinrelease-escrow-object/1"
_NONCE = 12
_TAG = 16
_AAD_PREFIX = b"clinrelease-escrow-v1\x00"
_OBJECT_INFO = b"clinrelease escrow object v1\x00"
_WRAP_INFO = b"clinrelease escrow data key v1\x00"
_HPKE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
_RELEASE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class EscrowError(InputError):
    """The vault cannot give back an original: not found, tampered with, or shredded (exit 2)."""


class VaultEntryError(EscrowError):
    """A vault entry does not belong to the released file it was found for, or is not authentic.

    Its own exit code (4): the vault's entry files were swapped, moved or edited, and restoring
    would hand back another patient's original.
    """

    exit_code = EXIT_VAULT_ENTRY


@dataclass(frozen=True)
class EscrowEntry:
    """What the vault records about one escrowed original (``objects/<object_id>.json``)."""

    release_id: str
    wrap_id: str
    object_id: str
    output_uid: str
    output_sha256: str
    original_sha256: str
    original_size: int
    chunk_size: int
    chunks: int
    created: str
    format: str = OBJECT_FORMAT
    mac: str = ""

    @classmethod
    def from_json(cls, path: Path) -> EscrowEntry:
        """Read an entry file; :class:`EscrowError` when it is not one."""
        try:
            data = json.loads(path.read_text("utf-8"))
            if data.get("format") not in (OBJECT_FORMAT, LEGACY_OBJECT_FORMAT):
                raise ValueError(f"format {data.get('format')!r}")
            if (data.get("format") == OBJECT_FORMAT) != ("mac" in data):
                raise ValueError("an entry MAC where none belongs, or none where one must be")
            return cls(**data)
        except (ValueError, TypeError) as exc:
            raise EscrowError(f"not a vault entry ({exc}); the vault was tampered with", path) from None

    def signed_bytes(self) -> bytes:
        """The bytes the entry MAC covers: every field but ``mac``, as sorted compact JSON."""
        fields = {k: v for k, v in asdict(self).items() if k != "mac"}
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode("utf-8")

    def compute_mac(self, data_key: bytes) -> str:
        """HMAC-SHA256 of :meth:`signed_bytes` under the release's data key (hex)."""
        return derive(data_key, "escrow-entry", self.signed_bytes()).hex()


@dataclass(frozen=True)
class ReversalResult:
    """The outcome of :func:`reverse`: where the original went and what it was checked against
    (the site's audit log records it: :func:`clinrelease.audit.chain.record_reversal`)."""

    output: Path
    original_sha256: str
    original_size: int
    release_id: str
    output_uid: str
    released_sha256: str
    custodians: list[str] = field(default_factory=list)
    #: the released file's SHA-256 as the escrow entry recorded it
    output_sha256: str = ""
    #: False for a legacy entry without a MAC (bound to the file by the chunks' AAD only)
    entry_authenticated: bool = True


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _aad(release_id: str, output_uid: str, output_sha256: str, index: int, final: bool) -> bytes:
    return (
        _AAD_PREFIX
        + release_id.encode("utf-8")
        + b"\x00"
        + output_uid.encode("utf-8")
        + b"\x00"
        + bytes.fromhex(output_sha256)
        + index.to_bytes(8, "big")
        + (b"\x01" if final else b"\x00")
    )


def _object_key(data_key: bytes, release_id: str, object_id: str) -> bytes:
    info = _OBJECT_INFO + release_id.encode("utf-8") + b"\x00" + object_id.encode("ascii")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(data_key)


def _wrap_info(release_id: str, wrap_id: str) -> bytes:
    return _WRAP_INFO + release_id.encode("utf-8") + b"\x00" + wrap_id.encode("ascii")


def _wrap(public: CustodianPublicKey, plaintext: bytes, info: bytes) -> bytes:
    if isinstance(public, x25519.X25519PublicKey):
        return _HPKE.encrypt(plaintext, public, info=info)
    return public.encrypt(
        plaintext, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=info)
    )


def _unwrap(private: CustodianPrivateKey, wrapped: bytes, info: bytes) -> bytes:
    if isinstance(private, x25519.X25519PrivateKey):
        return _HPKE.decrypt(wrapped, private, info=info)
    return private.decrypt(
        wrapped, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=info)
    )


def _atomic_write(path: Path, data: bytes) -> None:
    write_atomic(path, data, mode=0o600)


def _read_full(fh: BinaryIO, size: int) -> bytes:
    parts, left = [], size
    while left:
        part = fh.read(left)
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _chunks(fh: BinaryIO, size: int) -> Iterator[tuple[bytes, bool]]:
    """Yield ``(chunk, is_final)``; an empty input yields one empty final chunk."""
    current = _read_full(fh, size)
    while True:
        following = _read_full(fh, size) if len(current) == size else b""
        final = not following
        yield current, final
        if final:
            return
        current = following


class EscrowSession:
    """Escrows the originals of one release under one data key; use as a context manager."""

    def __init__(self, vault: Vault, release_id: str, wrap_id: str, data_key: bytes, chunk_size: int) -> None:
        self.vault = vault
        self.release_id = release_id
        self.wrap_id = wrap_id
        self.chunk_size = chunk_size
        self._data_key = bytearray(data_key)

    def __enter__(self) -> EscrowSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Forget the data key (best effort: overwrite the buffer)."""
        for i in range(len(self._data_key)):
            self._data_key[i] = 0
        self._data_key = bytearray()

    def escrow(self, original_path: str | Path, output_uid: str, output_sha256: str) -> EscrowEntry:
        """Encrypt ``original_path`` into the vault, bound to the released output.

        Streams the file chunk by chunk (memory stays at about two chunks). Escrowing the same
        original for the same output again returns the existing entry (resumed runs).

        Parameters
        ----------
        original_path:
            The original input file, escrowed byte for byte.
        output_uid:
            The released output's SOP Instance UID (or another stable id; may be empty).
        output_sha256:
            SHA-256 (hex) of the released output file; reversal finds the entry by it.
        """
        if not self._data_key:
            raise ConfigError("the escrow session was closed")
        original_path = Path(original_path)
        if not original_path.is_file():
            raise InputError("original to escrow not found", original_path)
        if not re.fullmatch(r"[0-9a-f]{64}", output_sha256):
            raise InputError(f"output digest {output_sha256!r} is not a lowercase SHA-256 hex")
        objects = self.vault.root / self.release_id / "objects"
        objects.mkdir(parents=True, exist_ok=True)
        object_id = output_sha256
        entry_path, blob_path = objects / f"{object_id}.json", objects / f"{object_id}.bin"
        if entry_path.exists():
            existing = EscrowEntry.from_json(entry_path)
            if existing.original_sha256 == sha256_file(original_path) and existing.output_uid == output_uid:
                return existing
            raise EscrowError("a different original is already escrowed for this output", entry_path)
        aes = AESGCM(_object_key(bytes(self._data_key), self.release_id, object_id))
        digest, size, count = hashlib.sha256(), 0, 0
        fd, tmp = tempfile.mkstemp(dir=objects, prefix=f".{object_id}.", suffix=".partial")
        try:
            with os.fdopen(fd, "wb") as out, open(original_path, "rb") as src:
                for index, (chunk, final) in enumerate(_chunks(src, self.chunk_size)):
                    digest.update(chunk)
                    size += len(chunk)
                    nonce = os.urandom(_NONCE)
                    aad = _aad(self.release_id, output_uid, output_sha256, index, final)
                    out.write(nonce + aes.encrypt(nonce, chunk, aad))
                    count = index + 1
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, blob_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        entry = EscrowEntry(
            release_id=self.release_id,
            wrap_id=self.wrap_id,
            object_id=object_id,
            output_uid=output_uid,
            output_sha256=output_sha256,
            original_sha256=digest.hexdigest(),
            original_size=size,
            chunk_size=self.chunk_size,
            chunks=count,
            created=_now(),
        )
        entry = replace(entry, mac=entry.compute_mac(bytes(self._data_key)))
        _atomic_write(entry_path, (json.dumps(asdict(entry), indent=2) + "\n").encode("utf-8"))
        return entry


class Vault:
    """A folder of escrowed originals (see the module docstring for its layout).

    Parameters
    ----------
    root:
        The vault folder; keep it outside every release.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def open_release(
        self,
        release_id: str,
        custodian_pubs: Sequence[str | Path],
        m_of_n: int | None = None,
        chunk_size: int = CHUNK_SIZE,
    ) -> EscrowSession:
        """Start escrowing a release: draw a data key and wrap it (or its shares) to the custodians.

        Parameters
        ----------
        release_id:
            Letters, digits, ``.``, ``_``, ``-`` (at most 128). Calling again for the same release
            (a resumed run) adds a new wrapped key; entries name the one they use.
        custodian_pubs:
            Custodian public key files (``NAME.pub``), X25519 or RSA >= 3072 bits.
        m_of_n:
            How many custodians must take part in a reversal; default 1 (any one of them).
        chunk_size:
            Plaintext bytes per encrypted chunk.
        """
        if not _RELEASE_ID.match(release_id):
            raise ConfigError(f"release id {release_id!r}: use letters, digits, '.', '_' or '-'")
        if not custodian_pubs:
            raise ConfigError("escrow needs at least one custodian public key (--escrow-to)")
        if not 1 <= chunk_size <= 1 << 30:
            raise ConfigError(f"chunk size {chunk_size} out of range")
        publics = [(Path(p), load_custodian_public(p)) for p in custodian_pubs]
        fingerprints = [key_id(public) for _, public in publics]
        if len(set(fingerprints)) != len(fingerprints):
            raise ConfigError("the same custodian key was given twice")
        threshold = 1 if m_of_n is None else m_of_n
        if not 1 <= threshold <= len(publics):
            raise ConfigError(f"M-of-N: M={threshold} must be between 1 and the {len(publics)} custodians given")
        keys_dir = self.root / release_id / "keys"
        keys_dir.mkdir(parents=True, exist_ok=True)
        wrap_id = secrets.token_hex(8)
        data_key = os.urandom(32)
        shares = shamir.split(data_key, threshold, len(publics))
        info = _wrap_info(release_id, wrap_id)
        recipients = []
        for (path, public), fingerprint, share in zip(publics, fingerprints, shares):
            recipients.append(
                {
                    "name": path.stem,
                    "fingerprint": fingerprint,
                    "kind": "x25519" if isinstance(public, x25519.X25519PublicKey) else "rsa",
                    "share": share.x,
                    "wrapped": base64.b64encode(_wrap(public, share.to_bytes(), info)).decode("ascii"),
                }
            )
        document = {
            "format": KEYS_FORMAT,
            "release_id": release_id,
            "wrap_id": wrap_id,
            "created": _now(),
            "threshold": threshold,
            # lets reversal tell "wrong shares" from "tampered chunks"; an HMAC reveals nothing of the key
            "key_check": derive_hex(data_key, "escrow-key-check", release_id),
            "recipients": recipients,
        }
        _atomic_write(keys_dir / f"{wrap_id}.json", (json.dumps(document, indent=2) + "\n").encode("utf-8"))
        return EscrowSession(self, release_id, wrap_id, data_key, chunk_size)

    def entries(self) -> list[EscrowEntry]:
        """Every entry in the vault, all releases."""
        return [EscrowEntry.from_json(p) for p in sorted(self.root.glob("*/objects/*.json"))]

    def find(self, output_sha256: str) -> list[EscrowEntry]:
        """Entries whose released output has this digest."""
        if not re.fullmatch(r"[0-9a-f]{64}", output_sha256):
            return []
        return [EscrowEntry.from_json(p) for p in sorted(self.root.glob(f"*/objects/{output_sha256}.json"))]

    def shred(self, release_id: str) -> list[Path]:
        """Delete a release's wrapped keys so that no one can reverse it any more; returns what went."""
        removed = []
        for path in sorted((self.root / release_id / "keys").glob("*.json")):
            path.unlink()
            removed.append(path)
        return removed

    def recover_data_key(self, entry: EscrowEntry, custodians: Sequence[CustodianPrivateKey]) -> bytes:
        """Unwrap ``entry``'s data key with enough custodian private keys.

        Raises
        ------
        ConfigError
            A key is not a recipient of this release, or too few keys were given.
        EscrowError
            The wrapped keys are gone (shredded) or were tampered with.
        """
        keys_path = self.root / entry.release_id / "keys" / f"{entry.wrap_id}.json"
        if not keys_path.is_file():
            raise EscrowError(
                f"release {entry.release_id}'s wrapped keys are gone (crypto-shredded); reversal is impossible",
                keys_path,
            )
        try:
            document = json.loads(keys_path.read_text("utf-8"))
            if document.get("format") != KEYS_FORMAT or document.get("release_id") != entry.release_id:
                raise ValueError("wrong format or release id")
            threshold = int(document["threshold"])
            recipients = {r["fingerprint"]: r for r in document["recipients"]}
        except (ValueError, KeyError, TypeError) as exc:
            raise EscrowError(f"not a wrapped-key file ({exc}); the vault was tampered with", keys_path) from None
        info = _wrap_info(entry.release_id, entry.wrap_id)
        shares: list[shamir.Share] = []
        for private in custodians:
            fingerprint = key_id(private.public_key())
            recipient = recipients.get(fingerprint)
            if recipient is None:
                raise ConfigError(
                    f"this custodian key (id {fingerprint[:16]}) is not one release {entry.release_id} "
                    f"was escrowed to (custodians: {', '.join(sorted(r['name'] for r in recipients.values()))})"
                )
            try:
                share = shamir.Share.from_bytes(_unwrap(private, base64.b64decode(recipient["wrapped"]), info))
            except (InvalidTag, ValueError):
                raise EscrowError(
                    f"the data key wrapped to custodian {recipient['name']} does not decrypt; "
                    "the vault's key file was tampered with",
                    keys_path,
                ) from None
            if share.x != recipient["share"]:
                raise EscrowError("a wrapped share does not match its recipient; the vault was tampered with", keys_path)
            shares.append(share)
        if len({s.x for s in shares}) < threshold:
            raise ConfigError(
                f"release {entry.release_id} needs {threshold} different custodian keys; {len(shares)} given"
            )
        data_key = shamir.combine(shares[:threshold])
        if derive_hex(data_key, "escrow-key-check", entry.release_id) != document.get("key_check"):
            raise EscrowError("the recovered data key is wrong; the vault's key file was tampered with", keys_path)
        return data_key

    def entry_path(self, entry: EscrowEntry) -> Path:
        """Where ``entry`` is stored."""
        return self.root / entry.release_id / "objects" / f"{entry.object_id}.json"

    def authenticate(self, entry: EscrowEntry, data_key: bytes) -> bool:
        """Check ``entry``'s MAC under the release's data key.

        Returns ``False`` for a legacy entry (format ``/1``, written before the MAC), which has none;
        its binding to the released file then rests on the chunks' AAD alone.

        Raises
        ------
        VaultEntryError
            The MAC does not verify: the entry was edited or moved from another object (exit 4).
        """
        if entry.format == LEGACY_OBJECT_FORMAT:
            return False
        if not hmac.compare_digest(entry.compute_mac(data_key), entry.mac):
            raise VaultEntryError(
                f"the vault entry is not authentic (its MAC does not verify under release {entry.release_id}'s "
                "data key): it was edited, or moved from another object; refusing to restore",
                self.entry_path(entry),
            )
        return True

    def decrypt_to(self, entry: EscrowEntry, data_key: bytes, destination: BinaryIO) -> str:
        """Decrypt ``entry``'s original into ``destination``; returns its SHA-256 (hex).

        Raises :class:`EscrowError` on the first chunk that fails authentication; the caller must
        throw ``destination`` away then.
        """
        blob = self.root / entry.release_id / "objects" / f"{entry.object_id}.bin"
        if not blob.is_file():
            raise EscrowError("the encrypted original is missing from the vault", blob)
        aes = AESGCM(_object_key(data_key, entry.release_id, entry.object_id))
        digest = hashlib.sha256()
        record = _NONCE + entry.chunk_size + _TAG
        with open(blob, "rb") as fh:
            index = 0
            current = _read_full(fh, record)
            while True:
                following = _read_full(fh, record) if len(current) == record else b""
                final = not following
                aad = _aad(entry.release_id, entry.output_uid, entry.output_sha256, index, final)
                try:
                    plain = aes.decrypt(current[:_NONCE], current[_NONCE:], aad)
                except (InvalidTag, ValueError):
                    raise EscrowError(
                        f"chunk {index} of the encrypted original fails authentication: the vault was "
                        "tampered with, truncated, or this entry belongs to another release",
                        blob,
                    ) from None
                digest.update(plain)
                destination.write(plain)
                if final:
                    break
                index, current = index + 1, following
        return digest.hexdigest()


def _released_uid(path: Path) -> str | None:
    """SOP Instance UID of a DICOM file, or ``None`` when it is not DICOM."""
    try:
        import pydicom

        dataset = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        uid = dataset.get("SOPInstanceUID")
        return str(uid) if uid else None
    except Exception:  # not DICOM: nothing to fall back on
        return None


def _check_binding(entry: EscrowEntry, entry_path: Path, released_file: Path, released_sha256: str, uid: str | None) -> None:
    """Refuse an entry that describes another output than ``released_file`` (swapped or edited)."""
    release_dir = entry_path.parent.parent.name
    problems = []
    if entry.object_id != released_sha256 or entry.output_sha256 != released_sha256:
        problems.append(f"it describes the output with SHA-256 {entry.output_sha256}, this file's is {released_sha256}")
    if entry.release_id != release_dir:
        problems.append(f"it names release {entry.release_id} but lies in {release_dir}")
    if uid is not None and entry.output_uid != uid:
        problems.append(f"it names SOP Instance UID {entry.output_uid}, this file has {uid}")
    if problems:
        raise VaultEntryError(
            f"the vault entry {entry_path} does not belong to {released_file}: " + "; ".join(problems)
            + ". The vault's entry files were swapped or edited; refusing to restore another file's original",
            entry_path,
        )


def find_entry(vault: Vault, released_file: Path) -> tuple[EscrowEntry, str]:
    """The vault entry of a released file and the file's SHA-256.

    The entry must describe this very file: its object id and output digest equal the file's
    SHA-256, its release id the folder it lies in, and (for DICOM) its UID the file's SOP Instance
    UID. Its MAC is checked later, by :meth:`Vault.authenticate`, once the data key is recovered.

    Raises
    ------
    VaultEntryError
        The entry found under the file's digest describes another output (exit code 4).
    EscrowError
        Not in this vault, or changed since it was released.
    """
    released_sha256 = sha256_file(released_file)
    uid = _released_uid(released_file)
    paths = sorted(vault.root.glob(f"*/objects/{released_sha256}.json"))
    found = [(path, EscrowEntry.from_json(path)) for path in paths]
    for path, entry in found:
        _check_binding(entry, path, released_file, released_sha256, uid)
    if found:
        if len({(e.release_id, e.original_sha256) for _, e in found}) > 1:
            raise EscrowError(
                "several releases in the vault escrowed different originals for this exact file: "
                + ", ".join(sorted(e.release_id for _, e in found)),
                released_file,
            )
        return found[0][1], released_sha256
    if uid is not None and any(e.output_uid == uid for e in vault.entries()):
        raise EscrowError(
            f"changed since it was released: its SHA-256 {released_sha256} differs from the digest "
            f"escrowed for SOP Instance UID {uid}",
            released_file,
        )
    raise EscrowError(
        f"no escrowed original for this file (SHA-256 {released_sha256}) in vault {vault.root}: "
        "it comes from a release not escrowed there, or it was changed after release",
        released_file,
    )


def reverse(
    released_file: str | Path,
    vault_dir: str | Path,
    custodian_key_path: str | Path | Sequence[str | Path],
    passphrase: str | Sequence[str] | None,
    output: str | Path,
    *,
    overwrite: bool = False,
) -> ReversalResult:
    """Restore the original of a released file from the vault, bit for bit.

    The original is decrypted into a temporary file beside ``output``; only when every chunk
    authenticates and the original's SHA-256 matches the escrow entry is it renamed to ``output``.
    On any failure nothing is left behind.

    Parameters
    ----------
    released_file:
        A file from a release (found in the vault by its SHA-256).
    vault_dir:
        The vault folder.
    custodian_key_path:
        One custodian private key file, or M of them for an M-of-N escrow.
    passphrase:
        The passphrase of the key(s): one for all, or one per key.
    output:
        Where to write the original.
    overwrite:
        Replace an existing ``output``; otherwise an existing output is an error.

    Raises
    ------
    ConfigError
        Wrong or missing passphrase, a key that is not a recipient, too few keys, output exists.
    VaultEntryError
        The entry found for the file describes another output, or its MAC does not verify (exit 4).
    EscrowError
        The file is not in the vault, was changed, or the vault was tampered with or shredded.
    """
    released_file, output, vault = Path(released_file), Path(output), Vault(vault_dir)
    if not released_file.is_file():
        raise InputError("released file not found", released_file)
    if not vault.root.is_dir():
        raise ConfigError("vault folder not found", vault.root)
    if output.exists() and not overwrite:
        raise ConfigError("already exists; choose another --output", output)
    if not output.parent.is_dir():
        raise ConfigError("the output's folder does not exist", output.parent)
    key_paths = [custodian_key_path] if isinstance(custodian_key_path, (str, Path)) else list(custodian_key_path)
    if not key_paths:
        raise ConfigError("no custodian key given")
    phrases = [passphrase] * len(key_paths) if passphrase is None or isinstance(passphrase, str) else list(passphrase)
    if len(phrases) != len(key_paths):
        raise ConfigError(f"{len(key_paths)} custodian keys but {len(phrases)} passphrases")
    entry, released_sha256 = find_entry(vault, released_file)
    privates = [load_custodian_private(p, phrase) for p, phrase in zip(key_paths, phrases)]
    data_key = vault.recover_data_key(entry, privates)
    entry_authenticated = vault.authenticate(entry, data_key)
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as fh:
            original_sha256 = vault.decrypt_to(entry, data_key, fh)
            fh.flush()
            os.fsync(fh.fileno())
        if original_sha256 != entry.original_sha256:
            raise EscrowError(
                f"the decrypted original's SHA-256 {original_sha256} differs from the escrowed "
                f"{entry.original_sha256}; the vault entry was tampered with",
                vault.entry_path(entry),
            )
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return ReversalResult(
        output=output,
        original_sha256=original_sha256,
        original_size=entry.original_size,
        release_id=entry.release_id,
        output_uid=entry.output_uid,
        released_sha256=released_sha256,
        custodians=[key_id(p.public_key()) for p in privates],
        output_sha256=entry.output_sha256,
        entry_authenticated=entry_authenticated,
    )


__all__ = [
    "CHUNK_SIZE",
    "EscrowEntry",
    "EscrowError",
    "EscrowSession",
    "ReversalResult",
    "Vault",
    "VaultEntryError",
    "find_entry",
    "reverse",
    "sha256_file",
]


"""The hash-chained audit log: an internal copy for the site and a released copy for the release.

Both copies are JSON Lines of canonical records (:mod:`clinrelease.audit.records`), each chained
to the one before by ``prev``. They hold the same records except for *internal-only* fields
(original digests, input paths), which only the internal copy carries; the released copy carries
a keyed commitment ``input_commitment = HMAC(release key, "commitment", original_sha256)``
instead, so holding an original proves nothing to an outsider, while the site can recompute it.

Appends take an exclusive ``flock`` on the file, so reversal events from several processes
chain correctly, and an existing log is continued (resumed runs).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from clinrelease.audit.records import GENESIS, RECORD_TYPES, RESERVED, canonical_bytes, canonical_digest, record_digest, to_plain, utc_now
from clinrelease.crypto.kdf import derive_hex
from clinrelease.crypto.keys import key_id
from clinrelease.errors import InputError

#: internal-only field turned into ``input_commitment`` in the released copy
ORIGINAL_DIGEST_FIELD = "original_sha256"
COMMITMENT_FIELD = "input_commitment"


def commitment(commitment_key: bytes, original_sha256: str) -> str:
    """The keyed commitment to an original's digest that the released log carries."""
    return derive_hex(commitment_key, "commitment", original_sha256)


def _last_line(fh: Any) -> bytes | None:
    """The last non-empty line of an open binary file, reading backwards."""
    fh.seek(0, os.SEEK_END)
    end = fh.tell()
    block, data = 65536, b""
    position = end
    while position > 0:
        step = min(block, position)
        position -= step
        fh.seek(position)
        data = fh.read(step) + data
        stripped = data.rstrip(b"\n")
        if b"\n" in stripped:
            return stripped.rsplit(b"\n", 1)[1]
    stripped = data.rstrip(b"\n")
    return stripped or None


def sign_record(record: dict[str, Any], key: ed25519.Ed25519PrivateKey) -> dict[str, Any]:
    """Add ``sig`` = {keyid, sig}: Ed25519 over the canonical bytes of the record without ``sig``."""
    unsigned = {k: v for k, v in record.items() if k != "sig"}
    signature = key.sign(canonical_bytes(unsigned))
    return {**unsigned, "sig": {"keyid": key_id(key.public_key()), "sig": base64.b64encode(signature).decode("ascii")}}


def record_signature_ok(record: Mapping[str, Any], public: ed25519.Ed25519PublicKey) -> bool:
    """Whether a signed record's ``sig`` verifies with ``public``."""
    sig = record.get("sig")
    if not isinstance(sig, Mapping) or sig.get("keyid") != key_id(public):
        return False
    unsigned = {k: v for k, v in record.items() if k != "sig"}
    try:
        public.verify(base64.b64decode(str(sig.get("sig"))), canonical_bytes(unsigned))
    except (InvalidSignature, ValueError):
        return False
    return True


class _ChainFile:
    """One JSONL chain file, appended to under an exclusive lock."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(
        self, entries: Sequence[tuple[str, Mapping[str, Any]]], sign_with: ed25519.Ed25519PrivateKey | None
    ) -> list[dict[str, Any]]:
        """Chain ``entries`` (record type, fields) onto the file under one lock, flushed to disk once."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                last = _last_line(fh)
                if last is None:
                    seq, prev = 0, GENESIS
                else:
                    try:
                        previous = json.loads(last)
                        seq, prev = int(previous["seq"]) + 1, record_digest(previous)
                    except (ValueError, KeyError, TypeError):
                        raise InputError("the last audit record is not valid; refusing to extend the log", self.path) from None
                records, lines = [], []
                for record_type, fields in entries:
                    record: dict[str, Any] = {"type": record_type, "seq": seq, "prev": prev, "time": utc_now()}
                    record.update(to_plain(dict(fields)))
                    if sign_with is not None:
                        record = sign_record(record, sign_with)
                    data = canonical_bytes(record)
                    records.append(record)
                    lines.append(data + b"\n")
                    seq, prev = seq + 1, canonical_digest(data)
                fh.seek(0, os.SEEK_END)
                fh.write(b"".join(lines))
                fh.flush()
                os.fsync(fh.fileno())
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return records


class AuditLog:
    """Appends records to the internal log and, when given, the released log.

    Parameters
    ----------
    internal_path:
        The site's full log (original digests included). Never part of a release.
    released_path:
        The log that goes into the release (:func:`clinrelease.audit.finalize.finalize_release` copies it to
        ``OUT/audit/log.jsonl``); ``None`` for an internal-only log (reversal events).
    commitment_key:
        The release key; needed when records carry ``original_sha256`` internal-only fields.
    """

    def __init__(
        self,
        internal_path: str | Path,
        released_path: str | Path | None = None,
        commitment_key: bytes | None = None,
    ) -> None:
        self.internal_path = Path(internal_path)
        self.released_path = Path(released_path) if released_path is not None else None
        if self.released_path is not None and self.released_path.resolve() == self.internal_path.resolve():
            raise ValueError("the internal and released logs must be different files")
        self.commitment_key = commitment_key
        self._internal = _ChainFile(self.internal_path)
        self._released = _ChainFile(self.released_path) if self.released_path is not None else None

    def append(
        self,
        record_type: str,
        fields: Mapping[str, Any],
        internal_only_fields: Mapping[str, Any] | None = None,
        sign_with: ed25519.Ed25519PrivateKey | None = None,
    ) -> dict[str, Any]:
        """Append one record to both logs; returns the internal record.

        Parameters
        ----------
        record_type:
            One of ``release_start``, ``item``, ``artifact``, ``release_end``, ``reversal``.
        fields:
            Fields both copies carry (``type``, ``seq``, ``prev``, ``time``, ``sig`` are reserved).
        internal_only_fields:
            Fields only the internal copy carries. An ``original_sha256`` here adds
            ``input_commitment`` (keyed HMAC of it) to both copies.
        sign_with:
            When given, each copy of the record is signed on its own (``sig`` field).
        """
        return self.extend([(record_type, fields, internal_only_fields)], sign_with=sign_with)[0]

    def extend(
        self,
        entries: Sequence[tuple[str, Mapping[str, Any], Mapping[str, Any] | None]],
        *,
        sign_with: ed25519.Ed25519PrivateKey | None = None,
    ) -> list[dict[str, Any]]:
        """Append several records (record type, fields, internal-only fields; as :meth:`append`) to
        both logs, each log written and flushed to disk once; returns the internal records."""
        internal, released = [], []
        for record_type, fields, internal_only_fields in entries:
            shared, internal_only = self._fields(record_type, fields, internal_only_fields)
            internal.append((record_type, {**shared, **internal_only}))
            released.append((record_type, shared))
        internal_records = self._internal.append(internal, sign_with)
        if self._released is not None:
            self._released.append(released, sign_with)
        return internal_records

    def _fields(
        self, record_type: str, fields: Mapping[str, Any], internal_only_fields: Mapping[str, Any] | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(fields both copies carry, fields only the internal copy carries), checked."""
        if record_type not in RECORD_TYPES:
            raise ValueError(f"unknown audit record type {record_type!r}; use one of {', '.join(RECORD_TYPES)}")
        internal_only = dict(internal_only_fields or {})
        clash = [k for k in (*fields, *internal_only) if k in RESERVED]
        if clash:
            raise ValueError(f"audit record fields {clash} are set by the log itself")
        if ORIGINAL_DIGEST_FIELD in fields and self._released is not None:
            raise ValueError("original digests are internal-only: pass original_sha256 in internal_only_fields")
        shared = dict(fields)
        if ORIGINAL_DIGEST_FIELD in internal_only and (self._released is not None or self.commitment_key is not None):
            if self.commitment_key is None:
                raise ValueError("an original digest needs the release key (commitment_key) for its commitment")
            shared[COMMITMENT_FIELD] = commitment(self.commitment_key, str(internal_only[ORIGINAL_DIGEST_FIELD]))
        return shared, internal_only


def record_reversal(log_path: str | Path, result: Any, signing_key: ed25519.Ed25519PrivateKey, operator: str | None = None, reason: str = "") -> dict[str, Any]:
    """Append a signed ``reversal`` record for a restored original (a
    :class:`clinrelease.crypto.escrow.ReversalResult`) to the site's internal log; return the record."""
    return AuditLog(log_path).append(
        "reversal",
        {
            "release_id": result.release_id,
            "output_uid": result.output_uid,
            "output_sha256": result.output_sha256,
            "original_sha256": result.original_sha256,
            "restored_to": str(Path(result.output).resolve()),
            "custodians": list(result.custodians),
            "operator": operator or os.environ.get("USER", "unknown"),
            "reason": reason or "",
        },
        sign_with=signing_key,
    )


def read_log(path: str | Path) -> list[bytes]:
    """The raw lines of a JSONL log (without newlines; blank lines kept out)."""
    data = Path(path).read_bytes()
    return [line for line in data.split(b"\n") if line.strip()]


def check_chain(lines: Sequence[bytes], public: ed25519.Ed25519PublicKey | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Parse and check a log's lines; returns ``(records, failures)``.

    Checks that every line is a canonical JSON record of a known type, that ``seq`` runs 0, 1, 2,
    ... (naming removed or reordered records), that each ``prev`` is the digest of the line
    before, and, when ``public`` is given, that every signed record's signature verifies.
    """
    records: list[dict[str, Any]] = []
    failures: list[str] = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError:
            failures.append(f"log line {number} is not a JSON record")
            continue
        if canonical_bytes(record) != line:
            failures.append(f"log line {number} (seq {record.get('seq')}) is not in canonical form: it was edited")
        if record.get("type") not in RECORD_TYPES:
            failures.append(f"log line {number} has unknown record type {record.get('type')!r}")
        if public is not None and "sig" in record and not record_signature_ok(record, public):
            failures.append(f"log line {number} (seq {record.get('seq')}): its record signature does not verify")
        records.append(record)
    seqs = [r.get("seq") for r in records]
    if seqs != list(range(len(records))):
        ints = [s for s in seqs if isinstance(s, int)]
        if sorted(ints) == list(range(len(records))):
            moved = [f"line {i + 1} holds seq {s}" for i, s in enumerate(seqs) if s != i]
            failures.append("records reordered: " + ", ".join(moved))
        else:
            top = max(ints, default=-1)
            missing = sorted(set(range(top + 1)) - set(ints))
            if missing:
                failures.append("record(s) removed: seq " + ", ".join(map(str, missing)) + " missing from the log")
            duplicated = sorted({s for s in ints if ints.count(s) > 1})
            if duplicated:
                failures.append("record(s) duplicated: seq " + ", ".join(map(str, duplicated)))
            if not missing and not duplicated:
                failures.append(f"record sequence numbers are not 0..{len(records) - 1}: {seqs}")
        return records, failures
    digests = [record_digest(r) for r in records]
    for i, record in enumerate(records):
        expected = GENESIS if i == 0 else digests[i - 1]
        if record.get("prev") != expected:
            if i == 0:
                failures.append("record seq 0 does not start the chain (prev is not 64 zeros): records removed from the start")
            else:
                failures.append(
                    f"hash chain broken between seq {i - 1} and seq {i}: record seq {i - 1} "
                    f"({records[i - 1].get('type')}) was edited, or records were removed or inserted there"
                )
    return records, failures

"""Close a release: the last audit record, the signed in-toto statement and the manifests.

:func:`finalize_release` is the merge step's last act; it alone needs the signing key. It writes

* ``OUT/audit/log.jsonl``: the released copy of the hash-chained log, ending in ``release_end``;
* ``OUT/audit/statement.dsse.json``: an in-toto Statement v1 whose subjects are the released
  files with their SHA-256 and whose predicate holds the release id and nonce
  (:mod:`clinrelease.audit.identity`), the Merkle root and the log's digest, in a DSSE envelope
  signed with Ed25519;
* ``OUT/bagit.txt``, ``OUT/manifest-sha256.txt`` and ``OUT/tagmanifest-sha256.txt``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from clinrelease import __version__
from clinrelease.audit.chain import AuditLog, read_log
from clinrelease.audit.dsse import IN_TOTO_PAYLOAD_TYPE, STATEMENT_TYPE, sign_envelope
from clinrelease.audit.manifest import AUDIT_DIR, payload_files, write_manifest, write_tagmanifest
from clinrelease.audit.merkle import merkle_root
from clinrelease.audit.records import ARTIFACT, ITEM, RELEASE_END, RELEASE_START, canonical_bytes, record_digest, utc_now
from clinrelease.crypto.digest import sha256_file
from clinrelease.errors import InputError
from clinrelease.files import write_atomic

#: the predicate type of a clinrelease release statement
PREDICATE_TYPE = "https://clinrelease.dev/release/v1"
LOG_NAME = "log.jsonl"
STATEMENT_NAME = "statement.dsse.json"


@dataclass(frozen=True)
class FinalizeResult:
    """What :func:`finalize_release` wrote."""

    log_path: Path
    statement_path: Path
    manifest_path: Path
    tagmanifest_path: Path
    merkle_root: str
    log_sha256: str
    files: list[tuple[str, str]]


def _normalise(out: Path, files: Sequence[Any] | None) -> list[tuple[str, str]]:
    """``(relpath, sha256)`` for each released file, hashed from disk."""
    listed = payload_files(out) if files is None else list(files)
    result = []
    for entry in listed:
        rel, claimed = (entry, None) if isinstance(entry, (str, os.PathLike)) else (entry[0], entry[1])
        rel = Path(rel).as_posix()
        path = out / rel
        if not path.is_file():
            raise InputError("listed as released but not in the release", path)
        digest = sha256_file(path)
        if claimed is not None and claimed != digest:
            raise InputError(f"changed since it was recorded (sha256 {digest}, recorded {claimed})", path)
        result.append((rel, digest))
    on_disk = set(payload_files(out))
    extra = sorted(on_disk - {rel for rel, _ in result})
    if extra:
        raise InputError(f"files in the release that were not listed for it: {', '.join(extra)}", out)
    return sorted(result, key=lambda f: f[0].encode("utf-8"))


def build_statement(files: Sequence[tuple[str, str]], predicate: Mapping[str, Any]) -> dict[str, Any]:
    """An in-toto Statement v1 over the released files."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": rel, "digest": {"sha256": digest}} for rel, digest in files],
        "predicateType": PREDICATE_TYPE,
        "predicate": dict(predicate),
    }


def finalize_release(
    log: AuditLog,
    out_dir: str | Path,
    signing_key: ed25519.Ed25519PrivateKey,
    files: Sequence[Any] | None = None,
    end_fields: Mapping[str, Any] | None = None,
) -> FinalizeResult:
    """Append ``release_end``, then write the released log, the signed statement and the manifests.

    Parameters
    ----------
    log:
        The release's :class:`AuditLog` (it must have a released copy).
    out_dir:
        The release folder (``OUT``).
    signing_key:
        The site's Ed25519 signing key.
    files:
        Released files relative to ``OUT`` (paths, or ``(path, sha256)`` pairs to cross-check);
        default: every payload file on disk. Files without an ``item`` record (clinical tables,
        the QA report) get an ``artifact`` record here, so every released file has one record.
    end_fields:
        Extra fields for the ``release_end`` record.

    Raises
    ------
    InputError
        A listed file is missing or changed, a file is in ``OUT`` but not listed, an item record
        names an output that is not released, or the log is already finalized.
    """
    if log.released_path is None:
        raise ValueError("finalize_release needs an AuditLog with a released copy")
    out = Path(out_dir)
    released = _normalise(out, files)
    digests = dict(released)
    records = [json.loads(line) for line in read_log(log.released_path)] if log.released_path.exists() else []
    if not records or records[0].get("type") != RELEASE_START:
        raise InputError("the audit log does not begin with a release_start record", log.released_path)
    if any(r.get("type") == RELEASE_END for r in records):
        raise InputError("the release was already finalized (the log has a release_end record)", log.released_path)
    covered: set[str] = set()
    verdicts: Counter[str] = Counter()
    for record in records:
        if record.get("type") == ITEM:
            verdicts[str(record.get("verdict"))] += 1
            output = record.get("output") or {}
            if record.get("verdict") == "released":
                rel = output.get("path")
                if rel not in digests:
                    raise InputError(f"item record seq {record['seq']} names output {rel!r}, not in the release", out)
                if output.get("sha256") != digests[rel]:
                    raise InputError(f"changed after its item record was written (seq {record['seq']})", out / rel)
                covered.add(rel)
        elif record.get("type") == ARTIFACT:
            covered.add(str(record.get("path")))
    artifacts = [
        (ARTIFACT, {"path": rel, "sha256": digest, "kind": rel.split("/", 1)[0] if "/" in rel else "file"}, None)
        for rel, digest in released
        if rel not in covered
    ]
    root = merkle_root(released)
    end = {
        "ended": utc_now(),
        "counts": {
            "items": sum(verdicts.values()),
            "released": verdicts.get("released", 0),
            "quarantined": verdicts.get("quarantined", 0),
            "files": len(released),
        },
        "merkle_root": root,
        **dict(end_fields or {}),
    }
    log.extend([*artifacts, (RELEASE_END, end, None)])
    audit_dir = out / AUDIT_DIR
    audit_dir.mkdir(exist_ok=True)
    log_bytes = log.released_path.read_bytes()
    log_path = audit_dir / LOG_NAME
    if log_path.resolve() != log.released_path.resolve():
        write_atomic(log_path, log_bytes)
    final_records = [json.loads(line) for line in read_log(log_path)]
    start = final_records[0]
    predicate = {
        "release_id": start.get("release_id"),
        "nonce": start.get("nonce", ""),
        "tool": {"name": "clinrelease", "version": __version__},
        "merkle_root": root,
        "log": {
            "path": f"{AUDIT_DIR}/{LOG_NAME}",
            "sha256": hashlib.sha256(log_bytes).hexdigest(),
            "records": len(final_records),
            "head": record_digest(final_records[-1]),
        },
    }
    statement = build_statement(released, predicate)
    envelope = sign_envelope(canonical_bytes(statement), IN_TOTO_PAYLOAD_TYPE, signing_key)
    statement_path = audit_dir / STATEMENT_NAME
    write_atomic(statement_path, canonical_bytes(envelope) + b"\n")
    manifest_path = write_manifest(out, released)
    tagmanifest_path = write_tagmanifest(out)
    return FinalizeResult(
        log_path=log_path,
        statement_path=statement_path,
        manifest_path=manifest_path,
        tagmanifest_path=tagmanifest_path,
        merkle_root=root,
        log_sha256=predicate["log"]["sha256"],
        files=released,
    )

"""Verify a release against its signed audit statement: ``clinrelease audit verify OUT --key PUB``.

Every check runs even after a failure, so one run names every problem. The checks:

``signature``  the DSSE envelope verifies with the given Ed25519 public key;
``statement``  it is an in-toto Statement v1 with safe subject paths, its release id and nonce are
               those of ``release_start``, and (when the auditor names one) the release id is the
               expected one: a whole release folder replayed as another release fails here;
``files``      every subject exists with its signed SHA-256, no other payload file exists, and the
               tag files are exactly :data:`TAG_FILES` (nothing added to ``audit/`` or beside it);
``manifest``   ``manifest-sha256.txt`` and ``tagmanifest-sha256.txt`` match the files, and the tag
               manifest lists exactly the other tag files;
``log``        ``audit/log.jsonl`` is the log the statement signed, and its hash chain holds;
``merkle``     the Merkle root over the files equals the signed one and the ``release_end`` one;
``records``    exactly one ``item``/``artifact`` record per released file, and none for others;
``figures``    every recorded check recomputes to its recorded outcome under the thresholds of
               ``release_start``, and no released item failed a check.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from clinrelease.audit.chain import check_chain, read_log
from clinrelease.audit.dsse import STATEMENT_TYPE, EnvelopeError, envelope_payload, verify_envelope
from clinrelease.audit.finalize import LOG_NAME, PREDICATE_TYPE, STATEMENT_NAME
from clinrelease.audit.manifest import AUDIT_DIR, BAGIT, MANIFEST, TAG_NAMES, TAGMANIFEST, payload_files, read_manifest
from clinrelease.audit.merkle import merkle_root
from clinrelease.audit.records import ARTIFACT, ITEM, RELEASE_END, RELEASE_START, record_digest, recheck
from clinrelease.crypto.digest import sha256_file
from clinrelease.crypto.keys import load_signing_public
from clinrelease.errors import InputError

CHECK_NAMES = ("signature", "statement", "files", "manifest", "log", "merkle", "records", "figures")
#: the tag files a finalized release holds, no more and no fewer
TAG_FILES = (BAGIT, MANIFEST, TAGMANIFEST, f"{AUDIT_DIR}/{LOG_NAME}", f"{AUDIT_DIR}/{STATEMENT_NAME}")


@dataclass
class AuditReport:
    """Outcome of :func:`verify_release`.

    Attributes
    ----------
    ok:
        True only when every check passed.
    failures:
        One specific message per problem found.
    checks:
        Check name -> passed (see the module docstring for the names).
    """

    ok: bool
    failures: list[str]
    checks: dict[str, bool]
    release_id: str | None = None
    nonce: str | None = None
    merkle_root: str | None = None
    files: int = 0
    records: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-plain view for ``--json``."""
        return {
            "ok": self.ok,
            "failures": self.failures,
            "checks": self.checks,
            "release_id": self.release_id,
            "nonce": self.nonce,
            "merkle_root": self.merkle_root,
            "files": self.files,
            "records": self.records,
        }


class _Collector:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.checks = {name: True for name in CHECK_NAMES}

    def fail(self, check: str, message: str) -> None:
        self.checks[check] = False
        self.failures.append(message)


def _safe(rel: str) -> bool:
    path = PurePosixPath(rel)
    return bool(rel) and not path.is_absolute() and ".." not in path.parts and "\\" not in rel


def read_statement(out_dir: str | Path) -> tuple[dict[str, Any], str, bytes]:
    """``(envelope, payloadType, payload bytes)`` of a release's statement, unverified."""
    path = Path(out_dir) / AUDIT_DIR / STATEMENT_NAME
    if not path.is_file():
        raise InputError("no signed statement: not a finalized release", path)
    try:
        envelope = json.loads(path.read_bytes())
        payload_type, payload = envelope_payload(envelope)
    except (ValueError, EnvelopeError) as exc:
        raise InputError(f"not a DSSE envelope ({exc})", path) from None
    return envelope, payload_type, payload


def verify_release(
    out_dir: str | Path, signing_pub_path: str | Path, expected_release_id: str | None = None
) -> AuditReport:
    """Check a finalized release against its signed statement, manifests and audit log.

    Parameters
    ----------
    out_dir:
        The release folder.
    signing_pub_path:
        The signer's Ed25519 public key (PEM), obtained from the releasing site out of band.
    expected_release_id:
        The release id the site gave for this release (also out of band); the signed statement
        must name it. Every release has its own id (a random nonce goes into it), so another
        release made with the same keys and profile fails.

    Raises
    ------
    InputError
        ``out_dir`` is not a finalized release (no statement) — nothing to verify.
    ConfigError
        The public key cannot be read.
    """
    out = Path(out_dir)
    public = load_signing_public(signing_pub_path)
    if not out.is_dir():
        raise InputError("release folder not found", out)
    envelope, payload_type, payload = read_statement(out)
    c = _Collector()

    try:
        verify_envelope(envelope, public)
    except EnvelopeError as exc:
        c.fail("signature", str(exc))

    statement: dict[str, Any] = {}
    try:
        statement = json.loads(payload)
    except ValueError:
        c.fail("statement", "the signed payload is not JSON")
    if statement.get("_type") != STATEMENT_TYPE or statement.get("predicateType") != PREDICATE_TYPE:
        c.fail("statement", f"the signed payload is not a clinrelease in-toto statement ({statement.get('_type')})")
    predicate = statement.get("predicate") or {}
    if expected_release_id is not None and predicate.get("release_id") != expected_release_id:
        c.fail(
            "statement",
            f"the signed statement is release {predicate.get('release_id')}'s, not {expected_release_id}'s: "
            "this folder (or its audit/ folder) comes from another release",
        )
    subjects: dict[str, str] = {}
    for subject in statement.get("subject") or []:
        name, digest = subject.get("name"), (subject.get("digest") or {}).get("sha256")
        if not isinstance(name, str) or not _safe(name) or not isinstance(digest, str):
            c.fail("statement", f"the statement lists an unusable subject {name!r}")
            continue
        subjects[name] = digest

    # files on disk against the signed subjects
    on_disk: dict[str, str] = {}
    for rel in payload_files(out):
        path = out / rel
        if path.is_symlink() or not path.is_file():
            c.fail("files", f"{rel} is a link or special file; a release holds regular files only")
            continue
        on_disk[rel] = sha256_file(path)
    for rel, digest in subjects.items():
        if rel not in on_disk:
            c.fail("files", f"{rel}: in the signed statement but missing from the release")
        elif on_disk[rel] != digest:
            c.fail("files", f"{rel}: content changed since signing (sha256 {on_disk[rel]}, signed {digest})")
    for rel in sorted(set(on_disk) - set(subjects)):
        c.fail("files", f"file added: {rel} is not in the signed statement")

    _check_tag_files(out, c)

    # manifests
    manifest_path = out / MANIFEST
    if not manifest_path.is_file():
        c.fail("manifest", f"{MANIFEST} is missing")
    else:
        manifest, problems = read_manifest(manifest_path)
        for problem in problems:
            c.fail("manifest", problem)
        for rel, digest in manifest.items():
            if rel in on_disk and on_disk[rel] != digest:
                c.fail("manifest", f"{MANIFEST}: {rel} does not match its listed sha256")
            if subjects.get(rel) != digest:
                c.fail("manifest", f"{MANIFEST} and the signed statement disagree on {rel}")
        for rel in sorted(set(on_disk) - set(manifest)):
            c.fail("manifest", f"file added: {rel} is not in {MANIFEST}")
        for rel in sorted(set(manifest) - set(on_disk)):
            c.fail("manifest", f"{MANIFEST} lists {rel}, which is missing from the release")
    tagmanifest_path = out / TAGMANIFEST
    if not tagmanifest_path.is_file():
        c.fail("manifest", f"{TAGMANIFEST} is missing")
    else:
        tags, problems = read_manifest(tagmanifest_path)
        for problem in problems:
            c.fail("manifest", problem)
        for rel, digest in tags.items():
            if not _safe(rel) or not (out / rel).is_file():
                c.fail("manifest", f"{TAGMANIFEST} lists {rel}, which is missing")
            elif sha256_file(out / rel) != digest:
                c.fail("manifest", f"{TAGMANIFEST}: {rel} does not match its listed sha256")
        expected = set(TAG_FILES) - {TAGMANIFEST}
        for rel in sorted(expected - set(tags)):
            c.fail("manifest", f"{TAGMANIFEST} does not list {rel}")
        for rel in sorted(set(tags) - expected):
            c.fail("manifest", f"{TAGMANIFEST} lists {rel}, which is not a tag file of a release")

    # the log
    log_path = out / AUDIT_DIR / LOG_NAME
    records: list[dict[str, Any]] = []
    log_info = predicate.get("log") or {}
    if not log_path.is_file():
        c.fail("log", f"{AUDIT_DIR}/{LOG_NAME} is missing")
    else:
        log_bytes = log_path.read_bytes()
        if hashlib.sha256(log_bytes).hexdigest() != log_info.get("sha256"):
            c.fail("log", f"{AUDIT_DIR}/{LOG_NAME} is not the log the statement signed (its sha256 differs)")
        records, chain_failures = check_chain(read_log(log_path), public)
        for message in chain_failures:
            c.fail("log", message)
        if records and record_digest(records[-1]) != log_info.get("head"):
            c.fail("log", "the last log record is not the signed head: records were removed from or added at the end")
        if len(records) != log_info.get("records"):
            c.fail("log", f"the log holds {len(records)} records; the statement signed {log_info.get('records')}")
        if not records or records[0].get("type") != RELEASE_START:
            c.fail("log", "the log does not begin with a release_start record")
        if not records or records[-1].get("type") != RELEASE_END:
            c.fail("log", "the log does not end with a release_end record")

    # Merkle root
    root = merkle_root(subjects.items()) if subjects else merkle_root([])
    if predicate.get("merkle_root") != root:
        c.fail("merkle", f"the Merkle root over the statement's subjects is {root}, the statement says {predicate.get('merkle_root')}")
    ends = [r for r in records if r.get("type") == RELEASE_END]
    if ends and ends[-1].get("merkle_root") != root:
        c.fail("merkle", "the release_end record's Merkle root does not match the released files")
    disk_root = merkle_root(on_disk.items())
    if disk_root != root:
        c.fail("merkle", f"the Merkle root over the files on disk is {disk_root}, not the signed {root}")

    starts = [r for r in records if r.get("type") == RELEASE_START]
    if starts:
        for name in ("release_id", "nonce"):
            if starts[0].get(name, "") != predicate.get(name, ""):
                c.fail("statement", f"the statement's {name} {predicate.get(name)!r} is not release_start's {starts[0].get(name)!r}")
    _check_records(records, subjects, c)
    _check_figures(records, c)

    return AuditReport(
        ok=not c.failures,
        failures=c.failures,
        checks=c.checks,
        release_id=predicate.get("release_id"),
        nonce=predicate.get("nonce") or None,
        merkle_root=root,
        files=len(subjects),
        records=len(records),
    )


def _check_tag_files(out: Path, c: _Collector) -> None:
    """The release's tag area (top-level tag names and everything under ``audit/``) is exactly :data:`TAG_FILES`."""
    found: list[str] = []
    for name in sorted(TAG_NAMES):
        path = out / name
        if path.is_symlink() or path.is_file():
            found.append(name)
        elif path.is_dir():
            found += sorted(p.relative_to(out).as_posix() for p in path.rglob("*") if p.is_symlink() or not p.is_dir())
    for rel in found:
        path = out / rel
        if rel not in TAG_FILES:
            c.fail("files", f"tag file added: {rel} is not part of a signed release (its tag files are {', '.join(TAG_FILES)})")
        elif path.is_symlink() or not path.is_file():
            c.fail("files", f"{rel} is a link or special file; a release holds regular files only")
    for rel in TAG_FILES:
        if rel not in found and rel != f"{AUDIT_DIR}/{STATEMENT_NAME}":  # a missing statement stops before this
            c.fail("files", f"tag file deleted: {rel} is missing from the release")


def _label(record: Mapping[str, Any]) -> str:
    output = record.get("output") or {}
    where = output.get("path") or record.get("path")
    return f"{record.get('type')} record seq {record.get('seq')}" + (f" ({where})" if where else "")


def _check_records(records: list[dict[str, Any]], subjects: Mapping[str, str], c: _Collector) -> None:
    """Exactly one item/artifact record per released file, with the same digest."""
    by_path: dict[str, list[dict[str, Any]]] = defaultdict(list)
    verdicts: Counter[str] = Counter()
    for record in records:
        kind = record.get("type")
        if kind == ITEM:
            verdicts[str(record.get("verdict"))] += 1
            if record.get("verdict") not in ("released", "quarantined"):
                c.fail("records", f"{_label(record)} has verdict {record.get('verdict')!r}")
            if record.get("verdict") != "released":
                if record.get("verdict") == "quarantined" and not record.get("reasons"):
                    c.fail("records", f"{_label(record)} was quarantined without a reason")
                continue
            output = record.get("output") or {}
            rel, digest = output.get("path"), output.get("sha256")
        elif kind == ARTIFACT:
            rel, digest = record.get("path"), record.get("sha256")
        else:
            continue
        if not isinstance(rel, str):
            c.fail("records", f"{_label(record)} names no released file")
            continue
        by_path[rel].append(record)
        if rel not in subjects:
            c.fail("records", f"{_label(record)} names {rel}, which is not in the release")
        elif digest != subjects[rel]:
            c.fail("records", f"{_label(record)} records sha256 {digest} but the release holds {subjects[rel]}")
    for rel in subjects:
        count = len(by_path.get(rel, []))
        if count == 0:
            c.fail("records", f"{rel} has no audit record")
        elif count > 1:
            c.fail("records", f"{rel} has {count} audit records; expected one")
    ends = [r for r in records if r.get("type") == RELEASE_END]
    if ends:
        counts = ends[-1].get("counts") or {}
        actual = {
            "items": sum(verdicts.values()),
            "released": verdicts.get("released", 0),
            "quarantined": verdicts.get("quarantined", 0),
            "files": len(subjects),
        }
        for key, value in actual.items():
            if key in counts and counts[key] != value:
                c.fail("records", f"release_end counts {counts[key]} {key}, the log and release hold {value}")


def _check_figures(records: list[dict[str, Any]], c: _Collector) -> None:
    """Recompute every recorded check under the release header's thresholds."""
    starts = [r for r in records if r.get("type") == RELEASE_START]
    thresholds = (starts[0].get("thresholds") or {}) if starts else {}
    for record in records:
        for check in record.get("checks") or []:
            if not isinstance(check, Mapping):
                c.fail("figures", f"{_label(record)} has a malformed check {check!r}")
                continue
            name = check.get("name")
            outcome = recheck(check)
            if outcome is None:
                c.fail("figures", f"{_label(record)}: check {name!r} cannot be recomputed ({check})")
                continue
            if outcome != check.get("passed"):
                c.fail(
                    "figures",
                    f"{_label(record)}: check {name!r} is recorded as passed={check.get('passed')} but "
                    f"{check.get('value')} {check.get('op')} {check.get('threshold')} is {outcome}",
                )
            expected = thresholds.get(name)
            if isinstance(expected, Mapping) and (
                expected.get("op") != check.get("op") or expected.get("threshold") != check.get("threshold")
            ):
                c.fail(
                    "figures",
                    f"{_label(record)}: check {name!r} used {check.get('op')} {check.get('threshold')} but the "
                    f"release header sets {expected.get('op')} {expected.get('threshold')}",
                )
            if record.get("type") == ITEM and record.get("verdict") == "released" and not outcome:
                c.fail("figures", f"{_label(record)} was released although check {name!r} fails")

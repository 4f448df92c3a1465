"""The signed, hash-chained audit log and `verify_release`: every tamper is named."""

from __future__ import annotations

import base64
import os
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from _audit_helpers import FakeRelease, build_release
from clinrelease.audit.chain import AuditLog, commitment
from clinrelease.audit.finalize import finalize_release
from clinrelease.audit.dsse import pae, sign_envelope, verify_envelope
from clinrelease.audit.merkle import inclusion_proof, leaf_hash, merkle_root, verify_inclusion
from clinrelease.audit.records import canonical_bytes, make_check, recheck
from clinrelease.audit.verify import verify_release
from clinrelease.crypto.keys import init_keys
from clinrelease.errors import InputError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "audit" / "record.schema.json"


@pytest.fixture
def release(tmp_path: Path) -> FakeRelease:
    return build_release(tmp_path)


def _verify(release: FakeRelease):
    return verify_release(release.out, release.keys.directory / "signing.pub")


def _lines(release: FakeRelease) -> list[bytes]:
    return (release.out / "audit" / "log.jsonl").read_bytes().splitlines()


def _write_lines(release: FakeRelease, lines: list[bytes]) -> None:
    (release.out / "audit" / "log.jsonl").write_bytes(b"".join(line + b"\n" for line in lines))


# ---------------------------------------------------------------- building blocks


def test_canonical_bytes_follow_rfc8785_and_take_numpy() -> None:
    record = {"b": np.float32(0.5), "a": [np.int64(3), Path("data/x.dcm")], "c": "é"}
    assert canonical_bytes(record) == '{"a":[3,"data/x.dcm"],"b":0.5,"c":"é"}'.encode()
    with pytest.raises(ValueError, match="non-finite"):
        canonical_bytes({"x": float("nan")})


def test_checks_compute_and_recheck() -> None:
    assert make_check("dlib", 0.7, ">", 0.6)["passed"] is True
    assert make_check("ap", np.float64(0.9), ">=", 0.95) == {"name": "ap", "value": 0.9, "op": ">=", "threshold": 0.95, "passed": False}
    assert recheck({"value": 1, "op": "<", "threshold": 2}) is True
    assert recheck({"value": 1, "op": "~", "threshold": 2}) is None
    with pytest.raises(ValueError, match="unknown check operator"):
        make_check("x", 1, "=>", 2)


def test_dsse_pae_matches_the_spec_example_and_signatures_verify() -> None:
    # the example from the DSSE v1 protocol specification
    assert pae("http://example.com/HelloWorld", b"hello world") == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    key = ed25519.Ed25519PrivateKey.generate()
    envelope = sign_envelope(b'{"x":1}', "application/vnd.in-toto+json", key)
    assert verify_envelope(envelope, key.public_key()) == b'{"x":1}'


def _manual_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 MTH written out independently of the module under test."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _manual_root(leaves[:k]) + _manual_root(leaves[k:])).digest()


def test_merkle_root_and_inclusion_proofs() -> None:
    assert merkle_root([]) == hashlib.sha256(b"").hexdigest()
    digest = hashlib.sha256(b"file").hexdigest()
    assert leaf_hash("a", digest) == hashlib.sha256(b"\x00a\x00" + bytes.fromhex(digest)).digest()
    for size in range(1, 12):
        files = [(f"data/f{i:02d}.dcm", hashlib.sha256(bytes([i])).hexdigest()) for i in range(size)]
        root = merkle_root(reversed(files))  # order of the input does not matter
        assert root == _manual_root([leaf_hash(p, d) for p, d in files]).hex()
        for path, d in files:
            index, n, proof = inclusion_proof(files, path)
            assert verify_inclusion(path, d, index, n, proof, root)
            assert not verify_inclusion(path, hashlib.sha256(b"other").hexdigest(), index, n, proof, root)
    with pytest.raises(ValueError, match="twice"):
        merkle_root([("a", digest), ("a", digest)])


# ---------------------------------------------------------------- a clean release


def test_clean_release_verifies(release: FakeRelease) -> None:
    report = _verify(release)
    assert report.ok, report.failures
    assert all(report.checks.values()) and report.files == 4 and report.release_id == "rel-test-1"
    assert report.merkle_root == release.result.merkle_root


def test_released_log_has_commitments_not_original_digests(release: FakeRelease) -> None:
    released = [json.loads(line) for line in _lines(release)]
    internal = [json.loads(line) for line in release.internal_log.read_bytes().splitlines()]
    text = (release.out / "audit" / "log.jsonl").read_text()
    for rel, original in release.originals.items():
        original_digest = hashlib.sha256(original.read_bytes()).hexdigest()
        assert original_digest not in text and str(original) not in text
        [site] = [r for r in internal if r["type"] == "item" and (r["output"] or {}).get("path") == rel]
        [public] = [r for r in released if r["type"] == "item" and (r["output"] or {}).get("path") == rel]
        assert site["original_sha256"] == original_digest
        assert public["input_commitment"] == site["input_commitment"] == commitment(release.keys.release_key, original_digest)
    assert [r["type"] for r in released] == ["release_start", "item", "item", "item", "item", "artifact", "release_end"]
    assert released[-1]["counts"] == {"items": 4, "released": 3, "quarantined": 1, "files": 4}


def test_every_record_matches_the_schema(release: FakeRelease) -> None:
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    records = [json.loads(line) for line in _lines(release)] + [
        json.loads(line) for line in release.internal_log.read_bytes().splitlines()
    ]
    for record in records:
        assert not list(validator.iter_errors(record)), record
    item = next(r for r in records if r["type"] == "item" and r["verdict"] == "released")
    for broken in ({**item, "verdict": "maybe"}, {**item, "output": None}, {**item, "prev": "xyz"},
                   {**item, "checks": [{"name": "x", "value": 1, "op": "=>", "threshold": 2, "passed": True}]}):
        assert list(validator.iter_errors(broken)), broken


def test_finalize_refuses_unlisted_files_and_unknown_outputs(tmp_path: Path) -> None:
    keys = init_keys(tmp_path / "keys")
    out = tmp_path / "out"
    (out / "data").mkdir(parents=True)
    (out / "data" / "a.dcm").write_bytes(b"a")
    (out / "data" / "stray.tmp").write_bytes(b"?")
    log = AuditLog(tmp_path / "internal.jsonl", tmp_path / "released.jsonl", keys.release_key)
    log.append("release_start", {"release_id": "r", "tool": {"name": "clinrelease", "version": "t"},
                                  "profile": {"name": "basic", "sha256": "0" * 64}, "thresholds": {}})
    with pytest.raises(InputError, match="not listed"):
        finalize_release(log, out, keys.signing_key, files=["data/a.dcm"])
    (out / "data" / "stray.tmp").unlink()
    log.append("item", {"output": {"path": "data/gone.dcm", "sha256": "1" * 64}, "verdict": "released",
                        "reasons": [], "checks": []})
    with pytest.raises(InputError, match="not in the release"):
        finalize_release(log, out, keys.signing_key)
    with pytest.raises(ValueError, match="internal-only"):
        log.append("item", {"original_sha256": "1" * 64})


def test_a_batch_of_records_chains_like_single_appends_and_flushes_each_log_once(tmp_path: Path, monkeypatch) -> None:
    keys = init_keys(tmp_path / "keys")
    start = {"release_id": "r", "tool": {"name": "clinrelease", "version": "t"},
             "profile": {"name": "basic", "sha256": "0" * 64}, "thresholds": {}}  # fmt: skip
    items = [{"output": {"path": f"data/{n}.dcm", "sha256": str(n) * 64}, "verdict": "released", "reasons": [], "checks": []}
             for n in range(3)]  # fmt: skip
    one = AuditLog(tmp_path / "one" / "internal.jsonl", tmp_path / "one" / "released.jsonl", keys.release_key)
    one.append("release_start", start)
    for n, fields in enumerate(items):
        one.append("item", fields, internal_only_fields={"original_sha256": f"{n:064d}"})
    flushed = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (flushed.append(fd), real_fsync(fd)))
    batch = AuditLog(tmp_path / "batch" / "internal.jsonl", tmp_path / "batch" / "released.jsonl", keys.release_key)
    batch.extend([("release_start", start, None),
                  *(("item", fields, {"original_sha256": f"{n:064d}"}) for n, fields in enumerate(items))])  # fmt: skip
    assert len(flushed) == 2  # the internal log and the released one, once each
    for name in ("internal.jsonl", "released.jsonl"):
        singles = [json.loads(line) for line in (tmp_path / "one" / name).read_text().splitlines()]
        batched = [json.loads(line) for line in (tmp_path / "batch" / name).read_text().splitlines()]
        assert [r["seq"] for r in batched] == [0, 1, 2, 3]
        # the same records, chained the same way (only the times differ)
        assert [{k: v for k, v in r.items() if k not in ("time", "prev")} for r in batched] == [
            {k: v for k, v in r.items() if k not in ("time", "prev")} for r in singles
        ]
        assert all(b["prev"] == hashlib.sha256(canonical_bytes(a)).hexdigest() for a, b in zip(batched, batched[1:]))
    # a batch continues an existing log
    batch.extend([("item", items[0], None)])
    last = json.loads((tmp_path / "batch" / "released.jsonl").read_text().splitlines()[-1])
    assert last["seq"] == 4


# ---------------------------------------------------------------- tampering


def _flip_byte(release: FakeRelease) -> None:
    path = release.out / "data" / "item1.dcm"
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_record(release: FakeRelease) -> None:
    lines = _lines(release)
    record = json.loads(lines[2])
    record["checks"][0]["value"] = 0.99
    lines[2] = canonical_bytes(record)
    _write_lines(release, lines)


def _remove_record(release: FakeRelease) -> None:
    lines = _lines(release)
    del lines[2]
    _write_lines(release, lines)


def _reorder_records(release: FakeRelease) -> None:
    lines = _lines(release)
    lines[1], lines[2] = lines[2], lines[1]
    _write_lines(release, lines)


def _truncate_log(release: FakeRelease) -> None:
    _write_lines(release, _lines(release)[:-1])


def _add_file(release: FakeRelease) -> None:
    (release.out / "data" / "extra.dcm").write_bytes(b"smuggled")


def _remove_file(release: FakeRelease) -> None:
    (release.out / "clinical" / "scores.csv").unlink()


def _swap_signature(release: FakeRelease) -> None:
    path = release.out / "audit" / "statement.dsse.json"
    envelope = json.loads(path.read_bytes())
    other = ed25519.Ed25519PrivateKey.generate()
    envelope["signatures"][0]["sig"] = base64.b64encode(other.sign(b"anything")).decode()
    path.write_bytes(canonical_bytes(envelope))


def _resign_with_other_key(release: FakeRelease) -> None:
    path = release.out / "audit" / "statement.dsse.json"
    envelope = json.loads(path.read_bytes())
    payload = base64.b64decode(envelope["payload"])
    path.write_bytes(canonical_bytes(sign_envelope(payload, envelope["payloadType"], ed25519.Ed25519PrivateKey.generate())))


def _edit_manifest(release: FakeRelease) -> None:
    path = release.out / "manifest-sha256.txt"
    lines = path.read_text().splitlines()
    lines[1] = "0" * 64 + lines[1][64:]
    path.write_text("\n".join(lines) + "\n")


def _add_audit_file(release: FakeRelease) -> None:
    (release.out / "audit" / "notes.txt").write_text("lookup: P1 = Smith, John\n")


def _add_audit_subfolder_file(release: FakeRelease) -> None:
    (release.out / "audit" / "old").mkdir()
    (release.out / "audit" / "old" / "log.jsonl").write_bytes(b"{}\n")


def _add_top_level_tag_file(release: FakeRelease) -> None:
    (release.out / "bag-info.txt").write_text("Contact-Name: Smith, John\n")


def _delete_tagmanifest(release: FakeRelease) -> None:
    (release.out / "tagmanifest-sha256.txt").unlink()


def _delete_bagit(release: FakeRelease) -> None:
    (release.out / "bagit.txt").unlink()


def _tagmanifest_lists_an_added_file(release: FakeRelease) -> None:
    """Add a file to audit/ and list it in the tag manifest with its true digest (what a re-run of sha256sum would do)."""
    extra = release.out / "audit" / "extra.json"
    extra.write_text("{}")
    with open(release.out / "tagmanifest-sha256.txt", "a") as fh:
        fh.write(f"{hashlib.sha256(extra.read_bytes()).hexdigest()}  audit/extra.json\n")


TAMPERS: list[tuple[str, Callable[[FakeRelease], None], str, str]] = [
    ("byte of a released file", _flip_byte, "files", "data/item1.dcm: content changed since signing"),
    ("record edited", _edit_record, "log", "hash chain broken between seq 2 and seq 3: record seq 2 (item) was edited"),
    ("record removed", _remove_record, "log", "record(s) removed: seq 2 missing"),
    ("records reordered", _reorder_records, "log", "records reordered: line 2 holds seq 2, line 3 holds seq 1"),
    ("last record removed", _truncate_log, "log", "records were removed from or added at the end"),
    ("file added", _add_file, "files", "file added: data/extra.dcm is not in the signed statement"),
    ("file removed", _remove_file, "files", "clinical/scores.csv: in the signed statement but missing"),
    ("signature swapped", _swap_signature, "signature", "signature does not verify"),
    ("statement re-signed by another key", _resign_with_other_key, "signature", "signed by another key"),
    ("manifest edited", _edit_manifest, "manifest", "manifest-sha256.txt: data/item0.dcm does not match"),
    ("file added to audit/", _add_audit_file, "files", "tag file added: audit/notes.txt is not part of a signed release"),
    ("file added under audit/", _add_audit_subfolder_file, "files", "tag file added: audit/old/log.jsonl"),
    ("top-level tag file added", _add_top_level_tag_file, "files", "tag file added: bag-info.txt"),
    ("tag manifest deleted", _delete_tagmanifest, "manifest", "tagmanifest-sha256.txt is missing"),
    ("bagit.txt deleted", _delete_bagit, "files", "tag file deleted: bagit.txt is missing"),
    ("tag manifest lists an added file", _tagmanifest_lists_an_added_file, "manifest",
     "tagmanifest-sha256.txt lists audit/extra.json, which is not a tag file of a release"),
]


@pytest.mark.parametrize(("label", "tamper", "check", "message"), TAMPERS, ids=[t[0] for t in TAMPERS])
def test_each_tamper_is_detected_with_a_specific_message(
    release: FakeRelease, label: str, tamper: Callable[[FakeRelease], None], check: str, message: str
) -> None:
    tamper(release)
    report = _verify(release)
    assert not report.ok
    assert report.checks[check] is False, report.failures
    assert any(message in failure for failure in report.failures), report.failures


def test_edited_log_also_breaks_the_signed_log_digest(release: FakeRelease) -> None:
    _edit_record(release)
    failures = _verify(release).failures
    assert any("is not the log the statement signed" in f for f in failures)


# ---------------------------------------------------------------- recorded figures


def _release_with(tmp_path: Path, checks: list[dict], verdict: str = "released", reasons: list[str] | None = None) -> FakeRelease:
    """A one-item release whose item record carries these checks as given (a faulty orchestrator)."""
    keys = init_keys(tmp_path / "keys")
    out = tmp_path / "out"
    (out / "data").mkdir(parents=True)
    (out / "data" / "x.dcm").write_bytes(b"payload")
    log = AuditLog(tmp_path / "internal.jsonl", tmp_path / "released.jsonl", keys.release_key)
    log.append("release_start", {"release_id": "r", "tool": {"name": "clinrelease", "version": "t"},
                                  "profile": {"name": "basic", "sha256": "0" * 64},
                                  "thresholds": {"dlib_distance_min": {"op": ">", "threshold": 0.6}}})
    log.append("item", {"output": {"path": "data/x.dcm", "sha256": hashlib.sha256(b"payload").hexdigest()},
                        "verdict": verdict, "reasons": reasons or [], "checks": checks},
               internal_only_fields={"original_sha256": "2" * 64})
    result = finalize_release(log, out, keys.signing_key)
    return FakeRelease(out, keys, tmp_path / "internal.jsonl", result, {})


def test_a_figure_recorded_as_passing_that_fails_is_named(tmp_path: Path) -> None:
    bad = {"name": "dlib_distance_min", "value": 0.41, "op": ">", "threshold": 0.6, "passed": True}
    report = _verify(_release_with(tmp_path, [bad]))
    assert report.checks["figures"] is False and report.checks["signature"] is True
    assert any("check 'dlib_distance_min' is recorded as passed=True but 0.41 > 0.6 is False" in f for f in report.failures)
    assert any("was released although check 'dlib_distance_min' fails" in f for f in report.failures)


def test_a_threshold_other_than_the_release_header_is_named(tmp_path: Path) -> None:
    loose = make_check("dlib_distance_min", 0.55, ">", 0.5)
    report = _verify(_release_with(tmp_path, [loose]))
    assert any("used > 0.5 but the release header sets > 0.6" in f for f in report.failures), report.failures


@pytest.mark.skipif(shutil.which("sha256sum") is None, reason="sha256sum is not installed")
def test_sha256sum_checks_the_manifests(release: FakeRelease) -> None:
    import subprocess

    for manifest in ("manifest-sha256.txt", "tagmanifest-sha256.txt"):
        ok = subprocess.run(["sha256sum", "--quiet", "-c", manifest], cwd=release.out, capture_output=True)
        assert ok.returncode == 0, ok.stdout + ok.stderr
    _flip_byte(release)
    bad = subprocess.run(["sha256sum", "--quiet", "-c", "manifest-sha256.txt"], cwd=release.out, capture_output=True, text=True)
    assert bad.returncode != 0 and "data/item1.dcm: FAILED" in bad.stdout


@pytest.mark.skipif(
    shutil.which("openssl") is None or shutil.which("bash") is None or shutil.which("sha256sum") is None,
    reason="openssl, bash or sha256sum is not installed",
)
def test_the_guides_openssl_route_verifies_and_rejects(release: FakeRelease) -> None:
    """Run the exact shell commands of audit/AUDITORS_GUIDE.md section 2."""
    import re
    import subprocess

    guide = (SCHEMA_PATH.parent / "AUDITORS_GUIDE.md").read_text()
    script = re.search(r"<!-- openssl-route:begin -->\n```sh\n(.*?)```\n<!-- openssl-route:end -->", guide, re.S)
    assert script is not None, "the guide lost its openssl block"
    env = {**os.environ, "OUT": str(release.out), "PUB": str(release.keys.directory / "signing.pub")}
    ok = subprocess.run(["bash", "-c", script.group(1)], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Signature Verified Successfully" in ok.stdout
    assert "audit log matches the signed statement" in ok.stdout and "manifest matches the signed subjects" in ok.stdout
    _resign_with_other_key(release)
    bad = subprocess.run(["bash", "-c", script.group(1)], env=env, capture_output=True, text=True)
    assert bad.returncode != 0 and "Signature Verified Successfully" not in bad.stdout

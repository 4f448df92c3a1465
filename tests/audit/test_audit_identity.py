"""Each release has its own identity: a random nonce in the release id and the signed statement.

Two real ``basic`` releases with the same keys and profile: their ids differ, resume keeps the id,
and a release folder (or its audit folder) replayed as another release fails ``audit verify``.
"""

from __future__ import annotations

import base64
import json
import shutil
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _audit_helpers import build_release
from _release_helpers import deid_data_dir
from clinrelease.audit.dsse import sign_envelope
from clinrelease.audit.identity import NONCE_FILE, derive_release_id, release_nonce
from clinrelease.audit.records import canonical_bytes
from clinrelease.audit.verify import verify_release
from clinrelease.cli import app

runner = CliRunner()
TAG_FILES = ("audit", "manifest-sha256.txt", "tagmanifest-sha256.txt", "bagit.txt")


def _statement(out: Path) -> dict:
    envelope = json.loads((out / "audit" / "statement.dsse.json").read_bytes())
    return json.loads(base64.b64decode(envelope["payload"]))


@pytest.fixture(scope="module")
def two_releases(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Releases A and B of the same input with the same keys and profile, one after the other."""
    root = tmp_path_factory.mktemp("identity")
    (root / "in").mkdir()
    shutil.copyfile(deid_data_dir() / "humans" / "ctbrain1.dcm", root / "in" / "ct.dcm")
    assert runner.invoke(app, ["keys", "init", str(root / "keys")]).exit_code == 0
    ids = {}
    for name in ("A", "B"):
        result = runner.invoke(app, ["run", "--profile", "basic", "--input", str(root / "in"), "--output",
                                     str(root / name), "--keys", str(root / "keys")])
        assert result.exit_code == 0, result.output
        ids[name] = _statement(root / name)["predicate"]["release_id"]
    return {"root": root, "ids": ids, "pub": str(root / "keys" / "signing.pub")}


def test_releases_with_the_same_keys_and_profile_get_their_own_id_and_nonce(two_releases: dict) -> None:
    root, ids = two_releases["root"], two_releases["ids"]
    assert ids["A"] != ids["B"]
    nonces = {name: _statement(root / name)["predicate"]["nonce"] for name in ("A", "B")}
    assert nonces["A"] != nonces["B"] and all(len(n) == 32 for n in nonces.values())
    for name in ("A", "B"):
        start = json.loads((root / name / "audit" / "log.jsonl").read_text().splitlines()[0])
        assert (start["release_id"], start["nonce"]) == (ids[name], nonces[name])
        assert json.loads((root / name / "report" / "summary.json").read_text())["release_id"] == ids[name]
        # the nonce lives in the site's work folder, never in the release
        assert (root / f"{name}.work" / NONCE_FILE).read_text().strip() == nonces[name]
        assert NONCE_FILE not in {p.name for p in (root / name).rglob("*")}


def test_a_release_folder_replayed_as_another_release_fails_verify(two_releases: dict) -> None:
    root, ids, pub = two_releases["root"], two_releases["ids"], two_releases["pub"]
    replay = root / "A-presented-as-B"
    shutil.copytree(root / "A", replay)
    genuine = runner.invoke(app, ["audit", "verify", str(root / "B"), "--key", pub, "--release-id", ids["B"]])
    assert genuine.exit_code == 0, genuine.output
    replayed = runner.invoke(app, ["audit", "verify", str(replay), "--key", pub, "--release-id", ids["B"], "--json"])
    assert replayed.exit_code == 1
    report = json.loads(replayed.stdout)
    assert report["checks"]["statement"] is False
    assert f"the signed statement is release {ids['A']}'s, not {ids['B']}'s" in " ".join(report["failures"])


def test_an_audit_folder_copied_from_another_release_fails_verify(two_releases: dict, tmp_path: Path) -> None:
    root, ids, pub = two_releases["root"], two_releases["ids"], two_releases["pub"]
    target = tmp_path / "B"
    shutil.copytree(root / "B", target)
    for name in TAG_FILES:
        (shutil.rmtree if (target / name).is_dir() else Path.unlink)(target / name)
        (shutil.copytree if (root / "A" / name).is_dir() else shutil.copyfile)(root / "A" / name, target / name)
    report = verify_release(target, pub, expected_release_id=ids["B"])
    assert not report.ok and report.checks["statement"] is False and report.checks["files"] is False
    assert any("report/summary.json: content changed since signing" in f for f in report.failures)


def test_rerun_into_a_release_keeps_its_id_and_nonce(two_releases: dict, tmp_path: Path) -> None:
    root = two_releases["root"]
    before = _statement(root / "A")["predicate"]
    again = runner.invoke(app, ["run", "--profile", "basic", "--input", str(root / "in"), "--output", str(root / "A"),
                                "--keys", str(root / "keys")])
    assert again.exit_code == 0, again.output
    after = _statement(root / "A")["predicate"]
    assert (after["release_id"], after["nonce"]) == (before["release_id"], before["nonce"])


def test_statement_nonce_must_match_the_logs_release_start(tmp_path: Path) -> None:
    release = build_release(tmp_path)
    path = release.out / "audit" / "statement.dsse.json"
    envelope = json.loads(path.read_bytes())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["nonce"] = "0" * 32  # signed by the site's own key, yet not this log's release
    assert release.keys.signing_key is not None
    path.write_bytes(canonical_bytes(sign_envelope(canonical_bytes(statement), envelope["payloadType"], release.keys.signing_key)))
    report = verify_release(release.out, release.keys.directory / "signing.pub")
    assert not report.ok and report.checks["statement"] is False
    assert any("the statement's nonce '" + "0" * 32 in f for f in report.failures), report.failures


def test_release_nonce_is_drawn_once_even_by_shards_starting_together(tmp_path: Path) -> None:
    seen: list[str] = []
    threads = [threading.Thread(target=lambda: seen.append(release_nonce(tmp_path))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seen)) == 1 and len(seen) == 8 and len(seen[0]) == 32
    assert release_nonce(tmp_path) == seen[0]
    key = bytes(range(32))
    assert derive_release_id(key, "sha256:p", seen[0]) != derive_release_id(key, "sha256:p", "f" * 32)
    assert derive_release_id(key, "sha256:p", seen[0]) == derive_release_id(key, "sha256:p", seen[0])

"""A small real release for the audit and escrow tests: real files, real keys, real signatures."""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from clinrelease.audit.chain import AuditLog
from clinrelease.audit.finalize import FinalizeResult, finalize_release
from clinrelease.audit.records import make_check
from clinrelease.crypto.keys import KeySet, init_keys

THRESHOLDS = {
    "dlib_distance_min": {"op": ">", "threshold": 0.6},
    "sface_cosine_max": {"op": "<", "threshold": 0.363},
    "body_ap": {"op": ">=", "threshold": 0.95},
}


@dataclass
class FakeRelease:
    """A finalized release folder and everything that made it."""

    out: Path
    keys: KeySet
    internal_log: Path
    result: FinalizeResult
    originals: dict[str, Path]


def _item_checks(dlib: float, sface: float, ap: float) -> list[dict]:
    return [
        make_check("dlib_distance_min", dlib, ">", 0.6),
        make_check("sface_cosine_max", sface, "<", 0.363),
        make_check("body_ap", ap, ">=", 0.95),
    ]


def build_release(tmp: Path, n_items: int = 3, payload_size: int = 2048) -> FakeRelease:
    """Write ``n_items`` released files + a clinical table, log them and finalize the release."""
    keys = init_keys(tmp / "keys")
    out = tmp / "release"
    (out / "data").mkdir(parents=True)
    (out / "clinical").mkdir()
    originals_dir = tmp / "incoming"
    originals_dir.mkdir()
    log = AuditLog(tmp / "site" / "internal.jsonl", tmp / "work" / "released.jsonl", keys.release_key)
    log.append(
        "release_start",
        {
            "release_id": "rel-test-1",
            "nonce": secrets.token_hex(16),
            "tool": {"name": "clinrelease", "version": "test"},
            "profile": {"name": "pd_gait", "sha256": hashlib.sha256(b"profile").hexdigest()},
            "ps315": {"edition": "2024b", "options": [{"code": "113100", "meaning": "Basic Application Confidentiality Profile"}]},
            "models": [{"name": "dlib_face_recognition_resnet_model_v1", "sha256": "ab" * 32}],
            "thresholds": THRESHOLDS,
            "operator": "tester",
            "irb": "IRB-2024-001",
            "dua": "DUA-7",
            "started": "2024-01-01T00:00:00.000000Z",
        },
    )
    originals: dict[str, Path] = {}
    for i in range(n_items):
        original = originals_dir / f"patient{i}.bin"
        original.write_bytes(os.urandom(payload_size + i))
        rel = f"data/item{i}.dcm"
        (out / rel).write_bytes(os.urandom(payload_size))
        originals[rel] = original
        log.append(
            "item",
            {
                "output": {"path": rel, "sha256": hashlib.sha256((out / rel).read_bytes()).hexdigest(), "uid": f"2.25.{i + 1}"},
                "verdict": "released",
                "reasons": [],
                "checks": _item_checks(0.7 + i / 100, 0.2, 0.97),
            },
            internal_only_fields={
                "original_sha256": hashlib.sha256(original.read_bytes()).hexdigest(),
                "input_path": str(original),
            },
        )
    log.append(
        "item",
        {"output": None, "verdict": "quarantined", "reasons": ["dlib_distance_min 0.41 <= 0.6"],
         "checks": _item_checks(0.41, 0.5, 0.97)},
        internal_only_fields={"original_sha256": "cd" * 32, "input_path": "incoming/bad.dcm"},
    )
    (out / "clinical" / "scores.csv").write_text("pseudonym,updrs\nP1,12\n")
    assert keys.signing_key is not None
    result = finalize_release(log, out, keys.signing_key)
    return FakeRelease(out, keys, tmp / "site" / "internal.jsonl", result, originals)

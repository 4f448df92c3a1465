"""Where models come from, and the digests a release's start record lists (clinrelease.models)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from clinrelease import models


def test_the_model_inventory_is_hashed_once_on_a_thread_of_its_own_and_a_caller_waits_for_it(monkeypatch):
    monkeypatch.setattr(models, "_digests", {})
    hashed: list[str] = []
    real = models.sha256_file

    def slow(path):
        hashed.append(Path(path).name)
        time.sleep(0.05)
        return real(path)

    monkeypatch.setattr(models, "sha256_file", slow)
    thread = models.prefetch_model_inventory()
    inventory = models.model_inventory()  # asked while the thread is still hashing
    thread.join()
    assert inventory and sorted(hashed) == sorted(entry["file"] for entry in inventory)  # each file once
    assert not any(entry["name"].startswith("sample_") for entry in inventory)
    for entry in inventory:
        assert entry["sha256"] == hashlib.sha256(models.model_path(entry["name"]).read_bytes()).hexdigest()

"""The item record: one dataclass with a status enum, saved as the JSON a resumed run and the merge read."""

from __future__ import annotations

import json

import pytest

from clinrelease.release.record import ItemRecord, ReleaseSummary, Status, count_statuses, load_record


def test_a_record_file_round_trips_unchanged_with_keys_this_version_does_not_know(tmp_path):
    # a record as an earlier run wrote it: unset fields absent, one key from another version
    written = {
        "item_id": "a1", "input": "exam.dcm", "kind": "dicom", "status": "quarantined", "reasons": ["header: 1 value left"],
        "output": None, "resume_digest": "d", "input_sha256": "s", "input_commitment": "c",
        "verification": {"header_residual": 1}, "identifying_strings": ["DOE^JANE"], "from_the_future": {"x": 1},
    }  # fmt: skip
    path = tmp_path / "a1.json"
    path.write_text(json.dumps(written))
    record = load_record(path)
    assert record.status is Status.QUARANTINED and not record.released
    assert record.verification == {"header_residual": 1} and record.faces is None
    record.save(tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text()) == written


def test_a_new_record_names_its_status_as_the_word_the_summary_and_cli_show(tmp_path):
    record = ItemRecord(item_id="b2", input="visit.mp4", kind="container", status=Status.RELEASED, output="data/x.dcm")
    record.save(tmp_path / "b2.json")
    saved = json.loads((tmp_path / "b2.json").read_text())
    assert saved["status"] == "released" and saved["output"] == "data/x.dcm"
    # fields never set are not written (readers tell "not measured" from an empty table)
    assert "verification" not in saved and "faces" not in saved and "resumed" not in saved


@pytest.mark.parametrize(
    ("statuses", "exit_code"),
    [
        ([Status.RELEASED, Status.RELEASED], 0),
        ([Status.RELEASED, Status.QUARANTINED], 1),
        ([Status.QUARANTINED, Status.ERROR], 3),
        ([], 0),
    ],
)
def test_the_run_exit_code_follows_the_worst_status(tmp_path, statuses, exit_code):
    records = [ItemRecord(item_id=str(n), input=f"{n}.dcm", kind="dicom", status=s) for n, s in enumerate(statuses)]
    summary = ReleaseSummary(tmp_path, tmp_path, records, finalized=True)
    assert summary.exit_code == exit_code
    assert summary.counts == count_statuses(records) and set(summary.counts) == {"released", "quarantined", "error"}

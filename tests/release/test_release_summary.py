"""What the merge releases about the items: header changes as the release shows them."""

from __future__ import annotations

from clinrelease.release.record import ItemRecord, Status
from clinrelease.release.summary import released_texts

KEY = bytes(range(32))


def _record(item_id: str, changes: list[tuple[str, str, str]], phi: list[str]) -> ItemRecord:
    return ItemRecord(
        item_id=item_id, input=f"{item_id}.dcm", kind="dicom", status=Status.RELEASED, identifying_strings=phi,
        header_changes=[{"tag": t, "name": n, "action": a, "path": t, "reason": None} for t, n, a in changes],
    )


def test_each_item_shows_its_own_changes_when_rows_repeat_across_items() -> None:
    shared = [("(0010,0010)", "Patient's Name", "Z"), ("(0009,1010)", "Private ACME 1.0", "X")]
    a = _record("a", shared, ["WHITMORE^ADA"])
    b = _record("b", [*shared, ("(0008,1010)", "Station Name", "X")], ["DOE^JANE"])
    c = _record("c", [("(0010,0010)", "Whitmore", "Z")], [])  # the same tag and action, a name that quotes a patient
    released_texts([a, b, c], None, KEY)
    assert a.released_header_changes == b.released_header_changes[:2]
    assert a.released_header_changes[0] == ("(0010,0010)", "Patient's Name", "Z")
    assert a.released_header_changes[1][1].startswith("Private block ") and "ACME" not in a.released_header_changes[1][1]
    assert b.released_header_changes[2] == ("(0008,1010)", "Station Name", "X")
    assert c.released_header_changes == [("(0010,0010)", "(name withheld)", "Z")]

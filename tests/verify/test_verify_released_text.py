"""The released-text guard: reasons quoting identifying strings are withheld; what is left stops signing."""

from __future__ import annotations

import pytest

from clinrelease.errors import VerificationError
from clinrelease.verify.released_text import WITHHELD_REASON, TextGuard, batch_identifying_strings, released_strings

PHI = ["WHITMORE^ELEANOR", "MRN4815162342", "19520317"]


def test_reasons_that_quote_identifying_strings_are_withheld():
    guard = TextGuard(PHI)
    reasons = ["header: residual-value at (0010,0010)", "input error: cannot open '/in/Whitmore_visit.dcm'", "born 17/03/1952"]
    assert guard.clean(reasons) == [reasons[0], WITHHELD_REASON, WITHHELD_REASON]


def test_check_names_document_and_kind_never_the_value():
    guard = TextGuard(PHI)
    guard.check({"report/summary.json": {"items": [{"reasons": ["fine"], "id": "0a4815162342ff"}]}})  # inside a token: chance
    with pytest.raises(VerificationError) as info:
        guard.check({"report/summary.json": {"items": [{"note": "Eleanor Whitmore"}]}, "clinical/clinical.csv": [["x", "MRN4815162342"]]})
    message = str(info.value)
    assert "report/summary.json: name 1" in message and "clinical/clinical.csv: id 1" in message
    assert "Whitmore" not in message and "4815162342" not in message


def test_batch_strings_take_every_item_and_its_input_name():
    records = [{"input": "deid/Smith_John.dcm", "identifying_strings": ["SMITH^JOHN"]}, {"input": "b.dcm"}]
    strings = batch_identifying_strings(records, ["MRN1"])
    assert {"SMITH^JOHN", "deid/Smith_John.dcm", "Smith_John.dcm", "b.dcm"} <= set(strings)
    assert list(released_strings({"Pool": ["a", {"b": 1, "c": "d"}]})) == ["a", "d"]  # keys are field names


def test_a_dataclass_in_a_released_document_is_scanned_by_its_fields():
    from dataclasses import dataclass, field

    @dataclass
    class Shown:
        input: str
        reasons: list[str] = field(default_factory=list)
        changes: tuple = ()

    shown = Shown("item 3", ["face found on frame 2"], (("(0010,0010)", "Whitmore^Ada", "Z"),))
    assert list(released_strings([shown])) == ["item 3", "face found on frame 2", "(0010,0010)", "Whitmore^Ada", "Z"]
    with pytest.raises(VerificationError, match="report/index.html: name"):
        TextGuard(["WHITMORE^ADA"]).check({"report/index.html": [shown]})



def test_released_strings_walks_any_depth_in_document_order() -> None:
    deep: list = ["last"]
    for depth in range(5000):  # deeper than Python's recursion limit
        deep = [f"s{depth}", deep]
    strings = list(released_strings(deep))
    assert len(strings) == 5001 and strings[0] == "s4999" and strings[-1] == "last"
    assert list(released_strings(({"a": ["b", ("c",)]}, frozenset({"d"}), 7, None))) == ["b", "c", "d"]


def test_check_counts_every_occurrence_of_a_repeated_text() -> None:
    rows = [("(0010,0010)", "Eleanor Whitmore", "Z")] * 3  # the same row in three items
    with pytest.raises(VerificationError, match="report/index.html: name 3"):
        TextGuard(PHI).check({"report/index.html": [rows, "fine"]})

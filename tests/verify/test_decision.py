"""The release decision (clinrelease.verify.decision): one table from the profile, one decide().

Table-driven: each case is figures against checks, with the verdict, the reasons and the audit rows
expected; the rows must always agree with the verdict (what ``audit verify`` recomputes).
"""

from __future__ import annotations

import dataclasses

import pytest

from clinrelease.audit.records import recheck
from clinrelease.profiles import FaceRealismCheck, KeypointThresholds, RecognizerCheck, load_profile
from clinrelease.verify.decision import (
    REALISM_CHECKS,
    Check,
    ItemReports,
    checks_for,
    decide,
    duplicate_reason,
    error_reason,
    gallery_check,
    header_reasons,
)
from clinrelease.verify.leaks import Leak

SFACE = Check("sface_match_rate", "<=", 0.0, "fraction of sampled frames sface matches", "reid")
SFACE_CHECKED = Check("sface_frames_checked", ">=", 1, "sampled frames sface could compare", "reid")
BODY = Check("body_ap", ">=", 0.9, "body AP@[.5:.95]", "keypoints", unverified="keypoints: no person found in the original's sampled frames, body AP unverified")
LEGS = Check("legs_ap", ">=", 0.95, "legs AP@[.5:.95]", "keypoints")
NME = Check("face_nme", "<=", 0.25, "face landmark NME", "keypoints")
LEAKS = Check("leaks", "<=", 0, "occurrences", "leaks")
TEXT = Check("text_boxes", "<=", 0, "text boxes", "text")
LOST = Check("endpoints_lost", "<=", 0, "endpoints lost", "endpoints")
HEADER = Check("header_residual", "<=", 0, "values left", "header")
FRAMES = Check("frame_count_difference", "<=", 0, "frames", "frames")

CASES = [
    # name, figures, checks, released, reasons (each a prefix of one reason, in order), judged rows
    ("all pass", {"sface_match_rate": 0.0, "sface_frames_checked": 4, "body_ap": 0.97, "leaks": 0},
     [SFACE, SFACE_CHECKED, BODY, LEAKS], True, [], ["sface_match_rate", "sface_frames_checked", "body_ap", "leaks"]),
    ("a limit is inclusive", {"body_ap": 0.9, "face_nme": 0.25}, [BODY, NME], True, [], ["body_ap", "face_nme"]),
    ("re-id over the allowed fraction", {"sface_match_rate": 0.5, "sface_frames_checked": 4, "sface_frames_matched": 2, "sface_worst": 0.41},
     [SFACE, SFACE_CHECKED], False, ["re-id (sface): 2/4 sampled frames still match the original (allowed fraction 0.0; worst 0.410"], ["sface_match_rate", "sface_frames_checked"]),
    ("nothing could be compared", {"sface_match_rate": 0.0, "sface_frames_checked": 0},
     [SFACE, SFACE_CHECKED], False, ["re-id (sface): only 0 frame(s) could be compared (minimum 1)"], ["sface_match_rate", "sface_frames_checked"]),
    ("a recognizer that did not run fails once", {}, [SFACE, SFACE_CHECKED], False, ["re-id: required recognizer sface did not run"], []),
    ("a check that did not run fails", {"sface_match_rate": 0.0, "sface_frames_checked": 3}, [SFACE, SFACE_CHECKED, TEXT], False,
     ["text: not verified (the check did not run)"], ["sface_match_rate", "sface_frames_checked"]),
    ("no person in the original: body AP unverified", {"body_ap": None, "legs_ap": None}, [BODY, LEGS], False,
     ["keypoints: no person found in the original's sampled frames, body AP unverified"], []),
    ("legs out of frame are not judged", {"body_ap": 0.96, "legs_ap": None}, [BODY, LEGS], True, [], ["body_ap"]),
    ("keypoints below and above their limits", {"body_ap": 0.5, "face_nme": 0.4}, [BODY, NME], False,
     ["keypoints: body AP@[.5:.95] 0.500 below 0.9", "keypoints: face landmark NME 0.400 above 0.25"], ["body_ap", "face_nme"]),
    ("leaks without the reports", {"leaks": 2}, [LEAKS], False, ["PHI leak scan: 2 occurrence(s)"], ["leaks"]),
    ("text and a lost endpoint", {"text_boxes": 1, "endpoints_lost": 1}, [TEXT, LOST], False,
     ["burned-in text: 1 text box(es) remain", "endpoint: 1 endpoint(s) lost"], ["text_boxes", "endpoints_lost"]),
    ("a header value and a short encode", {"header_residual": 1, "frame_count_difference": 2, "frames": 10}, [HEADER, FRAMES], False,
     ["header: 1 value(s) of the original left", "encode: wrote 10 frames, 2 more or fewer than the input has"], ["header_residual", "frame_count_difference"]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "figures", "checks", "released", "reasons", "rows"), CASES, ids=[c[0] for c in CASES])
def test_decide_table(name, figures, checks, released, reasons, rows) -> None:
    decision = decide(figures, checks)
    assert decision.released is released
    assert len(decision.reasons) == len(reasons) and all(r.startswith(p) for r, p in zip(decision.reasons, reasons)), decision.reasons
    assert [row["name"] for row in decision.rows] == rows
    # the rows say what the verdict says, and audit verify recomputes each to its recorded outcome
    assert all(recheck(row) == row["passed"] for row in decision.rows)
    failing_rows = [row for row in decision.rows if not row["passed"]]
    assert bool(failing_rows) <= (not decision.released)


def test_every_threshold_of_a_profile_is_a_check_with_the_profiles_limit() -> None:
    motor = load_profile("pd_motor")
    checks = {c.name: c for c in checks_for(motor)}
    for name, rec in motor.verify.recognizers.items():
        assert checks[f"{name}_match_rate"].limit == rec.max_matched_fraction and str(rec.threshold) in checks[f"{name}_match_rate"].label
    for part in ("body", "arms"):
        assert checks[f"{part}_ap"].limit == getattr(motor.verify.keypoints, f"{part}_ap_min")
    for name, tol in motor.verify.endpoints.judged().items():
        assert checks[f"endpoint_{name}_change"].limit == tol.value
    assert checks["endpoint_tremor_frequency_hz_change"].unit == "Hz" and checks["endpoint_tap_rate_hz_change"].unit == "of the original's value"
    # a stricter child profile moves the same rows, and nothing else decides
    strict = dataclasses.replace(motor, verify=dataclasses.replace(
        motor.verify, recognizers={"sface": RecognizerCheck(0.3, 0.1)}, keypoints=KeypointThresholds(body_ap_min=0.99), face_realism=FaceRealismCheck(score_ratio_min=0.95, mesh_presence_min=None, eye_correlation_min=None, eye_deviation_max=None, corner_lift_max=None),
    ))  # fmt: skip
    table = {c.name: (c.op, c.limit) for c in checks_for(strict)}
    assert table["sface_match_rate"] == ("<=", 0.1) and "dlib_match_rate" not in table
    assert table["body_ap"] == (">=", 0.99) and "arms_ap" not in table
    assert table["face_score_ratio"] == (">=", 0.95) and "face_mesh_presence" not in table
    assert gallery_check(motor).limit == motor.verify.gallery.max_rank1
    assert gallery_check(load_profile("basic")) is None


def test_a_leak_reason_names_the_kind_and_where_never_the_value() -> None:
    leaks = [Leak("DOE^JOHN", "DOE^JOHN", 384, "...DOE^JOHN...", "ascii", "name"), Leak("19500312", "12/03/1950", 900, "..", "ascii", "date")]
    decision = decide({"leaks": 2}, [LEAKS], ItemReports(leaks=leaks))
    assert not decision.released and len(decision.reasons) == 1
    reason = decision.reasons[0]
    assert "name 1" in reason and "date 1" in reason and "at byte offset(s) 384, 900" in reason and "site's quarantine copy only" in reason
    assert "DOE" not in reason and "1950" not in reason and "12/03" not in reason
    # the values are for the site's copy only
    assert any("DOE^JOHN" in d and "offset 384" in d for d in decision.details)


def test_a_leak_reason_names_the_attributes_the_values_came_from() -> None:
    leaks = [Leak("DOE^JOHN", "JOHN", 10, "..", "ascii", "name", "PatientName"), Leak("ID-123456", "ID-123456", 90, "..", "ascii", "id", "PatientID")]
    reason = decide({"leaks": 2}, [LEAKS], ItemReports(leaks=leaks)).reasons[0]
    assert "the values of PatientID, PatientName" in reason and "JOHN" not in reason and "123456" not in reason


def test_reasons_that_are_not_a_figure_against_a_limit() -> None:
    reason, detail = error_reason("input error: ", "cannot decode /data/DOE_JOHN.dcm: bad header", "/data/DOE_JOHN.dcm: bad header")
    assert "DOE" not in reason and "site's quarantine copy" in reason and "DOE_JOHN" in detail
    assert error_reason("", "the file is truncated", "") == ("the file is truncated", None)
    assert duplicate_reason("ab12").startswith("duplicate: the same object") and "ab12" in duplicate_reason("ab12")

    @dataclasses.dataclass
    class Finding:
        kind: str
        path: str
        source: str

    assert header_reasons([Finding("date", "StudyDate", "PatientBirthDate")]) == ["header: date at StudyDate (from PatientBirthDate)"]


def test_a_gait_filmed_from_behind_is_released_without_face_figures_and_a_seated_exam_is_not() -> None:
    """pd_gait (``faces.required: false``): an original that shows no face on any sampled frame has
    nothing for re-id or face realism to compare, and is released on the other checks; pd_motor
    requires the face and quarantines the same figures. A face in the original, or a re-id that did
    not run (no ``faces_in_original``), still needs the compared frames."""
    faceless = {
        "faces_in_original": 0, "dlib_frames_checked": 0, "dlib_match_rate": 0.0, "sface_frames_checked": 0, "sface_match_rate": 0.0,
        "residual_face_frames": 0, "residual_recognizable_faces": 0, "face_realism_frames": 0,
        # face realism ran and found no face to measure
        **{name: None for name, *_ in REALISM_CHECKS},
    }  # fmt: skip
    for name, released in (("pd_gait", True), ("pd_motor", False)):
        checks = [c for c in checks_for(load_profile(name)) if c.group in ("reid", "faces", "realism")]
        decision = decide(faceless, checks)
        assert decision.released is released, (name, decision.reasons)
        assert all(recheck(row) == row["passed"] for row in decision.rows)
        assert not any(row["name"].endswith("_frames_checked") or row["name"] == "face_realism_frames" for row in decision.rows) is released
    gait = [c for c in checks_for(load_profile("pd_gait")) if c.group in ("reid", "faces", "realism")]
    assert any("only 0 frame(s) could be compared" in r for r in decide({**faceless, "faces_in_original": 3}, gait).reasons)
    unrun = {k: v for k, v in faceless.items() if k != "faces_in_original"}
    assert not decide(unrun, gait).released

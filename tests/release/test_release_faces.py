"""`clinrelease run` where faces matter: a face-swap release, and failing closed when faces stay.

Real models on the carphone clip (a talking face), cut to a few frames; the profiles are written to
tmp_path and extend the shipped ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from _release_helpers import invoke, json_result, make_keys, release_clip_with_plugin, released_header, summary
from clinrelease.face.surrogate_choice import STRONGER_SWAP
from clinrelease.fixtures import Identity, build_dicom_fixture, build_mp4_fixture, carphone_path

FRAMES = 12


@pytest.fixture(scope="module")
def key_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = make_keys(tmp_path_factory.mktemp("keys") / "keys")
    # The key chooses the surrogate, and on this 176x144 clip the head AP of a swap varies with the
    # surrogate (a random key once gave 0.479, under the 0.5 below): a fixed key makes the figures reproducible.
    (folder / "release.key").write_text(bytes(range(32)).hex() + "\n")
    return folder


@pytest.fixture
def keys(key_template: Path, tmp_path: Path) -> Path:
    """The fixed key in a folder of the test's own. The key folder keeps each patient's surrogate
    decision, and every test's patient has the same ID: in one shared folder the 45-degree tilted
    again.mkv took the surrogate that whichever test ran first had decided on another clip (SFace
    0.383, quarantined, only in the runs where xdist ordered the tests so)."""
    import shutil

    return Path(shutil.copytree(key_template, tmp_path / "key-folder"))


def test_face_swap_release_reports_per_recognizer_and_keypoint_figures(keys: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    build_dicom_fixture(folder / "face.dcm", carphone_path(), "h264", FRAMES, identity=Identity())
    # pd_face with the keypoint limits loosened: 176x144 frames give a coarse head pose and mesh (the
    # shipped 0.95 / 0.04 sit at the edge for this clip); recognizers, OCR and leak scan as shipped
    profile = tmp_path / "pd_face_small.yaml"
    profile.write_text(
        "name: pd_face_small\nextends: pd_face\nverify:\n  keypoints:\n    head_ap_min: 0.5\n    face_expression_nme_max: 0.1\n"
    )
    out = tmp_path / "release"
    result = invoke(["run", "-p", str(profile), "-i", str(folder), "-o", str(out), "-k", str(keys), "--json"])
    doc = json_result(result)
    item = summary(out)["items"][0]
    assert result.exit_code == 0 and doc["counts"]["released"] == 1, item["reasons"]
    figures = item["verification"]
    assert set(figures["recognizers"]) == {"dlib", "sface"}
    for name, rec in figures["recognizers"].items():
        assert rec["frames_checked"] >= 1 and rec["frames_matched"] == 0, (name, rec)
        assert isinstance(rec["worst"], float)
    # dlib: a distance above its 0.6 threshold means "another person"; SFace: cosine below 0.363
    assert figures["recognizers"]["dlib"]["worst"] > 0.6
    assert figures["recognizers"]["sface"]["worst"] < 0.363
    kp = figures["keypoints"]
    assert kp["head_ap"] >= 0.5 and kp["face_expression_nme"] is not None and kp["face_expression_nme"] <= 0.1
    assert kp["face_nme"] is not None and kp["face_nme"] > kp["face_expression_nme"]  # the shape change, left out
    assert {"body_ap", "head_ap", "face_nme", "face_expression_nme"} <= set(kp)
    # the swapped face still reads as a face with the patient's mouth (pd_face's face_realism, on pd_gait's)
    realism = figures["face_realism"]
    assert realism["face_realism_frames"] >= 1 and realism["face_score_ratio"] >= 0.9 and realism["face_mesh_presence"] >= 0.95
    assert realism["corner_lift_abs"] <= 0.06 and realism["mouth_opening_change_abs"] <= 0.05
    assert realism["mouth_opening_change_abs"] == abs(realism["mouth_opening_change"])
    record = json.loads(next((tmp_path / "release.work").rglob("records/*.json")).read_text())
    judged = {"face_score_ratio", "face_mesh_presence", "corner_lift_abs", "mouth_opening_change_abs"}
    assert judged <= {c["name"] for c in record["audit_checks"]}
    header = released_header(out, item["output"])
    assert header.RecognizableVisualFeatures == "NO" and header.BurnedInAnnotation == "NO"
    assert invoke(["audit", "verify", str(out), "--key", str(keys / "signing.pub")]).exit_code == 0
    # the burned-in captions were found and blanked, and the released pixels show no text
    assert figures["burned_in_text_found"] >= 2 and figures["text_boxes"] == 0
    # the report says where it blanked (never what the text said) and that no face was taken for text
    assert figures["burned_in_text_cleaned"] == figures["burned_in_text_found"] and figures["burned_in_text_on_face"] == 0
    assert figures["burned_in_text_cleaned_at"].startswith("(") and figures["burned_in_text_on_face_at"] == ""
    assert "burned_in_text_cleaned_at" in (out / "report" / "index.html").read_text()
    # original frames (face, captions) appear in the site's report only, never in the release
    assert "data:image/png" not in (out / "report" / "index.html").read_text()
    assert "data:image/png" in (tmp_path / "release.work" / "report" / "index.html").read_text()


def test_release_reports_one_surrogate_per_patient_across_items(keys: Path, tmp_path: Path) -> None:
    """Two visits of one patient and a visit of another: the summary and the report say whether the
    released faces keep one surrogate per patient, and how large the donor pool behind them is."""
    import dataclasses

    from clinrelease.face.surrogates import default_pool, shared_donor_probability

    folder = tmp_path / "in"
    first, other = Identity(), dataclasses.replace(Identity(), patient_id="MRN2718281828", patient_name="Quill^Rosalind")
    build_dicom_fixture(folder / "visit-1.dcm", carphone_path(), "h264", FRAMES, identity=first)
    build_dicom_fixture(folder / "visit-2.dcm", carphone_path(), "h264", FRAMES - 3, identity=first)
    build_dicom_fixture(folder / "other.dcm", carphone_path(), "h264", FRAMES, identity=other)
    profile = tmp_path / "pd_face_small.yaml"
    profile.write_text(
        "name: pd_face_small\nextends: pd_face\nverify:\n  keypoints:\n    head_ap_min: 0.5\n    face_expression_nme_max: 0.1\n"
    )
    out = tmp_path / "release"
    result = invoke(["run", "-p", str(profile), "-i", str(folder), "-o", str(out), "-k", str(keys), "--json"])
    assert json_result(result)["counts"]["released"] == 3, result.output
    surrogates = summary(out)["surrogates"]
    for name in ("dlib", "sface"):
        fig = surrogates["recognizers"][name]
        assert (fig["patients"], fig["same_patient_pairs"], fig["different_patient_pairs"]) == (2, 1, 1), (name, fig)
        # the same patient under the same key wears the same surrogate in both visits
        assert fig["same_patient_matched"] == 1, (name, fig)
        assert fig["lookalike_pairs"] == len(fig["lookalikes"])
    pool = surrogates["pool"]
    assert pool["source"] == "built-in" and pool["donors"] == len(default_pool()) and pool["k"] == 3
    assert pool["shared_donor_probability"] == pytest.approx(shared_donor_probability(pool["donors"], 3), abs=1e-4)
    html = (out / "report" / "index.html").read_text()
    assert "<h3>Surrogates</h3>" in html and f"{pool['donors']} donors" in html


def test_face_checks_run_even_when_the_profile_anonymizes_nothing(keys: Path, tmp_path: Path) -> None:
    """A profile that asks for recognizer checks but switches faces off must fail closed."""
    folder = tmp_path / "in"
    folder.mkdir()
    identity = Identity()
    build_mp4_fixture(folder / "visit.mp4", carphone_path(), FRAMES, identity=identity)
    meta = tmp_path / "meta.csv"
    meta.write_text(f"file,patient_id,patient_name\nvisit.mp4,{identity.patient_id},{identity.patient_name}\n")
    profile = tmp_path / "header_only_checked.yaml"
    profile.write_text(
        "name: header_only_checked\nextends: basic\nverify:\n  sample_every: 3\n"
        "  recognizers:\n    dlib: {threshold: 0.6, max_matched_fraction: 0.0}\n  residual_faces: true\n"
    )
    out = tmp_path / "release"
    result = invoke(["run", "-p", str(profile), "-i", str(folder), "-o", str(out), "-k", str(keys),
                     "--metadata", str(meta), "--json"])  # fmt: skip
    assert result.exit_code == 1, result.output
    item = json_result(result)["items"][0]
    assert item["status"] == "quarantined" and item["output"] is None
    joined = " ".join(item["reasons"])
    assert "re-id (dlib)" in joined and "still match the original" in joined, item["reasons"]
    figures = summary(out)["items"][0]["verification"]
    assert figures["recognizers"]["dlib"]["frames_matched"] == figures["recognizers"]["dlib"]["frames_checked"] > 0
    assert figures["residual_face_frames"] == 0  # the face was found: it is the recognizers that object
    assert not any((out / "data").rglob("*.dcm"))
    reasons = json.loads(next(out.with_name("release.quarantine").glob("*/reasons.json")).read_text())
    assert reasons["reasons"] == item["reasons"]


def test_pd_face_as_shipped_releases_a_face_on_exam_and_verifies_its_movement(keys: Path, tmp_path: Path) -> None:
    """pd_face without overrides on a real face-on clip (again.mkv, 640x480): the full swap passes both
    recognizers while the face's movement is kept within 0.04 eye distances. Its plain landmark NME,
    which counts the swap's intended shape change, is well above that: judging it instead (or the pose
    model's head AP, whose head points sit on eyes, nose and mouth) quarantined every such clip."""
    _, item = _release_shared_clip(tmp_path, keys, "again", "pd_face")
    kp = item["verification"]["keypoints"]
    assert kp["face_expression_nme"] is not None and kp["face_expression_nme"] <= 0.04
    assert kp["face_nme"] > 0.04 > kp["face_expression_nme"]
    recognizers = item["verification"]["recognizers"]
    assert recognizers["dlib"]["frames_matched"] == 0 and recognizers["sface"]["frames_matched"] == 0
    # the exam's endpoints, judged on the encoded release: the eyes', mouth's and face's movement kept
    endpoints = item["verification"]["endpoints"]
    assert {n: endpoints[n]["status"] for n in ("ear_amplitude", "mouth_opening_range", "face_movement_amplitude")} == dict.fromkeys(
        ("ear_amplitude", "mouth_opening_range", "face_movement_amplitude"), "kept"
    ), endpoints


#: a swap plug-in whose texture tears across the face (rows slid sideways in waves, smeared), as a
#: swap sliding off a turning head looks; registered through the anonymizer entry-point group
TORN_SWAP = '''
import cv2
import numpy as np

from clinrelease.face.registry import get_anonymizer


class TornSwap:
    name = "torn_swap"

    def __init__(self, **params):
        self.swap = get_anonymizer("swap", **params)

    def prepare(self, analysis, track_id):
        self.swap.prepare(analysis, track_id)

    def anonymize_frame(self, frame, faces):
        frame = self.swap.anonymize_frame(frame, faces)
        for face in faces:
            x0, y0, x1, y1 = (int(v) for v in face.box)
            region = frame[y0:y1, x0:x1]
            h, w = region.shape[:2]
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            streaked = cv2.remap(region, xx + 0.25 * w * np.sin(yy / h * 6 * np.pi), yy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
            frame[y0:y1, x0:x1] = cv2.blur(streaked, (max(3, w // 6), 1))
        return frame
'''


def test_a_torn_swap_passes_the_recognizers_but_is_quarantined_as_no_longer_a_face(keys: Path, tmp_path: Path, monkeypatch) -> None:
    """The held-out failure of issue 17: a smeared, torn face is "not the patient" and keeps the body
    keypoints, so only the face-realism check stands between it and the release."""
    result, item, record = release_clip_with_plugin(tmp_path, monkeypatch, keys, "torn_swap", TORN_SWAP, "TornSwap", frames=15, sample_every=3)
    assert result.exit_code == 1 and item["status"] == "quarantined", item["reasons"]
    figures = item["verification"]
    assert figures["recognizers"]["dlib"]["frames_matched"] == figures["recognizers"]["sface"]["frames_matched"] == 0
    assert figures["face_realism"]["face_score_ratio"] < 0.6
    assert any(r.startswith("face realism: face score (YuNet, released / original)") and "no longer reads as a face" in r for r in item["reasons"])
    assert all(r.startswith("face realism") for r in item["reasons"]), item["reasons"]  # nothing else objected
    failed = {c["name"] for c in record["audit_checks"] if not c["passed"]}
    assert "face_score_ratio" in failed and "dlib_match_rate" not in failed


def test_a_phone_video_on_its_side_is_released_upright_with_its_face_swapped(keys: Path, tmp_path: Path) -> None:
    """A phone stores the picture on its side with a display matrix; a face lying on its side is one
    the detectors miss. The release turns it upright before anything else and writes it upright."""
    from _verify_helpers import require_media

    from clinrelease.dicom.video import open_video
    from clinrelease.fixtures import source_frames
    from _video_helpers import psnr

    clip = require_media("asl/again.mkv")
    folder = tmp_path / "in"
    folder.mkdir()
    identity = Identity()
    phone = build_mp4_fixture(folder / "visit.mp4", clip, 45, identity=identity, rotation=90).path
    assert open_video(phone).info.orientation.rotation == 90
    meta = tmp_path / "meta.csv"
    meta.write_text(f"file,patient_id,patient_name\nvisit.mp4,{identity.patient_id},{identity.patient_name}\n")
    out = tmp_path / "release"
    result = invoke(["run", "-p", "pd_face", "-i", str(folder), "-o", str(out), "-k", str(keys),
                     "--metadata", str(meta), "--json"])  # fmt: skip
    item = summary(out)["items"][0]
    assert result.exit_code == 0 and item["status"] == "released", item["reasons"]
    recognizers = item["verification"]["recognizers"]
    assert recognizers["dlib"]["frames_checked"] > 0 and recognizers["sface"]["frames_checked"] > 0
    assert recognizers["dlib"]["frames_matched"] == 0 and recognizers["sface"]["frames_matched"] == 0
    header = released_header(out, item["output"])
    assert (header.Rows, header.Columns) == (480, 640) and header.RecognizableVisualFeatures == "NO"
    # upright: the released frames match the clip as filmed, not the clip turned over
    released = list(open_video(out / item["output"]).frames())
    upright = list(source_frames(clip, 45))
    assert len(released) == 45
    # (the lower half: the burned-in caption at the top is blanked and the face is swapped)
    turns = {"upright": upright[0], "upside down": upright[0][::-1, ::-1], "mirrored": upright[0][:, ::-1], "flipped": upright[0][::-1]}
    scores = {name: psnr(released[0][240:], frame[240:]) for name, frame in turns.items()}
    assert scores["upright"] > 30 and max(v for k, v in scores.items() if k != "upright") < 20, scores
    assert invoke(["audit", "verify", str(out), "--key", str(keys / "signing.pub")]).exit_code == 0


@pytest.mark.parametrize(
    ("clip", "degrees", "patient_id"), [("again", 30.0, None), ("again", 45.0, None), ("brother", 45.0, "MRN-brother"), ("help", 30.0, "MRN-help")]
)
def test_tilted_head_exam_is_swapped_verified_and_released(keys: Path, tmp_path: Path, clip: str, degrees: float, patient_id: str | None) -> None:
    """again.mkv turned in-plane (a neck or head exam with the head tilted): pd_motor as shipped
    releases it. Judged as it was, a tilted face failed verification: at 45 degrees YuNet confirmed
    it in none of book.mkv's sampled frames (nothing compared), and on again.mkv it put the eye points
    15-29 px off, so SFace compared two misaligned crops of hair and background (0.52-0.60, "same
    person"; aligned on the mesh's points the same frames score 0.01-0.13). The recognizers now judge
    the face turned upright. (book.mkv sits at SFace 0.360 upright under this key, against 0.363:
    issue 16's key rule, not the tilt.) The release's gallery attack embeds the faces as re-id aligns
    them: embedded as they lay, brother.mkv's tilted faces gave dlib vectors near each other whoever
    they showed, and the attack withdrew a patient the per-frame check had found 0.72 away (this
    patient ID under this key, as bench/hard_video.py found it). help.mkv turned by 30 degrees: with
    the scanner's caption in the frame the text detector missed the hoodie's print, and on the
    encoded release it read it (quarantined); the cleaner looks again at the frame as cleaned, and
    with a lower box threshold than the judging scan's."""
    import itertools

    from _verify_helpers import require_media
    from clinrelease.dicom.video import open_video
    from clinrelease.fixtures import rotated, write_mp4

    source = open_video(require_media(f"asl/{clip}.mkv"))
    tilted = tmp_path / "tilted.mp4"
    write_mp4(tilted, rotated(itertools.islice(source.frames(), FRAMES), degrees), source.info.fps, {})
    folder = tmp_path / "in"
    build_dicom_fixture(folder / "exam.dcm", tilted, "h264", None, identity=Identity() if patient_id is None else Identity(patient_id=patient_id))
    out = tmp_path / "release"
    result = invoke(["run", "-p", "pd_motor", "-i", str(folder), "-o", str(out), "-k", str(keys), "--json"])
    item = summary(out)["items"][0]
    assert result.exit_code == 0 and item["status"] == "released", item["reasons"]
    assert summary(out)["gallery"]["reidentified_rate"] == 0.0
    figures = item["verification"]
    for name in ("dlib", "sface"):
        assert figures["recognizers"][name]["frames_checked"] >= 2 and figures["recognizers"][name]["frames_matched"] == 0
    assert figures["keypoints"]["body_ap"] >= 0.9 and figures["residual_face_frames"] == 0
    assert figures["burned_in_text_cleaned"] >= 2 and figures["burned_in_text_on_face"] == 0
    assert figures["small_face_frames"] == 0 and figures["small_face_at"] == ""  # a 75 px face


def test_one_patient_keeps_one_surrogate_decision_across_shards_runs_and_releases(tmp_path: Path) -> None:
    """Two visits of one patient in two shards: the first shard measures which surrogate of the key's
    sequence the patient gets, the second reads that decision from the key folder; a later release
    with the same key reads it too. The decision is in each item's record and the site's audit log."""
    from clinrelease.face.surrogate_choice import CHOICES_FILE

    keys = make_keys(tmp_path / "keys")
    folder = tmp_path / "in"
    build_dicom_fixture(folder / "visit-1.dcm", carphone_path(), "h264", FRAMES, identity=Identity())
    build_dicom_fixture(folder / "visit-2.dcm", carphone_path(), "h264", FRAMES - 3, identity=Identity())
    profile = tmp_path / "pd_face_small.yaml"
    profile.write_text(
        "name: pd_face_small\nextends: pd_face\nverify:\n  keypoints:\n    head_ap_min: 0.5\n    face_expression_nme_max: 0.1\n"
    )
    out = tmp_path / "release"
    for shard in ("0/2", "1/2"):
        result = invoke(["run", "-p", str(profile), "-i", str(folder), "-o", str(out), "-k", str(keys), "--shard", shard, "--json"])
        assert result.exit_code in (0, 1), result.output
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "release.work").rglob("records/*.json"))]
    decisions = [r["faces"]["surrogate"] for r in records]
    assert len(decisions) == 2 and records[0]["pseudonym"] == records[1]["pseudonym"]
    assert sorted(d["decided"] for d in decisions) == ["measured", "stored"]
    assert decisions[0]["counter"] == decisions[1]["counter"] and decisions[0]["tried"] == decisions[1]["tried"]
    # the first candidate that clears the margin, or the farthest when none of them does
    chosen = next(c for c in decisions[0]["tried"] if c["counter"] == decisions[0]["counter"])
    assert chosen["counter"] == decisions[0]["counter"] and set(chosen["closest"]) == {"dlib", "sface"}
    assert {r["verification"]["surrogate_counter"] for r in records} == {decisions[0]["counter"]}
    stored = json.loads((keys / CHOICES_FILE).read_text())
    assert list(stored["entries"]) == [records[0]["pseudonym"]]
    merged = invoke(["merge", str(out), "--keys", str(keys), "--json"])
    assert merged.exit_code in (0, 1), merged.output
    internal = [json.loads(line) for line in (tmp_path / "release.work" / "audit-internal.jsonl").read_text().splitlines()]
    logged = [r["surrogate"] for r in internal if r["type"] == "item"]
    assert len(logged) == 2 and {d["counter"] for d in logged} == {decisions[0]["counter"]}
    released_log = (out / "audit" / "log.jsonl").read_text()
    assert '"tried"' not in released_log  # the recognizers' figures on the patient stay with the site
    # a later release with the same key: the stored decision, not a new measurement
    later = tmp_path / "later"
    result = invoke(["run", "-p", str(profile), "-i", str(folder / "visit-1.dcm"), "-o", str(later), "-k", str(keys), "--json"])
    assert result.exit_code in (0, 1), result.output
    record = json.loads(next((tmp_path / "later.work").rglob("records/*.json")).read_text())
    assert record["faces"]["surrogate"]["decided"] == "stored" and record["faces"]["surrogate"]["counter"] == decisions[0]["counter"]


def test_shards_whose_key_folder_copies_decided_one_patient_apart_are_not_merged(tmp_path: Path) -> None:
    """Two shards, each with its own copy of the key folder: the second copy already held another
    decision for the patient (its shard decided on other frames), so the patient's two visits carry
    different surrogates. The merge refuses, naming the patient and the items, and releases nothing;
    once the copy holds the first decision and the visit is redone, the merge goes through."""
    import shutil

    from clinrelease.face.surrogate_choice import CHOICES_FILE, MARGIN, ChoiceStore, SurrogateDecision

    keys = make_keys(tmp_path / "keys")
    copy = tmp_path / "keys-copy"
    shutil.copytree(keys, copy)
    folder = tmp_path / "in"
    build_dicom_fixture(folder / "visit-1.dcm", carphone_path(), "h264", FRAMES, identity=Identity())
    build_dicom_fixture(folder / "visit-2.dcm", carphone_path(), "h264", FRAMES - 3, identity=Identity())
    profile = tmp_path / "pd_face_small.yaml"
    profile.write_text("name: pd_face_small\nextends: pd_face\nverify:\n  keypoints:\n    head_ap_min: 0.5\n    face_expression_nme_max: 0.1\n")
    out = tmp_path / "release"
    work = tmp_path / "release.work"
    result = invoke(["run", "-p", str(profile), "-i", str(folder), "-o", str(out), "-k", str(keys), "--shard", "0/2", "--json"])
    assert result.exit_code in (0, 1), result.output
    first = json.loads(next(work.rglob("records/*.json")).read_text())
    counter = first["faces"]["surrogate"]["counter"]
    other = SurrogateDecision(counter + 1, "measured", MARGIN, [])
    ChoiceStore(copy, bytes.fromhex((keys / "release.key").read_text().strip())).decide(first["pseudonym"], lambda: other)
    result = invoke(["run", "-p", str(profile), "-i", str(folder), "-o", str(out), "-k", str(copy), "--shard", "1/2", "--json"])
    assert result.exit_code in (0, 1), result.output
    records = {p: json.loads(p.read_text()) for p in work.rglob("records/*.json")}
    assert sorted(r["faces"]["surrogate"]["counter"] for r in records.values()) == [counter, counter + 1]

    merged = invoke(["merge", str(out), "--keys", str(keys)])
    assert merged.exit_code == 2, merged.output
    message = " ".join(merged.output.split())
    assert f"patient {first['pseudonym']} was given different surrogates" in message
    assert f"surrogate {counter} for {first['input']}" in message and "visit-" in message.split(f"surrogate {counter + 1} for ")[1]
    assert not (out / "audit").exists()  # nothing released or signed

    # the remedy the message gives: the copy takes the decision, the other visit is redone
    shutil.copy(keys / CHOICES_FILE, copy / CHOICES_FILE)
    redo = next(p for p, r in records.items() if r["faces"]["surrogate"]["counter"] == counter + 1)
    redo.unlink()
    result = invoke(["run", "-p", str(profile), "-i", str(folder), "-o", str(out), "-k", str(copy), "--shard", "1/2", "--json"])
    assert result.exit_code in (0, 1), result.output
    assert {json.loads(p.read_text())["faces"]["surrogate"]["counter"] for p in work.rglob("records/*.json")} == {counter}
    merged = invoke(["merge", str(out), "--keys", str(keys)])
    assert merged.exit_code in (0, 1), merged.output
    assert (out / "audit" / "log.jsonl").is_file()


def test_a_profile_that_quarantines_turned_faces_names_the_frames_and_the_treatment_in_the_report(keys: Path, tmp_path: Path) -> None:
    """faces.profile_view: quarantine, with the turn limit (profile_yaw) set below the carphone
    speaker's own head turns: the frames past it are blurred with grain, listed per face, and the item
    is quarantined with a reason naming them; the QA report names the treatments."""
    folder = tmp_path / "in"
    build_dicom_fixture(folder / "exam.dcm", carphone_path(), "h264", FRAMES, identity=Identity())
    profile = tmp_path / "turned.yaml"
    profile.write_text(
        "name: turned\nextends: pd_face\nfaces:\n  profile_view: quarantine\n  profile_yaw: 0.01\n"
        "verify:\n  keypoints:\n    head_ap_min: 0.5\n    face_expression_nme_max: 0.1\n"
    )
    out = tmp_path / "release"
    result = invoke(["run", "-p", str(profile), "-i", str(folder), "-o", str(out), "-k", str(keys), "--json"])
    assert result.exit_code == 1, result.output
    record = json.loads(next((tmp_path / "release.work").rglob("records/*.json")).read_text())
    figures = record["verification"]
    turned = record["faces"]["methods"]["turned_frames_by_track"]
    assert turned and figures["profile_view_frames"] == sum(len(f) for f in turned.values()) > 0
    assert figures["profile_view_treatment"] == "quarantine" and figures["faces_textured_blur_frames"] == figures["profile_view_frames"]
    assert figures["small_face_method"] == "upscaled_swap"
    assert any("turned beyond the swap" in r and figures["profile_view_at"] in r for r in record["reasons"]), record["reasons"]
    report = (tmp_path / "release.work" / "report" / "index.html").read_text()
    assert "profile_view_at" in report and "faces_textured_blur_at" in report


def test_a_patient_the_keys_first_surrogate_left_recognizable_is_released_with_the_next(tmp_path: Path) -> None:
    """again.mkv under this key, as `clinrelease demo` draws keys: the key's first surrogate stays
    SFace-similar to the signer in a sampled frame (0.453 over the 0.363 limit, measured ad hoc on these frames),
    so every release before the keyed sequence quarantined this patient. Now the screening skips it
    and the release passes."""
    import hashlib

    from _verify_helpers import require_media
    from clinrelease.dicom.keyed import pseudonym
    from clinrelease.dicom.video import open_video
    from clinrelease.face.pipeline import analyze_faces, anonymize_frames
    from clinrelease.profiles import load_profile
    from clinrelease.release import build_anonymizers
    from clinrelease.verify.reid import verify_reid

    key = hashlib.sha256(b"h10-19").digest()
    keys = make_keys(tmp_path / "keys")
    (keys / "release.key").write_text(key.hex() + "\n")
    folder = tmp_path / "in"
    build_dicom_fixture(folder / "exam.dcm", require_media("asl/again.mkv"), "h264", FRAMES, identity=Identity())
    # before: the key's first surrogate, checked by pd_motor's recognizers on the same frames
    profile = load_profile("pd_motor")
    frames = list(open_video(folder / "exam.dcm"))
    faces = profile.faces
    analysis = analyze_faces(frames, patient_rule=faces.patient_rule, min_face_px=faces.min_face_px, hands=faces.keep_hands, prefetch=0)
    patient, bystander = build_anonymizers(profile, key, pseudonym(key, Identity().patient_id))
    first = list(anonymize_frames(frames, analysis, patient=patient, bystander=bystander, prefetch=0))
    before = verify_reid(frames, first, analysis, recognizers=list(profile.verify.recognizers), sample_every=profile.verify.sample_every, prefetch=0)
    assert before.results["sface"].frames_matched >= 1, {n: r.worst_similarity for n, r in before.results.items()}

    out = tmp_path / "release"
    result = invoke(["run", "-p", "pd_motor", "-i", str(folder), "-o", str(out), "-k", str(keys), "--json"])
    item = summary(out)["items"][0]
    assert result.exit_code == 0 and item["status"] == "released", item["reasons"]
    recognizers = item["verification"]["recognizers"]
    assert recognizers["dlib"]["frames_matched"] == 0 and recognizers["sface"]["frames_matched"] == 0
    record = json.loads(next((tmp_path / "release.work").rglob("records/*.json")).read_text())
    assert record["pseudonym"] == pseudonym(key, Identity().patient_id)
    decision = record["faces"]["surrogate"]
    assert decision["counter"] >= 1 and decision["tried"][0]["counter"] == 0 and decision["tried"][0]["too_close"]


def test_the_profiles_sface_threshold_decides_and_the_record_and_audit_log_agree(tmp_path: Path) -> None:
    """book.mkv swapped with little of the surrogate's shape (identity_strength 0.1): every plain
    candidate of the key's sequence stays SFace-similar to the signer (0.4 and more on the screened
    frames), so the looser profile (threshold 0.50, margin 0.1) screens past them to the sequence's
    stronger stage, which takes the whole face shape from the surrogate: counter 16, worst cosine
    0.146 on the sampled frames (measured here). The stricter profile (0.12) reads that decision back
    from the key's store and judges the same faces: the same person at 0.12, quarantined; at 0.50
    another person, released. In both, the recorded figures are counted at the profile's threshold,
    the audit rows agree with the verdict, and `audit verify` passes."""
    from _release_helpers import records
    from _verify_helpers import require_media

    keys = make_keys(tmp_path / "keys")
    (keys / "release.key").write_text(bytes(range(32)).hex() + "\n")
    folder = tmp_path / "in"
    build_dicom_fixture(folder / "exam.dcm", require_media("asl/book.mkv"), "h264", FRAMES, identity=Identity())
    seen = {}
    # the looser first: its screening decides the patient's surrogate, the stricter run reads it back
    order = ("0.50", "0.12")
    for threshold in order:
        profile = tmp_path / f"sface_{threshold}.yaml"
        profile.write_text(
            f"name: sface_{threshold}\nextends: pd_face\nanonymizer:\n  params:\n    identity_strength: 0.1\n"
            "verify:\n  face_realism: null\n  endpoints: null\n  keypoints:\n    face_expression_nme_max: null\n"
            f"  recognizers:\n    dlib: null\n    sface:\n      threshold: {threshold}\n"
        )
        out = tmp_path / f"release_{threshold}"
        result = invoke(["run", "-p", str(profile), "-i", str(folder), "-o", str(out), "-k", str(keys), "--json"])
        record = records(out)[0]
        figures = record["verification"]
        limit = float(threshold)
        # frames_matched is the count at the profile's threshold of the worst face per sampled frame
        by_frame: dict[int, float] = {}
        for frame, similarity in record["series"]["similarity"]["sface"]:
            by_frame[frame] = max(similarity, by_frame.get(frame, -1.0))
        assert figures["sface_frames_checked"] == len(by_frame) >= 1
        assert figures["sface_frames_matched"] == sum(v >= limit for v in by_frame.values())
        rows = {row["name"]: row for row in record["audit_checks"]}
        assert rows["sface_match_rate"]["value"] == figures["sface_match_rate"]
        assert (record["status"] == "released") is all(row["passed"] for row in rows.values())
        assert invoke(["audit", "verify", str(out), "--key", str(keys / "signing.pub")]).exit_code == 0
        surrogate = record["faces"]["surrogate"]
        seen[threshold] = (record["status"], result.exit_code, figures["sface_worst"], surrogate["counter"], record["reasons"], surrogate.get("swap"))
    loose, strict = seen[order[0]], seen[order[1]]
    # the same surrogate (decided once, kept with the key) and so the same faces under both profiles
    assert strict[2] == loose[2] and strict[3] == loose[3] >= 16 and 0.12 <= strict[2] < 0.50
    assert strict[5] == loose[5] == STRONGER_SWAP == {"identity_strength": 1.0, "brow_turn": 90.0}
    assert strict[:2] == ("quarantined", 1) and loose[:2] == ("released", 0), (strict, loose)
    assert any(r.startswith("re-id (sface):") and "same person at >= 0.12" in r for r in strict[4])
    assert loose[4] == []


def test_a_signer_whose_hands_cross_a_shirt_print_is_released_with_hands_and_no_black_box(keys: Path, tmp_path: Path) -> None:
    """help.mkv under pd_motor as shipped: the hoodie's print is found on a scan with the hands down,
    and the sign then holds the hands over it. Painted black and over the hands (the union of two
    scans' regions), the release was quarantined (body AP 0.745, hands 0.575, the whole clip); the
    print cleaned with texture round the analysis's hands, it was quarantined still, the hands over
    the printed skull reading as a face once the letters were gone. Now the hands stay, and that
    face-like pattern is named in the record as what it is (where the cleaner painted the
    patient's clothing, no face there in the original)."""
    from clinrelease.dicom.video import open_video
    from clinrelease.face.textured_blur import flat_filled

    exam, item = _release_shared_clip(tmp_path, keys, "help", "pd_motor")
    figures = item["verification"]
    assert figures["burned_in_text_cleaned"] >= 1 and figures["residual_face_frames"] == 0
    assert figures["keypoints"]["body_ap"] >= 0.9 and figures["keypoints"]["hands_ap"] >= 0.85, figures["keypoints"]
    original = list(open_video(exam).frames())
    released = list(open_video(tmp_path / "release" / item["output"]).frames())
    # no box below the caption: a painted box there is thousands of flat pixels a frame; the swap's and
    # the cleaner's own flat specks are 0-10
    assert max(int(flat_filled(a, b)[120:].sum()) for a, b in zip(original, released)) <= 20


def _release_shared_clip(tmp_path: Path, keys: Path, clip: str, profile: str, frames: int = 45) -> tuple[Path, dict]:
    """Release the first ``frames`` frames of a shared ASL clip (as DICOM with planted PHI) under
    ``profile`` into ``tmp_path / "release"``; the input file and the summary's item, released."""
    from _verify_helpers import require_media

    exam = tmp_path / "in" / "exam.dcm"
    build_dicom_fixture(exam, require_media(f"asl/{clip}.mkv"), "h264", frames, identity=Identity())
    out = tmp_path / "release"
    result = invoke(["run", "-p", profile, "-i", str(exam.parent), "-o", str(out), "-k", str(keys), "--json"])
    item = summary(out)["items"][0]
    assert result.exit_code == 0 and item["status"] == "released", item["reasons"]
    return exam, item


def test_a_walk_filmed_from_behind_is_released_under_pd_gait_with_its_legs(keys: Path, tmp_path: Path) -> None:
    """The shared walking clip where a walker stands at a table, leaves past it and the room stays
    empty (frames 100-230), as a DICOM video with the scanner's burned-in name and MRN. It shows no face: pd_gait
    (``faces.required: false``) releases it without re-id figures and says so (faces_in_original 0),
    pd_motor quarantines it. Before, it was quarantined on three counts: no frame to compare; the
    text cleaner read the table's base as "XI" and "X" and painted the walker's legs going past (legs
    AP 0.85); and the pose model saw a "person" in the empty room of the re-encoded original (lost in
    the release) that it does not see again one pixel over."""
    import itertools

    from _verify_helpers import require_media
    from clinrelease.dicom.video import open_video
    from clinrelease.fixtures import write_mp4

    source = open_video(require_media("one-by-one-person-detection.mp4"))
    clip = tmp_path / "walk.mp4"
    write_mp4(clip, itertools.islice(source.frames(), 100, 231), source.info.fps, {})
    folder = tmp_path / "in"
    build_dicom_fixture(folder / "walk.dcm", clip, "h264", None, identity=Identity(patient_id="MRN-walk"))
    out = tmp_path / "release"
    result = invoke(["run", "-p", "pd_gait", "-i", str(folder), "-o", str(out), "-k", str(keys), "--json"])
    item = summary(out)["items"][0]
    assert result.exit_code == 0 and item["status"] == "released", item["reasons"]
    figures = item["verification"]
    assert figures["faces_in_original"] == 0 and figures["residual_face_frames"] == 0
    assert all(rec["frames_checked"] == 0 for rec in figures["recognizers"].values())
    assert figures["keypoints"]["legs_ap"] >= 0.95 and figures["keypoints"]["body_ap"] >= 0.95
    assert figures["keypoints"]["keypoint_frames_unreliable"] >= 1 and figures["burned_in_glyphs_left"] >= 1
    assert figures["burned_in_text_cleaned"] >= 2 and figures["text_boxes"] == 0
    assert invoke(["audit", "verify", str(out), "--key", str(keys / "signing.pub")]).exit_code == 0
    motor = tmp_path / "motor"
    invoke(["run", "-p", "pd_motor", "-i", str(folder), "-o", str(motor), "-k", str(keys), "--json"])
    reasons = summary(motor)["items"][0]["reasons"]
    assert any("only 0 frame(s) could be compared" in r for r in reasons), reasons

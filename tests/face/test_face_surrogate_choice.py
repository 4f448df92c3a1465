"""The key's surrogate sequence: a surrogate too close to the patient is skipped, and the decision is
kept with the key (real swap and recognizers on the carphone clip, a few frames)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _face_helpers import KEY_A, KEY_B
from _verify_helpers import close_mouth, read_frames, require_media
from clinrelease.dicom.video import open_video
from clinrelease.errors import ConfigError
from clinrelease.face.pipeline import analyze_faces
from clinrelease.face.surrogate_choice import (
    CHOICES_FILE,
    MARGIN,
    MAX_CANDIDATES,
    STRONGER_SWAP,
    ChoiceStore,
    SurrogateDecision,
    patient_samples,
    screen,
    too_close,
)
from clinrelease.face.surrogates import Donor, choose_surrogate, composite, default_pool, surrogate_seed
from clinrelease.face.swap import SwapAnonymizer
from clinrelease.fixtures import carphone_path
from clinrelease.profiles import load_profile
from clinrelease.release import build_anonymizers
from clinrelease.verify.reid import get_recognizer


@pytest.fixture(scope="module")
def clip():
    frames = [f for _, f in zip(range(12), open_video(carphone_path()))]
    return frames, analyze_faces(frames, prefetch=0)


@pytest.fixture(scope="module")
def recognizers():
    return {"dlib": (get_recognizer("dlib"), 0.6), "sface": (get_recognizer("sface"), 0.363)}


def test_counter_zero_is_the_surrogate_of_every_earlier_release_and_later_counters_differ() -> None:
    pool = default_pool()
    first = choose_surrogate(pool, KEY_A, "patient-1")
    assert choose_surrogate(pool, KEY_A, "patient-1", counter=0).digest == first.digest
    others = {choose_surrogate(pool, KEY_A, "patient-1", counter=c).digest for c in (1, 2)}
    assert first.digest not in others and len(others) == 2
    assert surrogate_seed(KEY_A, "patient-1", 1) != surrogate_seed(KEY_B, "patient-1", 1)
    with pytest.raises(ConfigError, match="must not be negative"):
        surrogate_seed(KEY_A, "patient-1", -1)


def test_margin_rule_reads_distances_and_similarities_in_their_own_direction() -> None:
    assert too_close(0.65, 0.6, higher_is_same=False, margin=MARGIN)  # dlib: within 0.1 above the limit
    assert not too_close(0.71, 0.6, higher_is_same=False, margin=MARGIN)
    assert too_close(0.30, 0.363, higher_is_same=True, margin=MARGIN)  # SFace: within 0.1 under the limit
    assert not too_close(0.25, 0.363, higher_is_same=True, margin=MARGIN)


def test_a_surrogate_that_is_the_patient_is_skipped_for_the_next_of_the_sequence(clip, recognizers) -> None:
    frames, analysis = clip
    samples = patient_samples(frames, analysis)
    assert 1 <= len(samples) <= 4
    # a pool whose first draw is the patient's own face: two of the patient's frames as donors
    own = [Donor(f"patient#{i}", frame, np.asarray(face.landmarks[:, :2], np.float32)) for i, (frame, face) in enumerate(samples[:2])]
    patient_surrogate = composite(own)

    def anonymizer_for(counter: int) -> SwapAnonymizer:
        if counter == 0:
            return SwapAnonymizer(surrogate=patient_surrogate)
        return SwapAnonymizer(key=KEY_A, pseudonym="patient-1", counter=counter)

    decision = screen(samples, anonymizer_for, analysis.patient.track_id, analysis, recognizers)
    first = decision.tried[0]
    assert first.counter == 0 and first.too_close, first
    # the patient on the patient: at least one recognizer calls it the same person outright
    assert first.closest["dlib"] < 0.6 or first.closest["sface"] >= 0.363, first
    assert decision.counter >= 1 and decision.decided == "measured"
    chosen = decision.tried[-1]
    assert chosen.counter == decision.counter and not chosen.too_close
    assert chosen.closest["dlib"] >= 0.6 + MARGIN and chosen.closest["sface"] <= 0.363 - MARGIN


def test_a_surrogate_that_clears_the_screening_frames_but_not_a_wider_one_is_skipped(clip, recognizers) -> None:
    """The screening looks at four frames; a surrogate that clears them can still be the patient on a
    frame between them (book.mkv tilting -40..40 degrees: dlib 0.578 on one frame). The wider frames
    confirm a candidate before it is taken: here the candidate the screening frames alone would take
    leaves the patient's face as it is on one wider frame, and a later candidate is taken."""
    frames, analysis = clip
    samples = patient_samples(frames, analysis)
    wider = patient_samples(frames, analysis, count=12)
    screened = {face.frame_index for _, face in samples}
    missed = next(face.frame_index for _, face in wider if face.frame_index not in screened)

    def plain(counter: int) -> SwapAnonymizer:
        return SwapAnonymizer(key=KEY_A, pseudonym="patient-1", counter=counter)

    alone = screen(samples, plain, analysis.patient.track_id, analysis, recognizers)
    taken = alone.counter
    assert not alone.tried[-1].too_close

    class MissesOneFrame:
        """That surrogate, except that the face of one frame is left as it is."""

        def __init__(self) -> None:
            self.swap = plain(taken)

        def prepare(self, analysis, track_id) -> None:
            self.swap.prepare(analysis, track_id)

        def anonymize_frame(self, frame, faces):
            return frame if faces[0].frame_index == missed else self.swap.anonymize_frame(frame, faces)

    def anonymizer_for(counter: int):
        return MissesOneFrame() if counter == taken else plain(counter)

    confirmed = screen(samples, anonymizer_for, analysis.patient.track_id, analysis, recognizers, more_samples=wider)
    assert confirmed.tried[taken].too_close and confirmed.counter > taken
    assert confirmed.frames == len(screened | {face.frame_index for _, face in wider})


def test_when_no_candidate_clears_the_margin_the_farthest_is_taken(clip, recognizers) -> None:
    frames, analysis = clip
    samples = patient_samples(frames, analysis)[:1]
    # a margin no surrogate can clear: the candidate with the most room to the thresholds is kept
    anonymizer_for = lambda c: SwapAnonymizer(key=KEY_A, pseudonym="patient-1", counter=c)  # noqa: E731
    decision = screen(samples, anonymizer_for, analysis.patient.track_id, analysis, recognizers, margin=2.0, max_candidates=3)
    assert [c.counter for c in decision.tried] == [0, 1, 2] and all(c.too_close for c in decision.tried)
    room = {c.counter: min(c.closest["dlib"] - 0.6, 0.363 - c.closest["sface"]) for c in decision.tried}
    assert decision.counter == max(room, key=room.get) and decision.frames is None
    # with more of the patient's frames to rank on, each candidate's closest value is over all of them
    wider = patient_samples(frames, analysis, count=8)
    ranked = screen(samples, anonymizer_for, analysis.patient.track_id, analysis, recognizers, margin=2.0, max_candidates=3,
                    more_samples=wider)  # fmt: skip
    assert ranked.frames == len({face.frame_index for _, face in samples + wider}) > len(samples)
    for one, many in zip(decision.tried, ranked.tried):
        assert many.closest["dlib"] <= one.closest["dlib"] and many.closest["sface"] >= one.closest["sface"]
    room = {c.counter: min(c.closest["dlib"] - 0.6, 0.363 - c.closest["sface"]) for c in ranked.tried}
    assert ranked.counter == max(room, key=room.get)
    assert type(ranked).from_dict(ranked.to_dict(), "stored").frames == ranked.frames


class ClosesTheMouth:
    """A candidate's swap whose rendering closes the patient's open mouth (as the stronger stage drew
    a pressed grimace over eat.mkv's open smile on its swept variant)."""

    def __init__(self, swap: SwapAnonymizer) -> None:
        self.swap = swap

    def prepare(self, analysis, track_id) -> None:
        self.swap.prepare(analysis, track_id)

    def anonymize_frame(self, frame, faces):
        return close_mouth(self.swap.anonymize_frame(frame, faces), faces[0])


def test_a_surrogate_that_redraws_the_patients_mouth_is_passed_over_and_recorded(recognizers) -> None:
    """eat.mkv's signer smiles open-mouthed; a candidate whose rendered faces close that mouth would be
    quarantined by the face-realism check. With the profile's mouth limit the screening measures each
    candidate's mouth on the frames it renders, passes that one over with the reason in its record,
    and takes the next; when no candidate clears the margin, the farthest of those that keep the
    mouth and that no recognizer matched is taken."""
    frames = read_frames(require_media("asl/eat.mkv"), 12)
    analysis = analyze_faces(frames, patient_rule="largest", prefetch=0)
    samples = patient_samples(frames, analysis)
    track = analysis.patient.track_id

    def plain(counter: int) -> SwapAnonymizer:
        return SwapAnonymizer(key=KEY_A, pseudonym="patient-1", counter=counter)

    def closing(which: int):
        return lambda c: ClosesTheMouth(plain(c)) if c == which else plain(c)

    # no recognizer: only the mouth decides (the plain swaps change it by 0.01-0.05 here, the closed one by ~0.2)
    unjudged = screen(samples, closing(0), track, analysis, {})
    assert unjudged.counter == 0 and unjudged.tried[0].mouth_change is None  # no limit: not measured
    judged = screen(samples, closing(0), track, analysis, {}, mouth_limit=0.1)
    assert judged.tried[0].expression_changed and judged.tried[0].mouth_change < -0.1 and not judged.tried[0].too_close
    assert judged.counter == 1 and not judged.tried[1].expression_changed and abs(judged.tried[1].mouth_change) < 0.08
    doc = json.loads(json.dumps(judged.to_dict()))
    assert doc["tried"][0]["expression_changed"] is True and doc["tried"][0]["mouth_opening_change"] < -0.1
    assert "expression_changed" not in doc["tried"][1]
    assert SurrogateDecision.from_dict(doc, "stored").tried == judged.tried
    # a margin nothing clears: the candidate with the most room is not taken when it redraws the mouth
    ranked = screen(samples, plain, track, analysis, recognizers, margin=2.0, max_candidates=8)
    kept = screen(samples, closing(ranked.counter), track, analysis, recognizers, margin=2.0, max_candidates=8, mouth_limit=0.1)

    def room(c) -> float:
        return min(c.closest["dlib"] - 0.6, 0.363 - c.closest["sface"])

    assert kept.tried[ranked.counter].expression_changed
    unmatched = [c for c in kept.tried if not c.expression_changed and room(c) > 0]
    assert unmatched and kept.counter == max(unmatched, key=room).counter != ranked.counter


def test_past_the_plain_candidates_the_sequence_takes_the_whole_face_shape_from_the_surrogate(clip, recognizers, tmp_path: Path) -> None:
    frames, analysis = clip
    samples = patient_samples(frames, analysis)[:1]
    profile = load_profile("pd_motor")  # keeps a fifth of the patient's face shape
    drawn: dict[int, float] = {}

    def anonymizer_for(counter: int):
        patient = build_anonymizers(profile, KEY_A, "patient-1", counter=counter)[0]
        drawn[counter] = patient.identity_strength
        return patient

    # a margin nothing clears: the plain candidates, then the stronger stage, then the farthest of all
    decision = screen(samples, anonymizer_for, analysis.patient.track_id, analysis, recognizers, margin=2.0, max_candidates=MAX_CANDIDATES + 2)
    assert [c.counter for c in decision.tried] == list(range(MAX_CANDIDATES + 2))
    assert {drawn[c] for c in range(MAX_CANDIDATES)} == {profile.anonymizer.identity_strength} == {0.8}
    assert drawn[MAX_CANDIDATES] == drawn[MAX_CANDIDATES + 1] == STRONGER_SWAP["identity_strength"] == 1.0
    # a stored decision in the stronger stage draws it again, and its record says how the swap differs
    store = ChoiceStore(tmp_path, KEY_A)
    store.decide("patient-1", lambda: SurrogateDecision(MAX_CANDIDATES + 1, "measured", MARGIN, decision.tried))
    stored = store.stored("patient-1")
    assert build_anonymizers(profile, KEY_A, "patient-1", counter=stored.counter)[0].identity_strength == 1.0
    assert stored.to_dict()["swap"] == STRONGER_SWAP
    assert "swap" not in SurrogateDecision(MAX_CANDIDATES - 1, "measured", MARGIN).to_dict()


def test_a_counter_that_cannot_make_a_surrogate_is_passed_over_and_recorded(clip, recognizers, tmp_path: Path) -> None:
    """A counter whose surrogate cannot be made (here a donor folder without donors, as a generator
    that vets no face for it) is recorded with the reason and the next counter is tried; when no
    counter can make one, the screening says so instead of choosing nothing."""
    frames, analysis = clip
    samples = patient_samples(frames, analysis)[:1]
    empty = tmp_path / "no-donors"
    empty.mkdir()

    def anonymizer_for(counter: int) -> SwapAnonymizer:
        pool = str(empty) if counter < 2 else None
        return SwapAnonymizer(key=KEY_A, pseudonym="patient-1", counter=counter, **({"pool": pool} if pool else {}))

    decision = screen(samples, anonymizer_for, analysis.patient.track_id, analysis, recognizers, margin=2.0, max_candidates=3)
    refused = [c for c in decision.tried if c.refused]
    assert [c.counter for c in refused] == [0, 1] and all(c.too_close and not c.closest for c in refused)
    assert decision.counter == 2 and decision.tried[2].closest
    again = type(decision).from_dict(json.loads(json.dumps(decision.to_dict())), "stored")
    assert again.tried == decision.tried
    with pytest.raises(ConfigError, match="could be made"):
        screen(samples, lambda c: SwapAnonymizer(key=KEY_A, pseudonym="patient-1", counter=c, pool=str(empty)), analysis.patient.track_id,
               analysis, recognizers, max_candidates=2)  # fmt: skip


def test_decision_is_stored_with_the_key_and_read_back_without_measuring_again(clip, recognizers, tmp_path: Path) -> None:
    frames, analysis = clip
    samples = patient_samples(frames, analysis)[:2]
    measured = []

    def measure():
        measured.append(1)
        return screen(samples, lambda c: SwapAnonymizer(key=KEY_A, pseudonym="patient-1", counter=c), analysis.patient.track_id,
                      analysis, recognizers)  # fmt: skip

    first = ChoiceStore(tmp_path, KEY_A).decide("patient-1", measure)
    again = ChoiceStore(tmp_path, KEY_A).decide("patient-1", measure)
    assert len(measured) == 1 and first.decided == "measured" and again.decided == "stored"
    assert again.counter == first.counter and again.to_dict()["tried"] == first.to_dict()["tried"]
    stored = json.loads((tmp_path / CHOICES_FILE).read_text())
    assert set(stored["entries"]) == {"patient-1"}
    # distances only: no embedding travels into the key folder
    assert set(stored["entries"]["patient-1"]) == {"counter", "margin", "tried"}
    # nothing to measure on (no patient face): nothing is stored
    assert ChoiceStore(tmp_path, KEY_A).decide("patient-2", lambda: None) is None
    assert ChoiceStore(tmp_path, KEY_A).stored("patient-2") is None


def test_a_table_of_another_key_or_edited_by_hand_is_refused(tmp_path: Path) -> None:
    from clinrelease.face.surrogate_choice import Candidate, SurrogateDecision

    ChoiceStore(tmp_path, KEY_A).decide("patient-1", lambda: SurrogateDecision(0, "measured", MARGIN, [Candidate(0, {"dlib": 0.8}, False)]))
    with pytest.raises(ConfigError, match="do not match this release key") as exc:
        ChoiceStore(tmp_path, KEY_B).stored("patient-1")
    assert str(tmp_path / CHOICES_FILE) in str(exc.value)
    path = tmp_path / CHOICES_FILE
    doc = json.loads(path.read_text())
    doc["entries"]["patient-1"]["counter"] = 3
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="do not match this release key"):
        ChoiceStore(tmp_path, KEY_A).stored("patient-1")
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot be read"):
        ChoiceStore(tmp_path, KEY_A).stored("patient-1")


def test_the_merge_adopts_a_shards_decision_once_and_reports_a_different_one(tmp_path: Path) -> None:
    from clinrelease.face.surrogate_choice import split_decisions

    decision = {"counter": 1, "decided": "measured", "margin": MARGIN, "tried": [{"counter": 1, "closest": {"dlib": 0.8}, "too_close": False}]}
    store = ChoiceStore(tmp_path, KEY_A)
    assert store.adopt({"patient-1": decision}) == {}
    assert store.stored("patient-1").counter == 1 and store.adopt({"patient-1": decision}) == {}
    before = (tmp_path / CHOICES_FILE).read_bytes()
    other = {**decision, "counter": 2}
    assert store.adopt({"patient-1": other, "patient-2": decision}) == {"patient-1": (1, 2)}
    # nothing stored while one patient differs
    assert (tmp_path / CHOICES_FILE).read_bytes() == before
    records = [
        {"input": "a.dcm", "pseudonym": "patient-1", "faces": {"surrogate": decision}},
        {"input": "b.dcm", "pseudonym": "patient-1", "faces": {"surrogate": other}},
        {"input": "c.dcm", "pseudonym": "patient-2", "faces": {"surrogate": decision}},
        {"input": "d.dcm", "pseudonym": "patient-2", "faces": {}},
    ]
    assert split_decisions(records) == {"patient-1": {1: ["a.dcm"], 2: ["b.dcm"]}}


def test_the_patient_is_screened_on_the_frames_re_id_will_sample(clip) -> None:
    """Verification compares every ``sample_every``-th frame; a candidate confirmed on frames between
    those was matched on one of them (brother.mkv under a random key: SFace 0.381 on frame 20, which
    the screening had not looked at). The screening's frames lie on that grid, spread over it when
    there are more than asked for."""
    frames, analysis = clip
    patient = analysis.patient
    meshed = [i for i in patient.frame_indices if patient.faces[i].landmarks is not None]
    grid = [i for i in meshed if i % 3 == 0]
    assert len(grid) >= 3 and len(meshed) > len(grid)
    wider = patient_samples(frames, analysis, count=16, every=3)
    assert [face.frame_index for _, face in wider] == grid
    assert all(np.array_equal(frame, frames[face.frame_index]) for frame, face in wider)
    ends = patient_samples(frames, analysis, count=2, every=3)
    assert [face.frame_index for _, face in ends] == [grid[0], grid[-1]]
    assert [face.frame_index for _, face in patient_samples(frames, analysis, count=16)] == meshed

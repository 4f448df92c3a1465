"""Re-identification checks on real faces: an un-anonymized video must be caught, a masked one pass."""

from __future__ import annotations

import numpy as np
import pytest

from _face_helpers import read_rgb
from _verify_helpers import checks_only, mask_faces, paste_donor, read_frames, require_media, t1_donor
from clinrelease.errors import ConfigError, MissingModelError
from clinrelease.face.base import FaceAnalysis
from clinrelease.profiles import GalleryCheck, RecognizerCheck, load_profile
from clinrelease.verify.decision import ItemReports, decide, gallery_check, judge
from clinrelease.verify.reid import (
    detect_analysis,
    distractor_embeddings,
    embed_all_faces,
    gallery_attack,
    get_recognizer,
    identity_score,
    surrogate_consistency,
    verify_reid,
)

#: only the re-id checks (pd_gait's recognizers and the residual-face search), so that these verdicts depend on re-id alone
REID_ONLY = [c for c in checks_only(recognizers=load_profile("pd_gait").verify.recognizers, residual_faces=True) if c.group == "reid"]


@pytest.fixture(scope="module")
def clip() -> tuple[list[np.ndarray], FaceAnalysis]:
    frames = read_frames(require_media("asl/book.mkv"), 20)
    return frames, detect_analysis(frames, 1)


def test_unanonymized_video_is_reidentified_and_quarantined(clip):
    frames, analysis = clip
    report = verify_reid(frames, [f.copy() for f in frames], analysis, ("dlib", "sface"), sample_every=5)
    assert report.frames_sampled == 4
    for name in ("dlib", "sface"):
        res = report.results[name]
        assert res.frames_checked == 4
        assert res.frames_matched == 4
        assert res.matched_frames == [0, 5, 10, 15]
        assert [s.frame for s in res.samples] == [0, 5, 10, 15]
    assert report.results["dlib"].worst_similarity < 0.05  # a distance: identical faces
    assert report.results["sface"].worst_similarity > 0.95
    verdict = judge(ItemReports(reid=report), REID_ONLY)
    assert not verdict.released
    assert any(r.startswith("re-id (dlib): 4/4") for r in verdict.reasons)
    assert any(r.startswith("re-id (sface): 4/4") for r in verdict.reasons)


def test_masked_faces_pass_reid(clip):
    frames, analysis = clip
    masked = mask_faces(frames, analysis)
    report = verify_reid(frames, masked, analysis, ("dlib", "sface"), sample_every=5)
    assert report.results["dlib"].frames_checked == 4
    assert report.results["dlib"].frames_matched == 0
    assert report.results["dlib"].worst_similarity > 0.6
    assert report.results["sface"].frames_matched == 0
    assert report.results["sface"].worst_similarity < 0.363
    # the detector cannot find a blacked-out face: it is still compared, aligned like the original
    assert all(s.aligned_as_original for s in report.results["sface"].samples)
    assert report.residual_faces == []
    assert judge(ItemReports(reid=report), REID_ONLY).released


def test_profile_threshold_is_applied_when_the_frames_are_counted(clip):
    frames, analysis = clip
    masked = mask_faces(frames, analysis)
    # a profile's threshold of -1 calls every masked face "the same person": the recorded counts say so
    strict = get_recognizer("sface").at(-1.0)
    report = verify_reid(frames, masked, analysis, (strict,), sample_every=10)
    assert report.results["sface"].threshold == -1.0 and report.results["sface"].frames_matched == 2
    assert get_recognizer("sface").threshold == 0.363  # the shared, cached recognizer keeps its own
    verdict = judge(ItemReports(reid=report), checks_only(recognizers={"sface": RecognizerCheck(-1.0)}))
    assert not verdict.released and "re-id (sface): 2/2" in verdict.reasons[0] and "same person at >= -1.0" in verdict.reasons[0]
    lenient = checks_only(recognizers={"sface": RecognizerCheck(-1.0, max_matched_fraction=1.0)})
    assert judge(ItemReports(reid=report), lenient).released


def test_untracked_face_is_a_residual_face(clip):
    frames, _ = clip
    empty = FaceAnalysis(frames=len(frames), rows=frames[0].shape[0], columns=frames[0].shape[1])
    report = verify_reid(frames, frames, empty, ("dlib",), sample_every=10)
    assert report.results["dlib"].frames_checked == 0
    assert [r.frame for r in report.residual_faces] == [0, 10]
    checks = [c for c in checks_only(recognizers={"dlib": RecognizerCheck(0.6)}, residual_faces=True) if c.group == "reid"]
    verdict = judge(ItemReports(reid=report), checks)
    assert any("residual faces: 2" in r for r in verdict.reasons)
    assert any("only 0 frame(s) could be compared" in r for r in verdict.reasons)


def test_gallery_attack_ranks_originals_first_and_swaps_lower(clip):
    frames, analysis = clip
    sface = get_recognizer("sface")
    # the ASL clips show several signers: enrol each clip's last-read frame as one identity
    gallery = {name: embed_all_faces(sface, read_frames(require_media(f"asl/{name}.mkv"), 40)[-1]) for name in ("bird", "book", "eat", "help")}
    distractors = distractor_embeddings(sface)
    assert len(distractors) >= 7  # six t1 faces, the astronaut, carphone
    swapped = paste_donor(frames, analysis, t1_donor(1))[:10:3]
    probes = {
        "original": [e for f in frames[:10:3] for e in embed_all_faces(sface, f)],
        "swapped": [e for f in swapped for e in embed_all_faces(sface, f)],
    }
    result = gallery_attack(probes, gallery, sface, distractors, truth={"original": "book", "swapped": "book"})
    assert result.ranks["original"] == 1
    assert result.ranks["swapped"] > 1
    assert result.rank1 == 0.5 and result.items == 2
    check = gallery_check(load_profile("pd_gait"))
    assert check is not None and check.limit == GalleryCheck().max_rank1
    verdict = decide({check.name: result.rank1}, [check])
    assert verdict.reasons == ["gallery attack: re-identified at rank 1 among the release's originals (rate 0.500 > 0.0)"]


@pytest.mark.parametrize("name", ["dlib", "sface"])
def test_identity_score_takes_each_probes_best_reference(name):
    rec = get_recognizer(name)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(128), rng.standard_normal(128)
    # a probe identical to one of two references: its best similarity is the identical one,
    # whichever way the recognizer's similarity points (dlib: distance 0; SFace: cosine 1)
    assert identity_score(rec, [a], [b, a]) == pytest.approx(rec.similarity(a, a))
    assert rec.is_match(identity_score(rec, [a, a, b], [a]))  # the median over probes: 2 of 3 are a


@pytest.mark.parametrize("name", ["dlib", "sface"])
def test_surrogate_consistency_on_real_faces(name):
    """Carphone frames as two items of one patient; the six people of t1.jpg as six other patients."""
    from _face_helpers import carphone
    from clinrelease.models import model_path

    rec = get_recognizer(name)
    faces = [embed_all_faces(rec, f) for f in carphone(12, 3)]
    frames = [f[0] for f in faces if f]
    assert len(frames) >= 8
    group = embed_all_faces(rec, read_rgb(model_path("sample_faces_t1")))
    assert len(group) == 6
    probes = {"visit-1": frames[::2], "visit-2": frames[1::2], **{f"group-{i}": [e] for i, e in enumerate(group)}}
    identity = {"visit-1": "P1", "visit-2": "P1", **{f"group-{i}": f"P{i + 2}" for i in range(6)}}
    report = surrogate_consistency(probes, identity, rec)
    assert (report.patients, report.same_patient_pairs, report.same_patient_matched) == (7, 1, 1)
    assert report.different_patient_pairs == 21 and report.lookalikes == []
    # the same face under two pseudonyms is exactly what a look-alike is
    identity["visit-2"] = "P9"
    report = surrogate_consistency(probes, identity, rec)
    assert report.same_patient_pairs == 0 and [(a, b) for a, b, _ in report.lookalikes] == [("P1", "P9")]
    assert report.to_dict()["lookalike_pairs"] == 1


def test_arcface_without_model_folder_names_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv("CLINRELEASE_MODEL_DIR", raising=False)
    with pytest.raises(MissingModelError, match="w600k_r50.onnx"):
        get_recognizer("arcface")
    with pytest.raises(MissingModelError, match="w600k_r50.onnx") as info:
        get_recognizer("arcface", str(tmp_path))
    assert str(tmp_path) in str(info.value)


def test_unknown_recognizer_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown recognizer 'nope'"):
        get_recognizer("nope")


def test_video_check_agrees_with_the_single_face_comparison(clip):
    """verify_reid confirms each face once for all recognizers and decodes ahead; its figures must be
    exactly those of compare_face run face by face (with or without prefetching)."""
    from clinrelease.verify.reid import compare_face

    frames, analysis = clip
    anon = paste_donor(frames, analysis, t1_donor(1))
    sface = get_recognizer("sface")
    report = verify_reid(frames, anon, analysis, ("sface",), sample_every=10, residual_recognizer=None)
    direct = [(i, compare_face(sface, frames[i], anon[i], t.faces[i])) for i in (0, 10) for t in analysis.tracks if i in t.faces]
    assert len(direct) == 2 and all(c is not None for _, c in direct)
    assert [(s.frame, s.similarity, s.aligned_as_original) for s in report.results["sface"].samples] == [
        (i, c[0], c[1]) for i, c in direct if c is not None
    ]
    again = verify_reid(iter(frames), iter(anon), analysis, ("sface",), sample_every=10, residual_recognizer=None, prefetch=0)
    assert again.to_dict() == report.to_dict()

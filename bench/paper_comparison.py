"""Reproduce Zhu et al.'s (AIES 2020) comparison on the shared media: swap vs blur vs mask vs pixelate.

For every clip of ../shared/media and every anonymizer (plus "none", the un-anonymized control):
keypoint preservation (AP@[.5:.95] of mediapipe pose with the original as ground truth, per body part,
and face-mesh NME), re-identification per recognizer (sampled frames still matching the original),
and a release-level gallery attack (rank-1/rank-5 with SFace against all originals plus distractors).
Prints a markdown table (medians over clips) and writes the per-clip figures as JSON.

    .venv/bin/python bench/paper_comparison.py --frames 60 --sample-every 5 --json bench/paper_comparison.json

The paper's AP@[.5:.95] (OpenPose keypoints): swap 0.993, masking 0.933, blurring 0.916.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
PAPER = {"swap": 0.993, "mask": 0.933, "blur": 0.916}
METHODS = ("none", "swap", "blur", "mask", "pixelate")


def read(path: Path, limit: int) -> list[np.ndarray]:
    from clinrelease.dicom.video import open_video

    frames = []
    for frame in open_video(path).frames():
        frames.append(frame)
        if len(frames) >= limit:
            break
    return frames


def anonymize(method: str, frames: list[np.ndarray], analysis: Any, pseudonym: str) -> list[np.ndarray]:
    """Frames anonymized by the face stage's anonymizer ``method`` (the same one for bystanders)."""
    if method == "none":
        return [f.copy() for f in frames]
    from clinrelease.face.pipeline import anonymize_frames
    from clinrelease.face.registry import get_anonymizer

    params: dict[str, Any] = {}
    if method == "swap":  # a fixed bench key; the pseudonym picks the surrogate
        params = {"key": hashlib.sha256(b"clinrelease paper bench").digest(), "pseudonym": pseudonym}
    anon = get_anonymizer(method, **params)
    bystander = get_anonymizer("blur")
    return list(anonymize_frames(frames, analysis, patient=anon, bystander=bystander))


def probe_embeddings(rec: Any, frames: list[np.ndarray], analysis: Any, step: int) -> list[np.ndarray]:
    """The patient's anonymized face on every ``step``-th frame, aligned as found or else as the original."""
    out = []
    for index in range(0, len(frames), step):
        for face in analysis.faces_in_frame(index)[:1]:
            emb = rec.embed(frames[index], box=face.box)
            if emb is None and face.landmarks is not None:
                emb = rec.embed(frames[index], box=face.box, landmarks=face.landmarks)
            if emb is not None:
                out.append(emb)
    return out


def identity_groups(originals: dict[str, list[np.ndarray]], rec: Any) -> dict[str, str]:
    """Clip -> identity label: clips whose originals match under the recognizer show one person."""
    names = list(originals)
    parent = {n: n for n in names}

    def root(n: str) -> str:
        while parent[n] != n:
            n = parent[n]
        return n

    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if originals[a] and originals[b]:
                sims = [rec.similarity(x, y) for x in originals[a] for y in originals[b]]
                if rec.is_match(float(np.median(sims))):
                    parent[root(b)] = root(a)
    return {n: root(n) for n in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=60, help="frames read from each clip")
    parser.add_argument("--sample-every", type=int, default=5, help="score every Nth frame")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--json", type=Path, default=None, help="write per-clip figures here")
    args = parser.parse_args()
    if not MEDIA.is_dir():
        raise SystemExit(f"shared media folder {MEDIA} is not present")

    from clinrelease.face.pipeline import analyze_faces
    from clinrelease.verify.keypoints import verify_keypoints
    from clinrelease.verify.reid import distractor_embeddings, embed_all_faces, gallery_attack, get_recognizer, verify_reid

    sface = get_recognizer("sface")
    clips = sorted(MEDIA.glob("asl/*.mkv")) + sorted(MEDIA.glob("*.mp4"))
    rows: list[dict[str, Any]] = []
    probes: dict[str, dict[str, list[np.ndarray]]] = {m: {} for m in args.methods}
    originals: dict[str, list[np.ndarray]] = {}
    for clip in clips:
        frames = read(clip, args.frames)
        t0 = time.perf_counter()
        analysis = analyze_faces(frames)
        t_analysis = time.perf_counter() - t0
        sampled = frames[:: args.sample_every * 2]
        originals[clip.stem] = [e for f in sampled for e in embed_all_faces(sface, f)[:1]]
        for method in args.methods:
            t0 = time.perf_counter()
            anon = anonymize(method, frames, analysis, clip.stem)
            t_anon = time.perf_counter() - t0
            kp = verify_keypoints(frames, anon, args.sample_every)
            reid = verify_reid(frames, anon, analysis, ("dlib", "sface"), args.sample_every, residual_recognizer=None)
            probes[method][clip.stem] = probe_embeddings(sface, anon, analysis, args.sample_every * 2)
            rows.append(
                {
                    "clip": clip.name,
                    "method": method,
                    "frames": len(frames),
                    "tracks": len(analysis.tracks),
                    "analysis_s": t_analysis,
                    "anonymize_ms_per_frame": 1000 * t_anon / len(frames),
                    "all_ap": kp.all_ap,
                    "body_ap": kp.body_ap,
                    "head_ap": kp.head_ap,
                    "arms_ap": kp.arms_ap,
                    "hands_ap": kp.hands_ap,
                    "legs_ap": kp.legs_ap,
                    "face_nme": kp.face_nme,
                    "frames_person_lost": len(kp.frames_person_lost),
                    **{
                        f"{n}_{k}": v
                        for n, r in reid.results.items()
                        for k, v in (("checked", r.frames_checked), ("matched", r.frames_matched), ("worst", r.worst_similarity))
                    },
                }
            )
            print(f"{clip.name:32s} {method:9s} all {_f(kp.all_ap)} body {_f(kp.body_ap)} head {_f(kp.head_ap)} "
                  f"dlib {reid.results['dlib'].frames_matched}/{reid.results['dlib'].frames_checked} "
                  f"sface {reid.results['sface'].frames_matched}/{reid.results['sface'].frames_checked}", flush=True)

    groups = identity_groups(originals, sface)
    gallery: dict[str, list[np.ndarray]] = {}
    for clip, embs in originals.items():
        gallery.setdefault(groups[clip], []).extend(embs)
    distractors = distractor_embeddings(sface)
    attacks = {m: gallery_attack(probes[m], gallery, sface, distractors, truth=groups) for m in args.methods}

    print()
    print(f"{len(clips)} clips, {args.frames} frames each, scored every {args.sample_every}th; "
          f"{len(gallery)} identities in the gallery + {len(distractors)} distractors; medians over clips")
    print()
    print("| method | all 33 AP@[.5:.95] | body (below head) AP | head AP | arms AP | hands AP | face NME | dlib matched | sface matched | "
          "gallery rank-1 / rank-5 (sface) | anonymize ms/frame | paper AP |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    summary = {}
    for method in args.methods:
        mine = [r for r in rows if r["method"] == method]
        s = {k: _median([r[k] for r in mine]) for k in ("all_ap", "body_ap", "head_ap", "arms_ap", "hands_ap", "face_nme", "anonymize_ms_per_frame")}
        for n in ("dlib", "sface"):
            s[f"{n}_matched"] = sum(r[f"{n}_matched"] for r in mine)
            s[f"{n}_checked"] = sum(r[f"{n}_checked"] for r in mine)
        s["gallery_rank1"], s["gallery_rank5"] = attacks[method].rank1, attacks[method].rank5
        summary[method] = s
        print(
            f"| {method} | {_f(s['all_ap'])} | {_f(s['body_ap'])} | {_f(s['head_ap'])} | {_f(s['arms_ap'])} | {_f(s['hands_ap'])} | "
            f"{_f(s['face_nme'])} | {s['dlib_matched']}/{s['dlib_checked']} | {s['sface_matched']}/{s['sface_checked']} | "
            f"{s['gallery_rank1']:.2f} / {s['gallery_rank5']:.2f} | {_f(s['anonymize_ms_per_frame'], 1)} | {PAPER.get(method, '')} |"
        )
    if args.json:
        gallery_json = {m: dataclasses.asdict(a) for m, a in attacks.items()}
        args.json.write_text(json.dumps({"summary": summary, "per_clip": rows, "identity_groups": groups, "gallery": gallery_json,
                                         "args": {k: str(v) for k, v in vars(args).items()}}, indent=2, default=float))
        print(f"\nper-clip figures: {args.json}")


def _median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


if __name__ == "__main__":
    main()

"""Reproduce Zhu et al.'s (AIES 2020) comparison on the shared media: swap vs blur vs mask vs pixelate.

For every clip of ../shared/media and every anonymizer (plus "none", the un-anonymized control):
keypoint preservation (AP@[.5:.95] of mediapipe pose with the original as ground truth, per body part,
and face-mesh NME), re-identification per recognizer (sampled frames still matching the original),
and a release-level gallery attack (rank-1/rank-5 with SFace against all originals plus distractors).
Prints a markdown table (medians over clips) and writes the per-clip figures as JSON.

    .venv/bin/python bench/paper_comparison.py --frames 60 --sample-every 5 --json bench/paper_comparison.json

The learned backends get rows of their own, measured the same way, when their models are present:
``faceswap`` with ``--faceswap-model MODEL`` (from ``clinrelease swap train``) or ``--train-faceswap
STEPS`` (trains the tiny CPU configuration on the first clip, towards the surrogate the bench key
chooses for it, in a temporary folder, and deletes the model afterwards); ``inswapper`` when
``--inswapper-dir`` (default: CLINRELEASE_MODEL_DIR) holds insightface's swapper and recognizer.
Otherwise one line says which rows were skipped and why.

    .venv/bin/python bench/paper_comparison.py --clips again book bird --frames 30 --train-faceswap 200

The paper's AP@[.5:.95] (OpenPose keypoints): swap 0.993, masking 0.933, blurring 0.916.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
PAPER = {"swap": 0.993, "mask": 0.933, "blur": 0.916}
METHODS = ("none", "swap", "blur", "mask", "pixelate")
#: rows that need a model the site provides (or the bench trains)
LEARNED = ("faceswap", "inswapper")
#: a fixed bench key; with the clip's name as pseudonym it picks the key-driven surrogates
BENCH_KEY = hashlib.sha256(b"clinrelease paper bench").digest()


@dataclass
class LearnedRows:
    """What the learned backends' rows need: anonymizer parameters per row, and the rows left out.

    Attributes
    ----------
    params:
        Row name -> ``get_anonymizer`` parameters shared by every clip (per-clip ones are added by
        :func:`anonymizer_params`).
    skipped:
        Row name -> why it has no row in this run.
    notes:
        Lines describing how the models came to be (training figures), printed with the table.
    """

    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def skipped_line(self) -> str | None:
        """One line naming the skipped rows and why, or None when none was skipped."""
        if not self.skipped:
            return None
        return "learned rows skipped: " + "; ".join(f"{name} ({why})" for name, why in self.skipped.items())


def train_bench_faceswap(clip: Path, steps: int, out: Path, device: str = "auto", max_crops: int = 300) -> tuple[Path, str]:
    """Train the tiny faceswap configuration on ``clip`` towards the bench key's surrogate for it.

    Returns
    -------
    tuple
        The model path and a line with the training figures.
    """
    from clinrelease.face.learned.crops import crop_from_texture, crops_from_source, keyed_surrogate
    from clinrelease.face.learned.faceswap import FaceSwapConfig, train

    config = FaceSwapConfig.tiny()
    t0 = time.perf_counter()
    patient = crops_from_source(clip, config.template, max_crops=max_crops)
    crop_s = time.perf_counter() - t0
    texture, landmarks, _ = keyed_surrogate(BENCH_KEY, clip.stem)
    surrogate = [crop_from_texture(texture, landmarks, config.template)]
    result = train(patient, surrogate, out, steps=steps, config=config, device=device, checkpoint_every=max(1, steps))
    note = (f"faceswap: tiny 64 px model trained on {clip.name} ({len(patient)} crops in {crop_s:.1f} s) for {result.step} "
            f"steps on {result.device} in {result.seconds:.1f} s ({result.steps_per_s:.2f} steps/s), final loss {result.loss:.4f}")
    return out, note


def learned_rows(
    faceswap_model: Path | None = None,
    train_steps: int | None = None,
    train_clip: Path | None = None,
    workdir: Path | None = None,
    inswapper_dir: Path | None = None,
    device: str = "auto",
) -> LearnedRows:
    """Decide which learned rows this run has and with which anonymizer parameters.

    Parameters
    ----------
    faceswap_model:
        A model made by ``clinrelease swap train``; it must load (errors propagate: the user asked for it).
    train_steps, train_clip, workdir:
        Instead of ``faceswap_model``: train the tiny configuration for ``train_steps`` on
        ``train_clip`` into ``workdir``.
    inswapper_dir:
        The insightface model folder; None means ``CLINRELEASE_MODEL_DIR``. A folder named here must
        hold the models; one only configured in the environment skips the row when it lacks them.
    device:
        Torch device of the faceswap model (training and inference).

    Raises
    ------
    clinrelease.errors.ClinReleaseError
        When an explicitly named model cannot be used.
    """
    from clinrelease.errors import MissingModelError
    from clinrelease.face.learned.faceswap import load_model
    from clinrelease.face.learned.inswapper import locate_models

    rows = LearnedRows()
    if faceswap_model is not None:
        if "{pseudonym}" not in str(faceswap_model):  # a per-patient pattern is checked per clip
            load_model(faceswap_model, "cpu")
        rows.params["faceswap"] = {"model": str(faceswap_model), "device": device}
    elif train_steps:
        if train_clip is None or workdir is None:
            raise ValueError("training a faceswap model needs a clip and a working folder")
        model, note = train_bench_faceswap(train_clip, train_steps, workdir / "bench_faceswap.pt", device)
        rows.params["faceswap"] = {"model": str(model), "device": device}
        rows.notes.append(note)
    else:
        rows.skipped["faceswap"] = "no --faceswap-model MODEL or --train-faceswap STEPS given"

    try:
        files = locate_models(inswapper_dir)
    except MissingModelError as exc:
        if inswapper_dir is not None:
            raise
        configured = os.environ.get("CLINRELEASE_MODEL_DIR")
        rows.skipped["inswapper"] = str(exc) if configured else "no --inswapper-dir given and CLINRELEASE_MODEL_DIR is not set"
    else:
        rows.params["inswapper"] = {"model": str(files.swapper.parent)}
    return rows


def anonymizer_params(method: str, pseudonym: str, learned: LearnedRows | None = None) -> dict[str, Any]:
    """``get_anonymizer`` parameters of one row for the clip whose pseudonym is ``pseudonym``.

    The key-driven rows (``swap``, ``inswapper``) get the bench key and the pseudonym, so each clip
    has the surrogate a release under that key would give it. ``faceswap`` uses its one model for
    every clip (all clips show one person), unless its path has a ``{pseudonym}`` placeholder.
    """
    params = dict(learned.params.get(method, {})) if learned is not None else {}
    if method in ("swap", "inswapper"):
        params.update(key=BENCH_KEY, pseudonym=pseudonym)
    elif method == "faceswap" and "{pseudonym}" in str(params.get("model", "")):
        params["pseudonym"] = pseudonym
    return params


def read(path: Path, limit: int) -> list[np.ndarray]:
    from clinrelease.dicom.video import open_video

    frames = []
    for frame in open_video(path).frames():
        frames.append(frame)
        if len(frames) >= limit:
            break
    return frames


def anonymize(
    method: str, frames: list[np.ndarray], analysis: Any, pseudonym: str, learned: LearnedRows | None = None
) -> list[np.ndarray]:
    """Frames anonymized by the face stage's anonymizer ``method`` for the patient (bystanders blurred)."""
    if method == "none":
        return [f.copy() for f in frames]
    from clinrelease.face.pipeline import anonymize_frames
    from clinrelease.face.registry import get_anonymizer

    anon = get_anonymizer(method, **anonymizer_params(method, pseudonym, learned))
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


def select_clips(names: list[str] | None) -> list[Path]:
    """The shared clips to run on: all of them (ASL first), or those named by file name or stem, in that order."""
    clips = sorted(MEDIA.glob("asl/*.mkv")) + sorted(MEDIA.glob("*.mp4"))
    if not names:
        return clips
    by_name = {c.name: c for c in clips} | {c.stem: c for c in clips}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise SystemExit(f"no shared clip called {', '.join(unknown)}; known: {', '.join(c.stem for c in clips)}")
    return [by_name[n] for n in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=60, help="frames read from each clip")
    parser.add_argument("--sample-every", type=int, default=5, help="score every Nth frame")
    parser.add_argument("--clips", nargs="+", default=None, help="shared clips by name or stem (default: all)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), help="rows; learned ones are added when present")
    learned_model = parser.add_mutually_exclusive_group()
    learned_model.add_argument("--faceswap-model", type=Path, default=None, help="faceswap model from `clinrelease swap train`")
    learned_model.add_argument("--train-faceswap", type=int, default=None, metavar="STEPS",
                               help="train a tiny faceswap model on the first clip for STEPS steps (CPU ok; deleted afterwards)")
    parser.add_argument("--inswapper-dir", type=Path, default=None,
                        help="insightface model folder with inswapper_128.onnx [default: CLINRELEASE_MODEL_DIR]")
    parser.add_argument("--device", default="auto", help="torch device of the faceswap row: auto, cpu, cuda")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 is steadiest on a shared CPU: 2 threads trained 14x slower here under load)")
    parser.add_argument("--json", type=Path, default=None, help="write per-clip figures here")
    args = parser.parse_args()
    if not MEDIA.is_dir():
        raise SystemExit(f"shared media folder {MEDIA} is not present")
    clips = select_clips(args.clips)
    import torch

    torch.set_num_threads(args.threads)

    from clinrelease.errors import ClinReleaseError
    from clinrelease.face.learned.faceswap import secure_delete_model

    with tempfile.TemporaryDirectory(prefix="paper_bench_") as tmp:
        try:
            learned = learned_rows(args.faceswap_model, args.train_faceswap, clips[0], Path(tmp), args.inswapper_dir, args.device)
        except ClinReleaseError as exc:
            raise SystemExit(f"error: {exc}") from None
        line = learned.skipped_line()
        if line:
            print(line, flush=True)
        methods = [m for m in args.methods if m not in learned.skipped] + [m for m in LEARNED if m in learned.params and m not in args.methods]
        try:
            run(clips, methods, learned, args)
        finally:  # a model trained on a face is identifying data
            for model in Path(tmp).glob("*.pt"):
                secure_delete_model(model)


def run(clips: list[Path], methods: list[str], learned: LearnedRows, args: argparse.Namespace) -> None:
    """Score every row on every clip and print the table (and the JSON file when asked)."""
    from clinrelease.face.pipeline import analyze_faces
    from clinrelease.verify.keypoints import verify_keypoints
    from clinrelease.verify.reid import distractor_embeddings, embed_all_faces, gallery_attack, get_recognizer, verify_reid

    sface = get_recognizer("sface")
    rows: list[dict[str, Any]] = []
    probes: dict[str, dict[str, list[np.ndarray]]] = {m: {} for m in methods}
    originals: dict[str, list[np.ndarray]] = {}
    for clip in clips:
        frames = read(clip, args.frames)
        t0 = time.perf_counter()
        analysis = analyze_faces(frames)
        t_analysis = time.perf_counter() - t0
        sampled = frames[:: args.sample_every * 2]
        originals[clip.stem] = [e for f in sampled for e in embed_all_faces(sface, f)[:1]]
        for method in methods:
            t0 = time.perf_counter()
            anon = anonymize(method, frames, analysis, clip.stem, learned)
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
    attacks = {m: gallery_attack(probes[m], gallery, sface, distractors, truth=groups) for m in methods}

    print()
    print(f"{len(clips)} clips, {args.frames} frames each, scored every {args.sample_every}th; "
          f"{len(gallery)} identities in the gallery + {len(distractors)} distractors; medians over clips")
    for note in learned.notes:
        print(note)
    print()
    print("| method | all 33 AP@[.5:.95] | body (below head) AP | head AP | arms AP | hands AP | face NME | dlib matched | sface matched | "
          "gallery rank-1 / rank-5 (sface) | anonymize ms/frame | paper AP |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    summary = {}
    for method in methods:
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
                                         "learned": {"notes": learned.notes, "skipped": learned.skipped},
                                         "args": {k: str(v) for k, v in vars(args).items()}}, indent=2, default=float))
        print(f"\nper-clip figures: {args.json}")


def _median(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


if __name__ == "__main__":
    main()

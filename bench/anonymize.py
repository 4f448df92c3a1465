"""Face anonymizer benchmark on the shared clips: de-identification, consistency, flicker, speed.

Prints tables comparing the swap with the paper's baselines (blur, pixelate, mask) in the same run
and writes a contact sheet (original | swap | blur) to look at.

    .venv/bin/python bench/anonymize.py [--frames 60] [--step 2] [--keys 10] [--out bench/out]
        [--swap reach=0 --swap lighting=0 ...]   # swap settings to compare (default: the defaults)
        [--pool DIR|openpeople|generator]        # a site's donor pool, built-in + openpeople, or generated faces

Recognizers are the project's (:func:`clinrelease.verify.reid.get_recognizer`): dlib, distance
< 0.6 = "same person"; SFace, cosine >= 0.363 = "same person". Each signer of the clips is one patient
(one pseudonym). The key table renders two clips of one signer under ``--keys`` different keys and
counts the key pairs whose swapped faces a recognizer matches: within a clip (same frames) and across
the two clips (the patient in two videos, as a release sees it), also for the pairs whose composites
share no donor. Its last row is the floor those pairs are measured against: each donor of the pool
swapped on alone (distinct real people, no composite) onto the same two clips; what the recognizers
still match between them comes from the patient's pose, expression and light, which the swap keeps.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from _face_helpers import KEY_A, SHARED_MEDIA, read_rgb  # noqa: E402

from clinrelease.dicom.video import open_video  # noqa: E402
from clinrelease.face.detect import FaceDetector  # noqa: E402
from clinrelease.face.landmarks import LandmarkModel  # noqa: E402
from clinrelease.face.pipeline import analyze_faces, anonymize_frames  # noqa: E402
from clinrelease.face.registry import get_anonymizer  # noqa: E402
from clinrelease.face.surrogates import composite, default_pool  # noqa: E402
from clinrelease.face.swap import SwapAnonymizer  # noqa: E402
from clinrelease.verify.keypoints import expression_nme, face_nme, mouth_change  # noqa: E402
from clinrelease.verify.reid import get_recognizer  # noqa: E402

RECOGNIZERS = ("dlib", "sface")
#: keys shown in the key sheet, and its tile side (pixels)
SHEET_KEYS, TILE = 10, 160
#: who signs in each shared clip (looked at): four people, so the other clips' signers give a
#: "random other person" baseline filmed with the same camera, room and light
SIGNER = {"again": "A", "brother": "A", "help": "A", "bird": "B", "book": "C", "eat": "D"}


def embed(frame: np.ndarray, box: np.ndarray) -> dict[str, np.ndarray | None]:
    """Both recognizers' embeddings of the face in ``box`` (None where SFace's YuNet finds no face)."""
    return {n: get_recognizer(n).embed(frame, box=box) for n in RECOGNIZERS}


def sim(name: str, a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Recognizer ``name``'s similarity; no face found counts as the least similar value."""
    rec = get_recognizer(name)
    if a is None or b is None:
        return 9.0 if not rec.higher_is_same else -1.0
    return rec.similarity(a, b)


def mean_embedding(embs: list[dict]) -> dict[str, np.ndarray]:
    return {n: np.mean([e[n] for e in embs if e[n] is not None], axis=0) for n in RECOGNIZERS}


def matched_pairs(pairs: list[tuple[dict, dict]]) -> str:
    """How often each recognizer, and both, take the two mean embeddings of a pair for one person."""
    hits = np.array([[get_recognizer(n).is_match(sim(n, a[n], b[n])) for n in RECOGNIZERS] for a, b in pairs])
    return f"dlib {hits[:, 0].mean():.0%}, SFace {hits[:, 1].mean():.0%}, both {hits.all(axis=1).mean():.0%}"


def frames_of(path: Path, count: int, step: int) -> list[np.ndarray]:
    return list(itertools.islice(itertools.islice(open_video(path).frames(), 0, None, step), count))


def other_people() -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, box) of the other people available offline: the faces of t1.jpg and the astronaut."""
    from clinrelease.models import model_path

    det = FaceDetector()
    out = []
    for p in (model_path("sample_faces_t1"), model_path("sample_astronaut")):
        img = read_rgb(p)
        out += [(img, d.box) for d in det.detect(img)]
    return out


def flicker(frames: list[np.ndarray], boxes: list[np.ndarray]) -> float:
    """Mean absolute frame-to-frame change inside the face box (union of consecutive boxes)."""
    vals = []
    for i in range(1, len(frames)):
        b = np.concatenate([np.minimum(boxes[i - 1][:2], boxes[i][:2]), np.maximum(boxes[i - 1][2:], boxes[i][2:])]).astype(int)
        a, c = frames[i - 1][b[1] : b[3], b[0] : b[2]], frames[i][b[1] : b[3], b[0] : b[2]]
        vals.append(np.abs(a.astype(int) - c).mean())
    return float(np.mean(vals)) if vals else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--step", type=int, default=2, help="use every step-th frame (flicker uses a run of --frames consecutive frames)")
    ap.add_argument("--keys", type=int, default=10, help="keys for the key-pair table (first two clips, 8 frames each)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--swap", action="append", default=[], metavar="NAME=VALUE", help="a swap anonymizer setting (float)")
    ap.add_argument("--psi", type=float, help="with --pool generator: the truncation to measure (default: the generator's)")
    ap.add_argument("--key-clips-only", action="store_true", help="measure on the key table's two clips only (faster; no look-alike row)")
    ap.add_argument("--pool", type=Path, help="a folder of donor faces, 'openpeople' or 'generator' (default: the built-in pool)")
    args = ap.parse_args()
    settings: dict = {k: float(v) for k, v in (a.split("=", 1) for a in args.swap)}
    if settings:
        print(f"swap settings: {settings}", file=sys.stderr)
    if args.pool is not None:
        from clinrelease.face.pools import load_pool

        settings["pool"] = load_pool(str(args.pool) if str(args.pool) in ("generator", "openpeople") else args.pool)
        if args.psi is not None:
            from clinrelease.face.generator import shared_generator

            shared_generator().psi = args.psi
        print(f"donor pool: {args.pool} ({len(getattr(settings['pool'], 'donors', [])) or 'one generated face per key'} donors)", file=sys.stderr)
    clips = sorted((SHARED_MEDIA / "asl").glob("*.mkv"))
    if not clips:
        sys.exit(f"no clips in {SHARED_MEDIA / 'asl'}")
    args.out.mkdir(parents=True, exist_ok=True)
    names = ["swap", "blur", "pixelate", "mask"]
    stats = {n: {"dlib": [], "sface": [], "dlib_match": [], "sface_match": []} for n in names}
    speed = {"detect": [], "landmarks": [], "analyze": [], "swap_opencv": [], "swap_torch": [], "blur": []}
    flick = {"orig": [], "swap": []}
    mouth = {"lip_error": [], "lip_shape_error": [], "corner_lift": [], "face_nme": [], "expression_nme": []}
    anon_embed = {}  # clip -> mean embeddings of the swapped patient under KEY_A
    originals = {}  # clip -> the original patient's embeddings, frame by frame
    key_embed = {}  # first two clips: (mean embeddings, donor ids) of the swapped patient under each of --keys keys
    donor_embed = {}  # first two clips: mean embeddings of the patient swapped to each donor alone
    key_to_patient = {n: [] for n in RECOGNIZERS}  # first clip, every key: swapped frame matched to the original?
    sheet_rows = []
    key_sheet = []  # key-table clips: (surrogate texture, original, swap) of the first SHEET_KEYS keys
    import cv2

    detector, mesher = FaceDetector(), LandmarkModel()
    # the key table renders the patient of two videos: the first two clips of one signer
    by_signer = itertools.groupby(sorted(clips, key=lambda c: (SIGNER.get(c.stem, c.stem), c.stem)), key=lambda c: SIGNER.get(c.stem, c.stem))
    key_clips = max((list(g) for _, g in by_signer), key=len)[:2]
    if args.key_clips_only:
        clips = key_clips
    for clip in clips:
        pseudonym = f"patient-{SIGNER.get(clip.stem, clip.stem)}"  # one pseudonym per person, as a release has
        frames = frames_of(clip, args.frames, args.step)
        for f in frames[:10]:
            t = time.perf_counter()
            dets = detector.detect(f)
            speed["detect"].append(time.perf_counter() - t)
            if dets:
                t = time.perf_counter()
                mesher.landmarks(f, dets[0].box)
                speed["landmarks"].append(time.perf_counter() - t)
        t = time.perf_counter()
        analysis = analyze_faces(frames)
        speed["analyze"].append((time.perf_counter() - t) / len(frames))
        patient = analysis.patient
        idx = [i for i in range(len(frames)) if patient is not None and i in patient.faces]
        outs = {}
        for n in names:
            anon = get_anonymizer(n, key=KEY_A, pseudonym=pseudonym, **settings) if n == "swap" else get_anonymizer(n)
            t = time.perf_counter()
            outs[n] = list(anonymize_frames(frames, analysis, patient=anon, bystander=get_anonymizer("blur")))
            if n in ("swap", "blur"):
                speed["swap_opencv" if n == "swap" else "blur"].append((time.perf_counter() - t) / len(frames))
        anon = get_anonymizer("swap", key=KEY_A, pseudonym=pseudonym, backend="torch", **settings)
        t = time.perf_counter()
        list(anonymize_frames(frames[:10], analysis, patient=anon, bystander=get_anonymizer("blur")))
        speed["swap_torch"].append((time.perf_counter() - t) / 10)
        embeds = []
        originals[clip.stem] = []
        for i in idx:
            box = patient.faces[i].box
            e0 = embed(frames[i], box)
            originals[clip.stem].append(e0)
            for n in names:
                e1 = embed(outs[n][i], box)
                stats[n]["dlib"].append(sim("dlib", e0["dlib"], e1["dlib"]))
                stats[n]["sface"].append(sim("sface", e0["sface"], e1["sface"]))
                if n == "swap":
                    embeds.append(e1)
        anon_embed[clip.stem] = mean_embedding(embeds)
        clip_nme, clip_meshes = [], []
        for i in idx:
            before, after = (mesher.landmarks(f, patient.faces[i].box) for f in (frames[i], outs["swap"][i]))
            if before is not None and after is not None:
                change = mouth_change(before, after)
                for name in ("lip_error", "lip_shape_error", "corner_lift"):
                    mouth[name].append(getattr(change, name))
                clip_nme.append(face_nme(before, after))
                clip_meshes.append((before, after))
        clip_expr = expression_nme([b for b, _ in clip_meshes], [a for _, a in clip_meshes])
        mouth["expression_nme"].append(clip_expr)
        mouth["face_nme"] += clip_nme
        # flicker is frame to frame: a run of consecutive frames, not the sampled ones (whose
        # differences are mostly the head's motion over --step frames)
        run = frames_of(clip, args.frames, 1)
        run_analysis = analyze_faces(run)
        run_patient = run_analysis.patient
        anon = get_anonymizer("swap", key=KEY_A, pseudonym=pseudonym, **settings)
        run_out = list(anonymize_frames(run, run_analysis, patient=anon, bystander=get_anonymizer("blur")))
        seen = [i for i in range(len(run)) if run_patient is not None and i in run_patient.faces]
        flick["orig"].append(flicker([run[i] for i in seen], [run_patient.faces[i].box for i in seen]))
        flick["swap"].append(flicker([run_out[i] for i in seen], [run_patient.faces[i].box for i in seen]))
        if clip == clips[0]:
            for i in idx[:: max(1, len(idx) // 4)][:4]:
                b = patient.faces[i].box.astype(int)
                cx, cy, r = (b[0] + b[2]) // 2, (b[1] + b[3]) // 2, int(0.9 * max(b[2] - b[0], b[3] - b[1]))
                crop = lambda im: np.ascontiguousarray(im[max(0, cy - r) : cy + r, max(0, cx - r) : cx + r])  # noqa: E731
                sheet_rows.append(np.hstack([crop(frames[i]), crop(outs["swap"][i]), crop(outs["blur"][i])]))
        if clip in key_clips:
            # the first two clips under many keys, for the key-pair table
            few = idx[:: max(1, len(idx) // 8)][:8]
            sub = _subset(analysis, few)
            key_embed[clip.stem] = []
            key_sheet.append([])
            for k in range(args.keys):
                anon = get_anonymizer("swap", key=bytes([k + 1]) * 32, pseudonym=pseudonym, **settings)
                out_k = list(anonymize_frames([frames[i] for i in few], sub, patient=anon, bystander=get_anonymizer("blur")))
                swapped = [embed(o, patient.faces[i].box) for o, i in zip(out_k, few)]
                surrogate = anon.surrogate_for(patient.role, patient.track_id)
                donors = set(surrogate.donor_ids)
                if k < SHEET_KEYS:
                    b = patient.faces[few[0]].box.astype(int)
                    cx, cy, r = (b[0] + b[2]) // 2, (b[1] + b[3]) // 2, int(0.9 * max(b[2] - b[0], b[3] - b[1]))
                    crops = [cv2.resize(np.ascontiguousarray(im[max(0, cy - r) : cy + r, max(0, cx - r) : cx + r]), (TILE, TILE)) for im in (frames[few[0]], out_k[0])]
                    key_sheet[-1].append((cv2.resize(surrogate.texture, (TILE, TILE)), *crops))
                key_embed[clip.stem].append((mean_embedding(swapped), donors))
                for i, e1 in zip(few, swapped):
                    e0 = embed(frames[i], patient.faces[i].box)
                    for n in RECOGNIZERS:
                        if e0[n] is not None:
                            key_to_patient[n].append(get_recognizer(n).is_match(sim(n, e0[n], e1[n])))
            # the floor: each donor alone (a real person, no composite) on the same frames
            solo_settings = {k: v for k, v in settings.items() if k != "pool"}
            donor_embed[clip.stem] = []
            for donor in getattr(settings.get("pool") or default_pool(), "donors", []):
                anon = SwapAnonymizer(surrogate=composite([donor]), **solo_settings)
                out_d = list(anonymize_frames([frames[i] for i in few], sub, patient=anon, bystander=get_anonymizer("blur")))
                donor_embed[clip.stem].append(mean_embedding([embed(o, patient.faces[i].box) for o, i in zip(out_d, few)]))
        print(f"  {clip.name}: {len(idx)}/{len(frames)} frames with the patient, flicker swap/original "
              f"{flick['swap'][-1] / max(flick['orig'][-1], 1e-6):.2f}, face NME mean {np.mean(clip_nme) if clip_nme else float('nan'):.3f}"
              f" (expression NME {clip_expr if clip_expr is not None else float('nan'):.3f})",
              file=sys.stderr)

    # people who are not the patient, as the chance baseline for "matched to the original"
    others = other_people()
    orig_first = frames_of(clips[0], 1, 1)[0]
    a0 = analyze_faces([orig_first]).patient.faces[0].box
    e0 = embed(orig_first, a0)
    rand = {n: np.mean([get_recognizer(n).is_match(sim(n, e0[n], embed(img, b)[n])) for img, b in others]) for n in RECOGNIZERS}
    print(f"\nDe-identification over {len(stats['swap']['dlib'])} patient frames of {len(clips)} clips (frames={args.frames}, step={args.step})")
    print(f"{'anonymizer':<10} {'dlib med':>9} {'dlib>0.6':>9} {'SFace med':>10} {'SFace<.363':>11}")
    for n in names:
        d, s = np.array(stats[n]["dlib"]), np.array(stats[n]["sface"])
        print(f"{n:<10} {np.median(d):9.3f} {np.mean(d > 0.6):9.1%} {np.median(s):10.3f} {np.mean(s < 0.363):11.1%}")
    d, s = np.array(stats["swap"]["dlib"]), np.array(stats["swap"]["sface"])
    # the other signers of these clips, frame against frame
    cross = {n: [] for n in RECOGNIZERS}
    for a, b in itertools.combinations(originals, 2):
        if SIGNER.get(a) and SIGNER.get(b) and SIGNER[a] != SIGNER[b]:
            for ea in originals[a][::3]:
                for eb in originals[b][::3]:
                    for n in RECOGNIZERS:
                        if ea[n] is not None and eb[n] is not None:
                            cross[n].append(get_recognizer(n).is_match(sim(n, ea[n], eb[n])))
    print(f"\nMatched to the original patient: swap dlib {np.mean(d <= 0.6):.1%}, SFace {np.mean(s >= 0.363):.1%}; "
          f"a random other person ({len(others)} photos): dlib {rand['dlib']:.1%}, SFace {rand['sface']:.1%}; "
          f"another signer of these clips ({len(cross['dlib'])} frame pairs): "
          + ", ".join(f"{n} {np.mean(v):.1%}" for n, v in cross.items() if v))
    print(f"  under {args.keys} other keys ({', '.join(c.name for c in key_clips)}, {len(key_to_patient['dlib'])} frames): "
          + ", ".join(f"{n} {np.mean(v):.1%}" for n, v in key_to_patient.items() if v))

    print("\nKey consistency (mean embedding of the swapped patient per clip)")
    stems = [c.stem for c in clips]
    person = lambda stem: SIGNER.get(stem, stem)  # noqa: E731
    for label, pairs in (
        ("same key, same patient, two clips", [(a, b) for a, b in itertools.combinations(stems, 2) if person(a) == person(b)]),
        ("same key, different patients (look-alikes)", [(a, b) for a, b in itertools.combinations(stems, 2) if person(a) != person(b)]),
    ):
        if pairs:
            print(f"  {label} ({len(pairs)} pairs): " + "; ".join(
                f"{n} median {np.median(v):.3f}, matched {np.mean([get_recognizer(n).is_match(x) for x in v]):.0%}"
                for n, v in ((n, np.array([sim(n, anon_embed[a][n], anon_embed[b][n]) for a, b in pairs])) for n in RECOGNIZERS)))
    runs = list(key_embed.values())
    key_pairs = {"two keys, same clip": [p for run in runs for p in itertools.combinations(run, 2)]}
    if len(runs) == 2:  # the Done-when's own case: one patient in two videos, under two keys
        key_pairs["two keys, two clips"] = [(a, b) for i, a in enumerate(runs[0]) for j, b in enumerate(runs[1]) if i != j]
    print(f"  key pairs ({', '.join(c.name for c in key_clips)}, {args.keys} keys; matched = same person; 'disjoint' = no donor in common):")
    for label, pairs in key_pairs.items():
        groups = {"all": pairs, "disjoint": [p for p in pairs if not p[0][1] & p[1][1]]}
        cells = []
        for group, members in groups.items():
            if not members:
                continue
            cells.append(f"{group} ({len(members)}): " + matched_pairs([(a, b) for (a, _), (b, _) in members]))
        print(f"    {label}: " + "; ".join(cells))
    solos = list(donor_embed.values())
    if len(solos) == 2 and all(solos):  # a generated pool has no donors to swap on alone
        pairs = [(a, b) for i, a in enumerate(solos[0]) for j, b in enumerate(solos[1]) if i != j]
        print(f"    floor, two donors each swapped on alone, two clips ({len(pairs)}): " + matched_pairs(pairs))

    ratio = np.array(flick["swap"]) / np.maximum(np.array(flick["orig"]), 1e-6)
    print(f"\nFlicker (mean |frame-to-frame change| in the face box, swap / original): median {np.median(ratio):.2f}, max {ratio.max():.2f}")

    print(f"\nMouth as the face mesh reads it (swap vs original, {len(mouth['lip_error'])} frames; outer-eye distances): "
          f"lip landmark error median {np.median(mouth['lip_error']):.3f} ({np.median(mouth['lip_shape_error']):.3f} with the mouth's shift removed); "
          f"mouth-corner lift median {np.median(mouth['corner_lift']):+.3f} "
          "(> 0: the swap reads as smiling more than the patient); "
          f"whole-face landmark NME median {np.median(mouth['face_nme']):.3f}, expression NME (per clip) median "
          f"{np.median([v for v in mouth['expression_nme'] if v is not None]):.3f}")

    print("\nSpeed, 640x480, 2 shared CPU cores (median ms per frame)")
    for k, v in speed.items():
        print(f"  {k:<12} {1000 * statistics.median(v):8.1f}")
    print(f"  swap/blur render ratio {statistics.median(speed['swap_opencv']) / statistics.median(speed['blur']):.1f}x")

    width = max(r.shape[1] for r in sheet_rows)
    rows = [cv2.resize(r, (width, int(r.shape[0] * width / r.shape[1]))) for r in sheet_rows]
    sheet = np.vstack(rows)
    path = args.out / "anonymize_contact_sheet.png"
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    print(f"\ncontact sheet (original | swap | blur): {path}")
    if key_sheet:
        # one row per key: its surrogate, then original | swap on each key-table clip
        rows = [np.hstack([key_sheet[0][k][0]] + [t for clip_rows in key_sheet for t in clip_rows[k][1:]]) for k in range(len(key_sheet[0]))]
        path = args.out / "anonymize_keys_sheet.png"
        cv2.imwrite(str(path), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))
        print(f"key sheet ({len(rows)} keys: surrogate | original | swap per key-table clip): {path}")


def _subset(analysis, keep):
    """The analysis restricted to frames ``keep``, renumbered 0.. (for re-rendering a few frames)."""
    from copy import deepcopy

    from clinrelease.face.base import FaceAnalysis

    sub = deepcopy(analysis)
    for t in sub.tracks:
        t.faces = {j: t.faces[i] for j, i in enumerate(keep) if i in t.faces}
        for j, f in t.faces.items():
            f.frame_index = j
    return FaceAnalysis(len(keep), sub.rows, sub.columns, [t for t in sub.tracks if t.faces])


if __name__ == "__main__":
    main()

"""Does the swap look like a person? Realism of the released face per shared clip, profile and key.

For each shared clip, each profile's swap (its anonymizer settings and face rule) and each of
``--keys`` keys, on ``--frames`` consecutive frames (every ``--sample``-th judged):

* expression kept: median mouth-corner lift change (eye distances; target |lift| <= 0.02), eye
  aspect-ratio series correlation with the original (target >= 0.9; "-" where the original's eyes
  hardly move), mouth opening change (> 0: a closed mouth released parted), brow turn (median
  degrees the brows turned against the eyes: a worried or angry brow the patient does not make);
* reads as a face: YuNet score ratio (released / original) and face-mesh presence (target >= 0.95);
* skin: median CIEDE2000 between the cheeks and the neck below the chin, released minus original
  (target <= 3);
* seam: mean squared luma gradient in the swap's blend band (where its alpha fades), released over
  original at the same pixels (target <= 1.2);
* de-identified: sampled frames with dlib distance > 0.6 and SFace cosine < 0.363 (target >= 99%),
  with the surrogate the release's screening takes for the key (``cnt``; ``--first``: the key's
  first surrogate);
* flicker: mean frame-to-frame change in the face box, released over original (target <= 1.5).

The realism figures are :func:`clinrelease.verify.realism.verify_realism`, the release's own check.
``--sheet`` writes one zoomed contact sheet per profile (rows: clips, columns: the original and
each key, a few frames each) to look at; ``--diagnose`` one face per clip and key taken apart
(original | patient warp | surrogate | blend weight | release), to see where a flaw comes from.

    .venv/bin/python bench/realism.py [--frames 30] [--sample 3] [--keys 5] [--profiles pd_gait,pd_motor,pd_face]
        [--clips again,book] [--sheet] [--diagnose] [--out bench/out]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from _face_helpers import KEY_A, SHARED_MEDIA  # noqa: E402
from anonymize import flicker, frames_of  # noqa: E402

from clinrelease.face.landmarks import mesh_indices  # noqa: E402
from clinrelease.face.pipeline import analyze_faces, anonymize_frames  # noqa: E402
from clinrelease.profiles import load_profile  # noqa: E402
from clinrelease.release import build_anonymizers, measure_surrogate  # noqa: E402
from clinrelease.verify.realism import verify_realism  # noqa: E402
from clinrelease.verify.reid import get_recognizer  # noqa: E402

#: mesh points at the middle of each cheek
CHEEKS = (205, 425)


def keys(count: int) -> list[bytes]:
    """KEY_A (the tests' key) and keys derived from it."""
    return [KEY_A] + [hashlib.sha256(KEY_A + bytes([i])).digest() for i in range(1, count)]


def skin_patches(frame: np.ndarray, mesh: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """CIE Lab pixels of both cheeks and of the neck below the chin, where the original's mesh puts them."""
    oval = mesh[mesh_indices()["oval"]]
    face_h, face_w = float(np.ptp(oval[:, 1])), float(np.ptp(oval[:, 0]))
    lab = cv2.cvtColor(frame, cv2.COLOR_RGB2LAB).astype(np.float64)
    lab[..., 0] *= 100 / 255
    lab[..., 1:] -= 128
    cheek = np.zeros(frame.shape[:2], np.uint8)
    for i in CHEEKS:
        cv2.circle(cheek, tuple(int(v) for v in mesh[i]), max(2, int(0.06 * face_h)), 1, -1)
    chin = mesh[152]
    x0, x1 = int(chin[0] - 0.15 * face_w), int(chin[0] + 0.15 * face_w)
    y0, y1 = int(chin[1] + 0.12 * face_h), int(chin[1] + 0.25 * face_h)
    if y1 > frame.shape[0] or x0 < 0 or x1 > frame.shape[1] or y1 - y0 < 2:
        return None
    return lab[cheek > 0], lab[y0:y1, x0:x1].reshape(-1, 3)


def cheek_neck_de(frame: np.ndarray, mesh: np.ndarray) -> float | None:
    """CIEDE2000 between the median cheek colour and the median neck colour."""
    from skimage.color import deltaE_ciede2000

    patches = skin_patches(frame, mesh)
    if patches is None:
        return None
    return float(deltaE_ciede2000(np.median(patches[0], axis=0), np.median(patches[1], axis=0)))


def seam_energy(frame: np.ndarray, band: np.ndarray) -> float:
    """Mean squared luma gradient over the band's pixels."""
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)
    return float((gx * gx + gy * gy)[band].mean())


def blend_band(swap, frame, face) -> np.ndarray | None:
    """Frame pixels where the swap's surrogate fades into the frame (alpha strictly between 0 and 1)."""
    planned, _ = swap.plans(frame, [face])
    if not planned:
        return None
    plan = planned[0][0]
    x0, y0, x1, y1 = plan.region
    band = np.zeros(frame.shape[:2], bool)
    band[y0:y1, x0:x1] = (plan.alpha > 0.05) & (plan.alpha < 0.95)
    return band


def diagnosis(swap, frame: np.ndarray, face, released: np.ndarray, size: int = 200) -> np.ndarray | None:
    """One face taken apart, zoomed: the original | the patient's own pixels as the swap warps them |
    the surrogate's texture as warped (before its colour match) | the blend weight | the release.
    What a torn or over-drawn face comes from shows in one of the middle three."""
    planned, _ = swap.plans(frame, [face])
    if not planned:
        return None
    plan, surrogate = planned[0]
    x0, y0, x1, y1 = plan.region

    def placed(patch: np.ndarray) -> np.ndarray:
        out = frame.copy()
        out[y0:y1, x0:x1][plan.inside] = patch[plan.inside]
        return out

    patient = cv2.remap(frame, plan.map_patient, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    texture = cv2.remap(surrogate.texture, plan.map_surrogate, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = np.zeros_like(frame)
    alpha[y0:y1, x0:x1] = (255 * plan.alpha).astype(np.uint8)[..., None]
    return np.hstack([zoom(f, face.box, size) for f in (frame, placed(patient), placed(texture), alpha, released)])


def deidentified(orig: np.ndarray, anon: np.ndarray, box: np.ndarray, ref: dict) -> tuple[bool, bool] | None:
    """(dlib says another person, SFace says another person) for one frame; None without a face."""
    out = []
    for name in ("dlib", "sface"):
        rec = get_recognizer(name)
        a = ref.get(name)
        b = rec.embed(anon, box=box)
        if a is None:
            return None
        out.append(b is None or not rec.is_match(rec.similarity(a, b)))
    return out[0], out[1]


def zoom(frame: np.ndarray, box: np.ndarray, size: int = 160) -> np.ndarray:
    """The face box grown by half its size each way, square, resized to ``size``."""
    x0, y0, x1, y1 = box
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.9 * max(x1 - x0, y1 - y0)
    m = np.float32([[size / (2 * half), 0, size / 2 - cx * size / (2 * half)], [0, size / (2 * half), size / 2 - cy * size / (2 * half)]])
    return cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT)


def with_swap(profile, settings: list[str], pool: str = ""):
    """``profile`` with swap settings (``NAME=VALUE``) and donor ``pool`` over its anonymizer's parameters."""
    import dataclasses
    from types import MappingProxyType

    if not settings and not pool:
        return profile
    params = {**profile.anonymizer.params, **{k: (int(float(v)) if float(v).is_integer() and k in ("k", "k_donors") else float(v)) for k, v in (s.split("=", 1) for s in settings)}}
    if pool:
        params["pool"] = pool
    return dataclasses.replace(profile, anonymizer=dataclasses.replace(profile.anonymizer, params=MappingProxyType(params)))


def fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=30, help="consecutive frames from the start of each clip")
    ap.add_argument("--sample", type=int, default=3, help="judge every N-th frame")
    ap.add_argument("--keys", type=int, default=5)
    ap.add_argument("--profiles", default="pd_gait,pd_motor,pd_face")
    ap.add_argument("--clips", default="", help="clip names (default: every shared ASL clip)")
    ap.add_argument("--sheet", action="store_true", help="write zoomed contact sheets per profile")
    ap.add_argument("--sheet-frames", type=int, default=3)
    ap.add_argument("--diagnose", action="store_true", help="write one face per clip and key taken apart (see diagnosis()) per profile")
    ap.add_argument("--swap", action="append", default=[], metavar="NAME=VALUE", help="a swap setting (float) on top of each profile's")
    ap.add_argument("--pool", default="", help="donor source instead of the profile's: default, openpeople, generator or a folder")
    ap.add_argument("--first", action="store_true", help="judge each key's first surrogate, not the one the release's screening takes")
    ap.add_argument("--tag", default="", help="added to the contact sheets' and JSON's file names")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    clips = sorted((SHARED_MEDIA / "asl").glob("*.mkv"))
    if args.clips:
        clips = [c for c in clips if c.stem in args.clips.split(",")]
    if not clips:
        sys.exit(f"no shared clips under {SHARED_MEDIA / 'asl'}")
    profiles = [with_swap(load_profile(p), args.swap, args.pool) for p in args.profiles.split(",")]
    rows, sheets, diagnoses = [], {p.name: [] for p in profiles}, {p.name: [] for p in profiles}
    header = (
        f"{'clip':<8} {'profile':<9} {'key':>3} {'cnt':>3}  {'lift':>6} {'eye r':>6} {'open':>6} {'brow':>5} {'score':>6} {'mesh':>5} "
        f"{'dE+':>6} {'seam':>5} {'dlib':>5} {'sface':>5} {'flick':>5}"
    )
    print(header)
    for clip in clips:
        frames = frames_of(clip, args.frames, 1)
        for profile in profiles:
            analysis = analyze_faces(
                frames, patient_rule=profile.faces.patient_rule, min_face_px=profile.faces.min_face_px, hands=profile.faces.keep_hands
            )
            patient = analysis.patient
            if patient is None:
                print(f"{clip.stem:<8} {profile.name:<9} no patient face found")
                continue
            judged = [i for i in range(0, len(frames), args.sample) if i in patient.faces and patient.faces[i].landmarks is not None]
            refs = {i: {n: get_recognizer(n).embed(frames[i], box=patient.faces[i].box) for n in ("dlib", "sface")} for i in judged}
            de_orig = [cheek_neck_de(frames[i], patient.faces[i].landmarks) for i in judged]
            boxes = [patient.faces[i].box if i in patient.faces else None for i in range(len(frames))]
            run = [i for i in range(len(frames)) if boxes[i] is not None]
            show = judged[:: max(1, len(judged) // args.sheet_frames)][: args.sheet_frames]
            tiles = [[zoom(frames[i], boxes[i]) for i in show]]
            for k, key in enumerate(keys(args.keys)):
                pseudonym = f"{clip.stem}-patient"
                decision = None if args.first else measure_surrogate(profile, key, pseudonym, analysis, frames)
                counter = 0 if decision is None else decision.counter
                swap, bystander = build_anonymizers(profile, key, pseudonym, counter=counter)
                out = list(anonymize_frames(frames, analysis, patient=swap, bystander=bystander))
                real = verify_realism(frames, out, analysis, sample_every=args.sample)
                de = [
                    None if a is None else (lambda b: None if b is None else b - a)(cheek_neck_de(out[i], patient.faces[i].landmarks))
                    for i, a in zip(judged, de_orig)
                ]
                de = [v for v in de if v is not None]
                seams = []
                for i in judged:
                    band = blend_band(swap, frames[i], patient.faces[i])
                    if band is not None and band.any():
                        seams.append(seam_energy(out[i], band) / max(seam_energy(frames[i], band), 1e-6))
                ids = [deidentified(frames[i], out[i], patient.faces[i].box, refs[i]) for i in judged]
                ids = [v for v in ids if v is not None]
                flick = flicker([out[i] for i in run], [boxes[i] for i in run]) / max(flicker([frames[i] for i in run], [boxes[i] for i in run]), 1e-6)
                row = {
                    "clip": clip.stem,
                    "profile": profile.name,
                    "key": k,
                    "counter": counter,
                    "corner_lift": real.corner_lift,
                    "eye_correlation": real.eye_correlation,
                    "eye_deviation": real.eye_deviation,
                    "mouth_correlation": real.mouth_correlation,
                    "mouth_opening_change": real.mouth_opening_change,
                    "brow_turn": real.brow_turn,
                    "face_score_ratio": real.face_score_ratio,
                    "mesh_presence": real.mesh_presence,
                    "cheek_neck_de_change": float(np.median(de)) if de else None,
                    "seam_gradient_ratio": float(np.median(seams)) if seams else None,
                    "dlib_deidentified": float(np.mean([d for d, _ in ids])) if ids else None,
                    "sface_deidentified": float(np.mean([s for _, s in ids])) if ids else None,
                    "flicker_ratio": flick,
                }
                rows.append(row)
                print(
                    f"{clip.stem:<8} {profile.name:<9} {k:>3} {counter:>3}  {fmt(row['corner_lift'], '+.3f'):>6} {fmt(row['eye_correlation'], '.2f'):>6} "
                    f"{fmt(row['mouth_opening_change'], '+.3f'):>6} {fmt(row['brow_turn'], '.1f'):>5} {fmt(row['face_score_ratio']):>6} {fmt(row['mesh_presence'], '.0%'):>5} "
                    f"{fmt(row['cheek_neck_de_change'], '+.1f'):>6} {fmt(row['seam_gradient_ratio'], '.2f'):>5} "
                    f"{fmt(row['dlib_deidentified'], '.0%'):>5} {fmt(row['sface_deidentified'], '.0%'):>5} {fmt(flick, '.2f'):>5}",
                    flush=True,
                )
                tiles.append([zoom(out[i], boxes[i]) for i in show])
                if args.diagnose and show:
                    panel = diagnosis(swap, frames[show[0]], patient.faces[show[0]], out[show[0]])
                    if panel is not None:
                        diagnoses[profile.name].append(panel)
            if args.sheet and show:
                # one row per shown frame: the original, then each key's release
                sheets[profile.name].append(np.vstack([np.hstack([col[f] for col in tiles]) for f in range(len(show))]))
    print("\nmedians over clips and keys (targets: |lift| <= 0.02, eye r >= 0.9, score and mesh >= 0.95, dE+ <= 3, seam <= 1.2, "
          "dlib and SFace >= 99%, flicker <= 1.5)")
    for profile in profiles:
        mine = [r for r in rows if r["profile"] == profile.name]
        cells = []
        for name in ("corner_lift", "eye_correlation", "mouth_opening_change", "brow_turn", "face_score_ratio", "mesh_presence", "cheek_neck_de_change",
                     "seam_gradient_ratio", "dlib_deidentified", "sface_deidentified", "flicker_ratio"):
            values = [r[name] for r in mine if r[name] is not None]
            cells.append(f"{name} {np.median(values):.3f}" if values else f"{name} -")
        print(f"  {profile.name}: " + ", ".join(cells))
        worst = [r[n] for r in mine for n in ("dlib_deidentified", "sface_deidentified") if r[n] is not None]
        if worst:
            print(f"    lowest de-identified fraction of any clip and key: {min(worst):.0%}")
    (args.out / f"realism{args.tag}.json").write_text(json.dumps(rows, indent=1))
    for name, panels in diagnoses.items():
        if panels:
            path = args.out / f"realism_diagnose_{name}{args.tag}.png"
            cv2.imwrite(str(path), cv2.cvtColor(np.vstack(panels), cv2.COLOR_RGB2BGR))
            print(f"faces taken apart ({name}; rows: clips x keys; original | patient warp | surrogate | alpha | release): {path}")
    if args.sheet:
        for name, blocks in sheets.items():
            if not blocks:
                continue
            width = max(b.shape[1] for b in blocks)
            sheet = np.vstack([np.pad(b, ((0, 4), (0, width - b.shape[1]), (0, 0))) for b in blocks])
            path = args.out / f"realism_sheet_{name}{args.tag}.png"
            cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
            print(f"contact sheet ({name}; rows: clips x frames, columns: original then keys 0..{args.keys - 1}): {path}")


if __name__ == "__main__":
    main()

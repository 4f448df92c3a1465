"""Surrogate generator: how alike faces of different keys are under each truncation and latent mix.

    .venv/bin/python bench/generator.py [--seeds 20] [--out bench/out]

For each setting it draws one face per seed (no vetting, so every setting sees the same latents),
embeds it with the project's recognizers and counts the pairs of different seeds that dlib
(distance < 0.6), SFace (cosine >= 0.363) and both take for one person: the key-pair rate a
generated surrogate starts from (distinct real people sit at about 5% for both on the shared clips).
Then it runs the vetting on the chosen setting's faces (acceptance rate, reasons) and times a face.
Settings: truncation psi 0.5 / 0.7 / 1.0 of one latent, and at psi 0.7 the mean of three latents,
plain and rescaled to the members' mean distance from the mean style.

    .venv/bin/python bench/generator.py --swapped [--seeds 20] [--psi 0.7]

instead draws each key's surrogate as a release does (vetted, the more distinctive of two) and counts
the key pairs matched twice: between the generated faces themselves, and between their swaps onto
two shared clips of one patient (8 frames each, mean embeddings; ``bench/anonymize.py``'s key table).
The gap between the two is what the swap keeps of the patient.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clinrelease.face.generator import latent, shared_generator, vet  # noqa: E402
from clinrelease.face.surrogates import _shared_detector  # noqa: E402
from clinrelease.verify.reid import get_recognizer  # noqa: E402

RECOGNIZERS = ("dlib", "sface")
KEY = bytes(range(32))


def styles(gen, seed: int, setting: str) -> np.ndarray:
    """The style vector of one seed under one setting."""
    if setting.startswith("psi"):
        return gen.style(latent(KEY, f"seed-{seed}", 0), psi=float(setting[3:]))
    members = [gen.style(latent(KEY, f"seed-{seed}", i), psi=0.7) - gen.mean_style for i in range(3)]
    mix = np.mean(members, axis=0)
    if setting == "mix3-rescaled":
        mix *= np.mean([np.linalg.norm(m) for m in members]) / max(np.linalg.norm(mix), 1e-9)
    return gen.mean_style + mix


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--swapped", action="store_true", help="key pairs of release surrogates, raw and swapped onto two clips")
    ap.add_argument("--psi", type=float, help="with --swapped: the truncation (default: the generator's)")
    args = ap.parse_args()
    gen = shared_generator()
    if args.swapped:
        swapped_pairs(gen, args)
        return
    rows = {}
    chosen_images = []
    for setting in ("psi0.5", "psi0.7", "psi1.0", "mix3", "mix3-rescaled"):
        embs = []
        for seed in range(args.seeds):
            image = gen.image(styles(gen, seed, setting))
            if setting == "psi0.7":
                chosen_images.append(image)
            faces = _shared_detector().detect(image)
            embs.append({n: get_recognizer(n).embed(image, box=faces[0].box) if faces else None for n in RECOGNIZERS})
        hits = []
        for a, b in itertools.combinations(embs, 2):
            hits.append([a[n] is not None and b[n] is not None and get_recognizer(n).is_match(get_recognizer(n).similarity(a[n], b[n])) for n in RECOGNIZERS])
        h = np.array(hits)
        rows[setting] = {"pairs": len(h), "dlib": float(h[:, 0].mean()), "sface": float(h[:, 1].mean()), "both": float(h.all(axis=1).mean())}
        print(f"{setting:<14} pairs {len(h):4d}: dlib {rows[setting]['dlib']:5.1%}  SFace {rows[setting]['sface']:5.1%}  both {rows[setting]['both']:5.1%}", flush=True)
    verdicts = [vet(image)[0] for image in chosen_images]
    reasons = collections.Counter(kind for v in verdicts for kind in (v.kinds or ("accepted",)))
    print(f"vetting at psi 0.7 ({len(chosen_images)} faces, every failed check counted): " + ", ".join(f"{r} {c}" for r, c in reasons.most_common()))
    t = time.perf_counter()
    for seed in range(3):
        gen.image(gen.style(latent(KEY, f"time-{seed}", 0)))
    per_face = (time.perf_counter() - t) / 3
    print(f"one face (mapping + synthesis, 1 thread): {per_face:.2f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "generator.json").write_text(json.dumps({"seeds": args.seeds, "settings": rows, "vetting": dict(reasons), "seconds_per_face": per_face}, indent=2))


def swapped_pairs(gen, args) -> None:
    """Key pairs matched among release surrogates (one patient, --seeds keys): raw faces vs swapped."""
    sys.path.insert(0, str(ROOT / "bench"))
    from anonymize import SHARED_MEDIA, _subset, embed, frames_of, matched_pairs, mean_embedding

    from clinrelease.face.generator import generate_face
    from clinrelease.face.pipeline import analyze_faces, anonymize_frames
    from clinrelease.face.registry import get_anonymizer
    from clinrelease.face.surrogates import composite
    from clinrelease.face.swap import SwapAnonymizer

    if args.psi is not None:
        gen.psi = args.psi
    clips = []
    for stem in ("again", "brother"):  # one signer in two videos
        frames = frames_of(SHARED_MEDIA / "asl" / f"{stem}.mkv", 20, 2)
        analysis = analyze_faces(frames)
        idx = sorted(analysis.patient.faces)
        few = idx[:: max(1, len(idx) // 8)][:8]
        clips.append(([frames[i] for i in few], _subset(analysis, few), [analysis.patient.faces[i].box for i in few]))
    raw, swapped = [], {0: [], 1: []}
    for k in range(args.seeds):
        face = generate_face(bytes([k + 1]) * 32, "patient-A")
        image = face.donor.image
        found = _shared_detector().detect(image)
        raw.append(embed(image, found[0].box))
        anon = SwapAnonymizer(surrogate=composite([face.donor]))
        for c, (frames, sub, boxes) in enumerate(clips):
            out = list(anonymize_frames(frames, sub, patient=anon, bystander=get_anonymizer("blur")))
            swapped[c].append(mean_embedding([embed(o, b) for o, b in zip(out, boxes)]))
        print(f"  key {k + 1}: latent {face.attempt}", file=sys.stderr, flush=True)
    two = [(a, b) for i, a in enumerate(swapped[0]) for j, b in enumerate(swapped[1]) if i != j]
    print(f"psi {gen.psi}, {args.seeds} keys, key pairs matched: generated faces {matched_pairs(list(itertools.combinations(raw, 2)))}; "
          f"swapped onto two clips of one patient {matched_pairs(two)}")


if __name__ == "__main__":
    main()

"""Surrogate generator: how alike faces of different keys are under each truncation and latent mix.

    .venv/bin/python bench/generator.py [--seeds 20] [--out bench/out]

For each setting it draws one face per seed (no vetting, so every setting sees the same latents),
embeds it with the project's recognizers and counts the pairs of different seeds that dlib
(distance < 0.6), SFace (cosine >= 0.363) and both take for one person: the key-pair rate a
generated surrogate starts from (distinct real people sit at about 5% for both on the shared clips).
Then it runs the vetting on the chosen setting's faces (acceptance rate, reasons) and times a face.
Settings: truncation psi 0.5 / 0.7 / 1.0 of one latent, and at psi 0.7 the mean of three latents,
plain and rescaled to the members' mean distance from the mean style.
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
    args = ap.parse_args()
    gen = shared_generator()
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


if __name__ == "__main__":
    main()

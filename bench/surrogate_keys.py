"""Releasable under any key: the six ASL clips under random keys, the key's first surrogate against
the screened one (:mod:`clinrelease.face.surrogate_choice`).

For each clip the faces are analysed once (``--frames`` frames); for each key the patient's face is
swapped with the profile's anonymizer, first with counter 0 (what every release did before), then
with the counter the screening chooses (:func:`clinrelease.release.measure_surrogate`, the release's
own: four frames, twelve that confirm a candidate or rank them when none clears the margin), and the profile's recognizers compare every
``sample_every``-th frame with the original (:func:`clinrelease.verify.reid.verify_reid`). A run
passes when no sampled frame matches (the profiles allow none). Keypoints, OCR and the rest of the
verification are not run: they do not depend on the key's surrogate choice.

``--release`` also runs the whole release of each (clip, key) as a user would (the clip as a DICOM
video with a burned-in name, every check of the profile, the key's surrogate decided afresh) and
prints its status and reasons: what "released under any key" means end to end.

    .venv/bin/python bench/surrogate_keys.py [--keys 10] [--frames 30] [--profile pd_motor] [--seed N] [--release] [--clips a,b]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from _face_helpers import SHARED_MEDIA  # noqa: E402

from clinrelease.dicom.video import open_video  # noqa: E402
from clinrelease.face.pipeline import analyze_faces, anonymize_frames  # noqa: E402
from clinrelease.profiles import load_profile  # noqa: E402
from clinrelease.face.surrogate_choice import MARGIN  # noqa: E402
from clinrelease.release import build_anonymizers, measure_surrogate  # noqa: E402
from clinrelease.verify.reid import verify_reid  # noqa: E402


def _verify(frames, analysis, profile, key: bytes, pseudonym: str, counter: int) -> dict[str, tuple[int, float]]:
    patient, bystander = build_anonymizers(profile, key, pseudonym, counter=counter)
    out = list(anonymize_frames(frames, analysis, patient=patient, bystander=bystander, prefetch=0))
    report = verify_reid(frames, out, analysis, recognizers=list(profile.verify.recognizers), sample_every=profile.verify.sample_every, prefetch=0)
    return {n: (r.frames_matched, r.worst_similarity) for n, r in report.results.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=10)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--profile", default="pd_motor")
    ap.add_argument("--seed", type=int, default=None, help="draw the keys from this seed (default: os random)")
    ap.add_argument("--release", action="store_true", help="also run the whole release of every (clip, key)")
    ap.add_argument("--clips", default="", help="clip names (default: every shared ASL clip)")
    args = ap.parse_args()
    profile = load_profile(args.profile)
    rng = random.Random(args.seed) if args.seed is not None else random.SystemRandom()
    keys = [bytes(rng.getrandbits(8) for _ in range(32)) for _ in range(args.keys)]
    clips = sorted((SHARED_MEDIA / "asl").glob("*.mkv"))
    if args.clips:
        clips = [c for c in clips if c.stem in args.clips.split(",")]
    before = after = runs = released = 0
    print(f"profile {profile.name}, {len(clips)} clips x {len(keys)} keys, {args.frames} frames, margin {MARGIN}")
    print(f"{'clip':10} {'key':8} {'before (matched frames, worst)':40} {'counter':7} after")
    t0 = time.perf_counter()
    for clip in clips:
        frames = [f for _, f in zip(range(args.frames), open_video(clip))]
        analysis = analyze_faces(frames, patient_rule=profile.faces.patient_rule, min_face_px=profile.faces.min_face_px, hands=profile.faces.keep_hands)
        pseudonym = f"bench-{clip.stem}"
        for key in keys:
            runs += 1
            first = _verify(frames, analysis, profile, key, pseudonym, 0)
            ok_first = all(m == 0 for m, _ in first.values())
            decision = measure_surrogate(profile, key, pseudonym, analysis, frames)
            chosen = first if decision.counter == 0 else _verify(frames, analysis, profile, key, pseudonym, decision.counter)
            ok_chosen = all(m == 0 for m, _ in chosen.values())
            before += ok_first
            after += ok_chosen
            show = lambda r: " ".join(f"{n} {m} {w:.3f}" for n, (m, w) in r.items())  # noqa: E731
            line = f"{clip.stem:10} {key.hex()[:8]} {show(first):40} {decision.counter:7} {show(chosen)}"
            if args.release:
                record = _release(clip, frames, key, profile.name)
                released += record["status"] == "released"
                counter = (record.get("faces") or {}).get("surrogate", {}).get("counter")
                line += f" | release: {record['status']} (counter {counter}) {'; '.join(record['reasons'])}"
            print(line, flush=True)
    print(f"released by the recognizers: before {before}/{runs}, after {after}/{runs} ({time.perf_counter() - t0:.0f} s)")
    if args.release:
        print(f"released by the whole release: {released}/{runs}")


def _release(clip: Path, frames: list, key: bytes, profile: str) -> dict:
    """The record of the whole release of ``frames`` under ``key`` (a fresh key folder)."""
    import tempfile

    import hard_video

    from clinrelease.crypto.keys import init_keys

    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp) / "keys"
        init_keys(keys)
        (keys / "release.key").write_text(key.hex() + "\n")
        fps = float(open_video(clip).info.fps or 30.0)
        variant = hard_video.Variant(clip.stem, clip.stem, profile, frames, [0.0] * len(frames), fps)
        record, _, _, _ = hard_video.release(variant, Path(tmp) / "work", keys)
    return record


if __name__ == "__main__":
    main()

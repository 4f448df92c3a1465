"""Clinical endpoints kept or broken: the profile's endpoints on the original and on each anonymizer's
output, per shared clip (issue 23).

For each clip and each anonymizer (the profile's swap, and blur, mask and pixelate as baselines) the
table has: endpoint, original, released, difference, tolerance and outcome (kept, shifted, lost, not
measurable), as the release's own check (:func:`clinrelease.verify.endpoints.verify_endpoints`)
judges them. The frames are not encoded: the figures are what the anonymizer alone does.

    .venv/bin/python bench/endpoints.py [--profile pd_motor] [--clips again,book] [--frames 90]
        [--anonymizers swap,blur,mask,pixelate] [--out bench/out]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from _face_helpers import KEY_A, SHARED_MEDIA  # noqa: E402
from anonymize import frames_of  # noqa: E402

from clinrelease.face.pipeline import analyze_faces, anonymize_frames  # noqa: E402
from clinrelease.face.registry import get_anonymizer  # noqa: E402
from clinrelease.profiles import load_profile  # noqa: E402
from clinrelease.release import build_anonymizers  # noqa: E402
from clinrelease.verify.endpoints import verify_endpoints  # noqa: E402
from clinrelease.verify.realism import verify_realism  # noqa: E402


def _f(value) -> str:
    return "-" if value is None else f"{value:.3g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="pd_motor")
    ap.add_argument("--clips", default="again,book,brother,eat,help,bird")
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--anonymizers", default="swap,blur,mask,pixelate")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args()
    profile = load_profile(args.profile)
    settings = profile.verify.endpoints
    if settings is None or not settings.tolerances:
        sys.exit(f"{args.profile} judges no endpoint (verify.endpoints)")
    tolerances = settings.judged()
    every = settings.sample_every or profile.verify.sample_every
    rows = []
    for clip in args.clips.split(","):
        path = SHARED_MEDIA / "asl" / f"{clip}.mkv"
        frames = frames_of(path, args.frames, 1)
        analysis = analyze_faces(frames, patient_rule=profile.faces.patient_rule, min_face_px=profile.faces.min_face_px, hands=profile.faces.keep_hands)
        for name in args.anonymizers.split(","):
            patient, bystander = build_anonymizers(profile, KEY_A, "P1") if name == "swap" else (get_anonymizer(name), get_anonymizer(name))
            out = list(anonymize_frames(frames, analysis, patient=patient, bystander=bystander))
            realism = verify_realism(frames, out, analysis, sample_every=profile.verify.sample_every)
            report = verify_endpoints(frames, out, 30.0, tolerances, sample_every=every, realism=realism)
            print(f"\n{clip} / {args.profile} / {name} ({report.frames_checked} sampled frames, hand {report.hand})")
            print(f"  {'endpoint':<22} {'original':>9} {'released':>9} {'diff':>9} {'tolerance':>9}  outcome")
            for r in report.results:
                print(f"  {r.name:<22} {_f(r.original):>9} {_f(r.released):>9} {_f(r.difference):>9} {r.tolerance:>9}  {r.status}")
                rows.append({"clip": clip, "anonymizer": name, **r.__dict__})
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"endpoints_{args.profile}.json"
    target.write_text(json.dumps(rows, indent=1))
    print(f"\nwritten {target}")


if __name__ == "__main__":
    main()

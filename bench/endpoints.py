"""Clinical endpoints kept or broken: the profile's endpoints on the original and on each anonymizer's
output, per shared clip (issue 23).

For each profile and clip (the six ASL clips under pd_motor and pd_face, with pd_motor also a real
hand given a 5 Hz tremor, the walking clip ``one-by-one-person-detection.mp4`` under pd_gait, from
frame 80 where the whole body is in view)
and each anonymizer (the profile's swap, and blur, mask and pixelate as baselines) the table has:
endpoint, original, released, difference, tolerance and outcome (kept, shifted, lost, not
measurable), as the release's own check (:func:`clinrelease.verify.endpoints.verify_endpoints`)
judges them. A summary at the end counts the outcomes per profile and anonymizer and lists each
endpoint a baseline breaks that the swap keeps. The anonymizers' frames are not encoded: the figures
are what the anonymizer alone does.

``reencode`` is the original itself through the release's encoder at the profile's output settings:
what every release changes before any anonymizer does. The summary gives each endpoint's largest
change under it over the clips, and twice that, the least tolerance that leaves the anonymizer half
(as the original's own repeat may use half: :data:`clinrelease.verify.endpoints.REPEAT_SHARE`); the
profiles' tolerances are set from it where a shared clip measures the endpoint.

    .venv/bin/python bench/endpoints.py [--profiles pd_motor,pd_face,pd_gait] [--clips again,book]
        [--frames 90] [--anonymizers swap,blur,mask,pixelate,reencode] [--out bench/out]
        [--extra brow_movement_amplitude=0.01]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from _face_helpers import KEY_A, SHARED_MEDIA  # noqa: E402
from _verify_helpers import shaken_hand_frames  # noqa: E402
from anonymize import frames_of  # noqa: E402

from clinrelease.dicom.video import open_video  # noqa: E402
from clinrelease.dicom.writer import new_video_header, write_dicom_video  # noqa: E402
from clinrelease.face.pipeline import analyze_faces, anonymize_frames  # noqa: E402
from clinrelease.face.registry import get_anonymizer  # noqa: E402
from clinrelease.profiles import load_profile  # noqa: E402
from clinrelease.release import build_anonymizers  # noqa: E402
from clinrelease.verify.endpoints import (  # noqa: E402
    ENDPOINTS,
    KEPT,
    LOST,
    SHIFTED,
    Tolerance,
    groups_of,
    verify_endpoints,
)
from clinrelease.verify.realism import verify_realism  # noqa: E402


def _f(value) -> str:
    return "-" if value is None else f"{value:.3g}"


#: the walking clip, and where its whole body comes into view (10 fps). Its people walk to a table
#: with their backs to the camera, stand there and walk back: no window of it shows a steady gait
#: (frames 80, 180, 440, 680 and 1150 onwards, 100-120 frames each: no gait endpoint measurable), so
#: its rows say why; the tests' walking figure carries the gait extractors
WALKING, WALKING_FROM = "one-by-one-person-detection.mp4", 80


def clips_for(profile: str, names: str) -> list[tuple[str, Path | None, int]]:
    """``(name, path, first frame)`` of the shared clips a profile is measured on; pd_motor adds
    ``shaken`` (no path): again.mkv's first frame moved side to side at 5 Hz, the tests' real hand
    with a known tremor, as no shared clip holds a repeatable tap or tremor."""
    if profile == "pd_gait":
        return [("walking", SHARED_MEDIA / WALKING, WALKING_FROM)]
    asl = [(clip, SHARED_MEDIA / "asl" / f"{clip}.mkv", 0) for clip in names.split(",")]
    return asl + [("shaken", None, 0)] if profile == "pd_motor" else asl


def reencoded(frames: list, fps: float, profile) -> list:
    """The frames through the release's encoder at the profile's output settings, decoded again."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reencoded.dcm"
        write_dicom_video(path, new_video_header(), frames, fps, syntax=profile.output.syntax, quality=profile.output.quality)
        return list(open_video(path).frames())


def bench(profile_name: str, clip: str, path: Path | None, first: int, count: int, anonymizers: list[str], extra: dict[str, Tolerance]) -> list[dict]:
    """One clip under one profile (and the ``extra`` endpoints of its groups): the endpoint table
    of every anonymizer, printed and returned."""
    profile = load_profile(profile_name)
    settings = profile.verify.endpoints
    if settings is None or not settings.tolerances:
        sys.exit(f"{profile_name} judges no endpoint (verify.endpoints)")
    tolerances = settings.judged()
    groups = groups_of(tolerances)
    tolerances.update({n: t for n, t in extra.items() if ENDPOINTS[n].group in groups})
    every = settings.sample_every or profile.verify.sample_every
    if path is None:
        fps, frames = 30.0, shaken_hand_frames(count)
    else:
        fps = open_video(path).info.fps
        frames = frames_of(path, first + count, 1)[first:]
    analysis = analyze_faces(frames, patient_rule=profile.faces.patient_rule, min_face_px=profile.faces.min_face_px, hands=profile.faces.keep_hands)
    rows = []
    for name in anonymizers:
        if name == "reencode":
            out = reencoded(frames, fps, profile)
        else:
            patient, bystander = build_anonymizers(profile, KEY_A, "P1") if name == "swap" else (get_anonymizer(name), get_anonymizer(name))
            out = list(anonymize_frames(frames, analysis, patient=patient, bystander=bystander))
        realism = verify_realism(frames, out, analysis, sample_every=profile.verify.sample_every)
        report = verify_endpoints(frames, out, fps, tolerances, sample_every=every, realism=realism)
        print(f"\n{clip} / {profile_name} / {name} ({report.frames_checked} sampled frames at {fps:g} fps, hand {report.hand})")
        print(f"  {'endpoint':<24} {'original':>9} {'released':>9} {'diff':>9} {'tolerance':>9}  outcome")
        for r in report.results:
            print(f"  {r.name:<24} {_f(r.original):>9} {_f(r.released):>9} {_f(r.difference):>9} {r.tolerance:>9}  {r.status}")
            rows.append({"profile": profile_name, "clip": clip, "anonymizer": name, **r.__dict__})
        why: dict[str, list[str]] = {}
        for r in report.results:
            if r.reason:
                why.setdefault(r.reason, []).append(r.name)
        for reason, names in why.items():
            print(f"    {', '.join(names)}: {reason}")
    return rows


def summarize(rows: list[dict]) -> None:
    """Outcome counts per profile and anonymizer, and the endpoints a baseline breaks that the swap keeps."""
    print("\nsummary (judged endpoints: kept / shifted / lost; not measurable left out)")
    keys = sorted({(r["profile"], r["anonymizer"]) for r in rows}, key=lambda k: (k[0], k[1] != "swap", k[1]))
    for profile, name in keys:
        mine = [r for r in rows if (r["profile"], r["anonymizer"]) == (profile, name)]
        count = {s: sum(r["status"] == s for r in mine) for s in (KEPT, SHIFTED, LOST)}
        print(f"  {profile:<9} {name:<9} kept {count[KEPT]:>3}  shifted {count[SHIFTED]:>3}  lost {count[LOST]:>3}")
    swap_kept = {(r["profile"], r["clip"], r["name"]) for r in rows if r["anonymizer"] == "swap" and r["status"] == KEPT}
    broken = [r for r in rows if r["anonymizer"] not in ("swap", "reencode") and r["status"] in (SHIFTED, LOST) and (r["profile"], r["clip"], r["name"]) in swap_kept]
    print("\nbroken by a baseline, kept by the swap:")
    for r in broken:
        print(f"  {r['profile']:<9} {r['clip']:<8} {r['anonymizer']:<9} {r['name']:<24} {_f(r['original']):>9} -> {_f(r['released']):>9}  {r['status']}")
    if not broken:
        print("  none")
    again = [r for r in rows if r["anonymizer"] == "reencode" and r["change"] is not None]
    if again:
        print("\nre-encoding alone (the release's encoder, the profile's output settings): largest change, twice it, tolerance")
        for profile, name in sorted({(r["profile"], r["name"]) for r in again}):
            worst = max((r for r in again if (r["profile"], r["name"]) == (profile, name)), key=lambda r: r["change"])
            shown = (lambda v: f"{v:.0%}") if worst["tolerance"].endswith("%") else (lambda v: f"{v:.3g}")
            print(f"  {profile:<9} {name:<24} {shown(worst['change']):>7} ({worst['clip']})  x2 {shown(2 * worst['change']):>7}  tolerance {worst['tolerance']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profiles", default="pd_motor,pd_face,pd_gait")
    ap.add_argument("--clips", default="again,book,brother,eat,help,bird", help="ASL clips (pd_gait always uses the walking clip)")
    ap.add_argument("--frames", type=int, default=90)
    ap.add_argument("--anonymizers", default="swap,blur,mask,pixelate,reencode")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--extra", default="", help="endpoints the profiles do not judge, NAME=ABSOLUTE_TOLERANCE,... (e.g. brow_movement_amplitude=0.01)")
    args = ap.parse_args()
    extra = {}
    for item in filter(None, args.extra.split(",")):
        name, _, value = item.partition("=")
        if name not in ENDPOINTS:
            sys.exit(f"--extra: unknown endpoint {name!r} (known: {', '.join(ENDPOINTS)})")
        extra[name] = Tolerance("absolute", float(value))
    rows = []
    for profile in args.profiles.split(","):
        for clip, path, first in clips_for(profile, args.clips):
            rows += bench(profile, clip, path, first, args.frames if profile != "pd_gait" else 120, args.anonymizers.split(","), extra)
    summarize(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / "endpoints.json"
    target.write_text(json.dumps(rows, indent=1))
    print(f"\nwritten {target}")


if __name__ == "__main__":
    main()

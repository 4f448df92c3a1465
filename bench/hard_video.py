"""Exam video as it really is (issue 16): hard variants of the shared clips through a whole release.

Builds each variant as a DICOM video with burned-in PHI, releases it with the profile that fits it
(pd_motor for the seated ASL clips, pd_gait for walking) and prints one row per variant:

* released or quarantined (and the first reason);
* dlib and SFace: the share of checked frames where the released face is NOT matched to the patient;
* body AP (the release's own keypoint check);
* face realism (the release's own): the released faces' YuNet score over the original's, the
  mouth opening's change and the eye opening's deviation;
* faces left unanonymized: an independent detector (dlib's HOG, not one the release uses) run on
  the released frames turned upright; a face it finds whose pixels are within ``UNCHANGED`` grey
  levels of the original's is counted;
* flat-filled regions over a face: patches that the release made flat (a solid fill) overlapping a
  face of the original frame.

Variants: every ASL clip turned in-plane by 15, 30 and 45 degrees (``rot15``...) and with a tilt
sweeping -40..40 degrees (``sweep``); each clip shrunk so the face is 24, 32 and 48 px wide
(``face24``...); two clips side by side (``pair``: two people, the patient the larger face); and the
shared walking clip (``walk``). It also writes a contact sheet per variant (original | released,
faces zoomed in) under ``--out`` to look at.

    .venv/bin/python bench/hard_video.py [--frames 30] [--variants rot30,face32,walk] [--clips again,book]
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clinrelease.dicom.video import open_video  # noqa: E402
from clinrelease.face.surrogate_choice import CHOICES_FILE  # noqa: E402
from clinrelease.face.textured_blur import flat_filled, flat_over  # noqa: E402
from clinrelease.fixtures import Identity, build_dicom_fixture, rotated, scaled, shared_media_dir, sweep, two_people, write_mp4  # noqa: E402

#: a released face whose mean absolute difference from the original is below this (grey levels) was
#: left as it was
UNCHANGED = 4.0
#: the walking clip opens on an empty room: its variant starts where the first walker is in view
WALK_START = 100
VARIANTS = ("rot0", "rot15", "rot30", "rot45", "sweep", "face24", "face32", "face48", "pair", "walk")


@dataclass
class Variant:
    name: str
    clip: str
    profile: str
    frames: list[np.ndarray]
    angles: list[float]  # per frame: the tilt the bench applied (turned back for the independent detector)
    fps: float


def _clip_frames(path: Path, count: int, start: int = 0) -> tuple[list[np.ndarray], float]:
    source = open_video(path)
    return list(itertools.islice(source.frames(), start, start + count)), float(source.info.fps or 30.0)


def _face_width(frames: list[np.ndarray]) -> float:
    from clinrelease.face.pipeline import analyze_faces

    analysis = analyze_faces(frames[:: max(1, len(frames) // 5)], min_face_px=12)
    return analysis.patient.median_size if analysis.patient else 0.0


def build_variants(names: list[str], clips: list[str], count: int) -> list[Variant]:
    media = shared_media_dir(ROOT)
    if media is None:
        raise SystemExit("the shared media folder ../shared/media is not present")
    out: list[Variant] = []
    for clip in clips:
        frames, fps = _clip_frames(media / "asl" / f"{clip}.mkv", count)
        width = None
        for name in names:
            if name.startswith("rot"):
                angle = float(name[3:])
                out.append(Variant(f"{name}:{clip}", clip, "pd_motor", list(rotated(frames, angle)), [angle] * len(frames), fps))
            elif name == "sweep":
                angles = sweep(len(frames))
                out.append(Variant(f"sweep:{clip}", clip, "pd_motor", list(rotated(frames, angles)), angles, fps))
            elif name.startswith("face"):
                width = width or _face_width(frames)
                factor = float(name[4:]) / width
                small = list(scaled(frames, factor))
                # the encoder needs even sides
                small = [f[: f.shape[0] // 2 * 2, : f.shape[1] // 2 * 2] for f in small]
                out.append(Variant(f"{name}:{clip}", clip, "pd_motor", small, [0.0] * len(small), fps))
    if "pair" in names and len(clips) >= 1:
        other = clips[1] if len(clips) > 1 and clips[1] != clips[0] else ("book" if clips[0] != "book" else "again")
        left, fps = _clip_frames(media / "asl" / f"{clips[0]}.mkv", count)
        right, _ = _clip_frames(media / "asl" / f"{other}.mkv", count)
        pair = two_people(left, right)
        out.append(Variant(f"pair:{clips[0]}+{other}", clips[0], "pd_motor", pair, [0.0] * len(pair), fps))
    if "walk" in names:
        frames, fps = _clip_frames(media / "one-by-one-person-detection.mp4", count, WALK_START)
        out.append(Variant("walk", "walk", "pd_gait", frames, [0.0] * len(frames), fps))
    return out


def release(variant: Variant, work: Path, keys: Path) -> tuple[dict, Path | None, Path, float]:
    """Release one variant: its record, the released file (None when quarantined), the input file."""
    from clinrelease.release import ReleaseOptions, run_release

    folder = work / "in"
    folder.mkdir(parents=True)
    mp4 = work / "variant.mp4"
    write_mp4(mp4, variant.frames, variant.fps, {})
    # burned-in name and MRN as scanners draw them (fixed-size letters: on a shrunk frame they would
    # cover the face, which no scanner does)
    burn = variant.frames[0].shape[1] >= 400
    # each clip shows its own patient; each variant decides its surrogate afresh (a decision stored by
    # an earlier variant, of another clip or size, would otherwise be read back: rows would depend on
    # the order they run in)
    (keys / CHOICES_FILE).unlink(missing_ok=True)
    identity = Identity(patient_id=f"MRN-{variant.clip}")
    build_dicom_fixture(folder / "exam.dcm", mp4, "h264", None, identity=identity, burn_text=burn)
    start = time.perf_counter()
    summary = run_release(ReleaseOptions(profile=variant.profile, inputs=[folder], output=work / "release", keys_dir=keys))
    seconds = time.perf_counter() - start
    record = summary.records[0].to_dict()
    released = work / "release" / record["output"] if record["status"] == "released" else None
    return record, released, folder / "exam.dcm", seconds


def _upright(frame: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """The frame turned back by ``angle`` and the affine that maps upright pixels back to the frame."""
    import cv2

    rows, columns = frame.shape[:2]
    turn = cv2.getRotationMatrix2D((columns / 2, rows / 2), -angle, 1.0)
    return cv2.warpAffine(frame, turn, (columns, rows), borderMode=cv2.BORDER_REPLICATE), cv2.invertAffineTransform(turn)


def _hog():
    import dlib

    return dlib.get_frontal_face_detector()


def inspect_frames(variant: Variant, originals: list[np.ndarray], released: list[np.ndarray], sheet: Path) -> dict:
    """Independent checks on the released frames against the input's: faces left as they were,
    flat fills over faces."""
    import cv2

    from clinrelease.face.pipeline import shared_detector

    hog = _hog()
    locator = shared_detector()
    unanonymized, flat_frames, faces_seen = 0, 0, 0
    tiles: list[np.ndarray] = []
    picks = set(np.linspace(0, len(released) - 1, min(6, len(released))).astype(int).tolist())
    for index, (orig, out) in enumerate(zip(originals, released)):
        angle = variant.angles[index]
        up_out, _ = _upright(out, angle)
        up_orig, _ = _upright(orig, angle)
        upsample = 2 if max(orig.shape[:2]) < 700 else 1
        left = False
        for rect in hog(cv2.cvtColor(up_out, cv2.COLOR_RGB2GRAY), upsample):
            x0, y0 = max(0, rect.left()), max(0, rect.top())
            x1, y1 = min(up_out.shape[1], rect.right()), min(up_out.shape[0], rect.bottom())
            if x1 - x0 < 4 or y1 - y0 < 4:
                continue
            diff = np.abs(up_out[y0:y1, x0:x1].astype(np.float32) - up_orig[y0:y1, x0:x1].astype(np.float32)).mean()
            left = left or diff < UNCHANGED
        unanonymized += int(left)
        # faces of the original (the release's own detector, any tilt) for the flat-fill check and the sheet
        # only what YuNet confirms as a face, as re-id does: the detector also finds again.mkv's printed
        # skull, and the cleaner's fill over the shirt's lettering beneath it is not a fill over a face
        boxes = [d.box for d in locator.detect(orig, (-40.0, 40.0)) if _confirmed(orig, d.box, variant.angles[index])]
        faces_seen += int(bool(boxes))
        flat = flat_filled(orig, out)
        flat_frames += int(any(flat_over(flat, box) for box in boxes))
        if index in picks and boxes:
            tiles.append(_zoomed(orig, out, boxes[0]))
    if tiles:
        cv2.imwrite(str(sheet), cv2.cvtColor(np.concatenate(tiles, axis=1), cv2.COLOR_RGB2BGR))
    return {"unanonymized_frames": unanonymized, "flat_fill_frames": flat_frames, "frames_with_face": faces_seen}


def _confirmed(frame: np.ndarray, box: np.ndarray, angle: float) -> bool:
    """Whether YuNet confirms a face in ``box`` (in the frame turned back by the bench's ``angle``)."""
    import cv2

    from clinrelease.verify.reid import CONFIRM_SCORE, face_locator

    if angle:
        centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        turn = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), -angle, 1.0)
        frame = cv2.warpAffine(frame, turn, (frame.shape[1], frame.shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    row = face_locator().locate(frame, box)
    return row is not None and row[14] >= CONFIRM_SCORE


def _zoomed(orig: np.ndarray, out: np.ndarray, box: np.ndarray, size: int = 160) -> np.ndarray:
    """Original above released, the face and its surroundings scaled to ``size`` pixels."""
    import cv2

    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = 0.9 * max(box[2] - box[0], box[3] - box[1])
    x0, y0 = int(max(0, cx - half)), int(max(0, cy - half))
    x1, y1 = int(min(orig.shape[1], cx + half)), int(min(orig.shape[0], cy + half))
    crops = [cv2.resize(np.ascontiguousarray(f[y0:y1, x0:x1]), (size, size), interpolation=cv2.INTER_NEAREST) for f in (orig, out)]
    return np.concatenate(crops, axis=0)


def _row(variant: Variant, record: dict, seconds: float, checks: dict) -> dict:
    figures = record.get("verification", {})
    deid = {}
    for name in ("dlib", "sface"):
        rate = figures.get(f"{name}_match_rate")
        deid[name] = None if rate is None else round(100.0 * (1.0 - rate), 1)
    return {
        "variant": variant.name,
        "profile": variant.profile,
        "size": f"{variant.frames[0].shape[1]}x{variant.frames[0].shape[0]}",
        "status": record["status"],
        "dlib_deid_pct": deid["dlib"],
        "sface_deid_pct": deid["sface"],
        "dlib_worst": figures.get("dlib_worst"),
        "sface_worst": figures.get("sface_worst"),
        "body_ap": figures.get("body_ap"),
        "residual_face_frames": figures.get("residual_face_frames"),
        "text_on_face": figures.get("burned_in_text_on_face"),
        "small_face_frames": figures.get("small_face_frames"),
        # how faces the plain swap does not take were anonymized, and what bystanders got
        "upscaled_swap_frames": figures.get("faces_upscaled_swap_frames"),
        "blurred_swap_frames": figures.get("faces_blurred_swap_frames"),
        "textured_blur_frames": figures.get("faces_textured_blur_frames"),
        "profile_view_frames": figures.get("profile_view_frames"),
        "bystander_treatment": figures.get("bystander_treatment"),
        "bystander_swap_frames": figures.get("faces_bystander_swap_frames"),
        "keypoints_person": figures.get("keypoints_person"),
        # does the released face still read as the patient's face with the patient's expression
        "face_score_ratio": figures.get("face_score_ratio"),
        "face_mesh_presence": figures.get("face_mesh_presence"),
        "mouth_opening_change": figures.get("mouth_opening_change"),
        "eye_deviation": figures.get("eye_deviation"),
        "corner_lift": figures.get("corner_lift"),
        **checks,
        "frames": len(variant.frames),
        "seconds": round(seconds, 1),
        "surrogate_counter": (record.get("faces", {}).get("surrogate") or {}).get("counter"),
        "reason": (record.get("reasons") or [""])[0][:90],
        "reasons": record.get("reasons") or [],
    }


def _f(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=30, help="frames of each clip (from its start)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {','.join(VARIANTS)}")
    ap.add_argument("--clips", default="again,book,bird,brother,eat,help", help="ASL clips (names without .mkv)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = ap.parse_args()
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    from clinrelease.crypto.keys import init_keys

    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp) / "keys"
        init_keys(keys)
        (keys / "release.key").write_text(bytes(range(32)).hex() + "\n")  # one fixed key: rows comparable across runs
        for n, variant in enumerate(build_variants(names, args.clips.split(","), args.frames)):
            work = Path(tmp) / f"v{n}"
            record, released, source, seconds = release(variant, work, keys)
            sheet = args.out / f"hard_video_{variant.name.replace(':', '_').replace('+', '_')}.png"
            if released is None:  # judge what the release would have shipped: the quarantined copy
                quarantined = sorted((work / "release.quarantine").rglob("*.dcm"))
                released = quarantined[0] if quarantined else None
            checks = inspect_frames(variant, list(open_video(source).frames()), list(open_video(released).frames()), sheet) if released else {}
            row = _row(variant, record, seconds, checks)
            rows.append(row)
            print(
                f"{row['variant']:<22} {row['profile']:<8} {row['size']:>8} {row['status']:<11} "
                f"dlib {row['dlib_deid_pct']}% ({_f(row['dlib_worst'])}) sface {row['sface_deid_pct']}% ({_f(row['sface_worst'])}) "
                f"body AP {_f(row['body_ap'])} "
                f"face {_f(row['face_score_ratio'])} mouth {_f(row['mouth_opening_change'])} eye {_f(row['eye_deviation'])} "
                f"unanon {row.get('unanonymized_frames')} flat {row.get('flat_fill_frames')} "
                f"text-on-face {row['text_on_face']} small {row['small_face_frames']} (upscaled {row['upscaled_swap_frames']}, "
                f"swap+blur {row['blurred_swap_frames']}, blurred {row['textured_blur_frames']}, turned {row['profile_view_frames']}, "
                f"bystander swapped {row['bystander_swap_frames']}) "
                f"counter {row['surrogate_counter']} {row['seconds']}s  {row['reason']}",
                flush=True,
            )
            shutil.rmtree(work, ignore_errors=True)
    (args.out / "hard_video.json").write_text(json.dumps(rows, indent=1))
    print(f"contact sheets and hard_video.json in {args.out}")


if __name__ == "__main__":
    main()

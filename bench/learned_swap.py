"""Learned faceswap backend against the landmark-driven swap and blur, in one run.

Trains a faceswap model on one shared ASL clip (patient) and the key-chosen composite surrogate,
then anonymizes frames of a *different* clip of the same person with faceswap, the default swap and
blur, and prints: training speed, inference speed (median ms/frame, ratio to the default swap), and
de-identification (dlib distance > 0.6 and SFace cosine < 0.363 mean "not the patient").
Rows for insightface's swapper appear when CLINRELEASE_MODEL_DIR holds its models.

    .venv/bin/python bench/learned_swap.py [--steps 150] [--tiny] [--device cpu] [--frames 30] [--threads 1]

On a CPU use --tiny; on a GPU leave it off (128 px model) and raise --steps (thousands).
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

from _face_helpers import KEY_A, SHARED_MEDIA  # noqa: E402

from clinrelease.dicom.video import open_video  # noqa: E402
from clinrelease.face.learned.crops import crop_from_texture, crops_from_source  # noqa: E402
from clinrelease.errors import MissingModelError  # noqa: E402
from clinrelease.face.learned.faceswap import (  # noqa: E402
    FaceSwapAnonymizer,
    FaceSwapConfig,
    secure_delete_model,
    train,
)
from clinrelease.face.learned.inswapper import InswapperAnonymizer  # noqa: E402
from clinrelease.face.pipeline import analyze_faces, anonymize_frames  # noqa: E402
from clinrelease.face.registry import get_anonymizer  # noqa: E402
from clinrelease.face.surrogates import choose_surrogate, default_pool  # noqa: E402
from clinrelease.verify.reid import get_recognizer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train-clip", default="asl/again.mkv")
    ap.add_argument("--eval-clip", default="asl/book.mkv")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--frames", type=int, default=30, help="evaluation frames (every 2nd frame of the clip)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--threads", type=int, default=1, help="torch/OpenCV threads (1 is steadiest on a shared CPU)")
    ap.add_argument("--keep-model", action="store_true", help="keep the trained model (it identifies the person)")
    args = ap.parse_args()
    import cv2
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    train_clip, eval_clip = SHARED_MEDIA / args.train_clip, SHARED_MEDIA / args.eval_clip
    if not train_clip.is_file() or not eval_clip.is_file():
        sys.exit(f"shared media missing under {SHARED_MEDIA}")
    args.out.mkdir(parents=True, exist_ok=True)
    config = FaceSwapConfig.tiny() if args.tiny else FaceSwapConfig()

    surrogate = choose_surrogate(default_pool(), KEY_A, "patient-1")
    t = time.perf_counter()
    patient = crops_from_source(train_clip, config.template, max_crops=1000)
    crop_s = time.perf_counter() - t
    b = [crop_from_texture(surrogate.texture, surrogate.landmarks, config.template)]
    model = args.out / ("faceswap_tiny.pt" if args.tiny else "faceswap.pt")
    model.unlink(missing_ok=True)
    result = train(patient, b, model, steps=args.steps, config=config, device=args.device, checkpoint_every=max(50, args.steps))

    frames = list(itertools.islice(open_video(eval_clip).frames(), 0, 2 * args.frames, 2))
    analysis = analyze_faces(frames)
    track = analysis.patient
    blur = get_anonymizer("blur")
    anonymizers = {
        "faceswap": FaceSwapAnonymizer(model, device=args.device),
        "swap": get_anonymizer("swap", key=KEY_A, pseudonym="patient-1"),
        "blur": get_anonymizer("blur"),
    }
    try:  # a row for insightface's swapper when the site's models are present
        anonymizers["inswapper"] = InswapperAnonymizer(key=KEY_A, pseudonym="patient-1")
    except MissingModelError as exc:
        print(f"inswapper skipped: {exc}", file=sys.stderr)
    outs, ms = {}, {}
    for name, anon in anonymizers.items():
        times = []
        outs[name] = []
        for out in _timed(anonymize_frames(frames, analysis, patient=anon, bystander=blur), times):
            outs[name].append(out)
        ms[name] = 1000 * statistics.median(times)
    # batched over frames (what a GPU run does): one forward pass per 16 frames
    fs = anonymizers["faceswap"]
    batch_times = []
    for start in range(0, len(frames), 16):
        chunk = [f.copy() for f in frames[start : start + 16]]
        faces = [analysis.faces_in_frame(i) for i in range(start, start + len(chunk))]
        t = time.perf_counter()
        fs.anonymize_frames(chunk, faces)
        batch_times.append((time.perf_counter() - t) / len(chunk))
    ms["faceswap batched"] = 1000 * statistics.median(batch_times)

    print(f"\nTraining on {train_clip.name}: {len(patient)} patient crops ({crop_s:.1f} s), 1 surrogate crop, "
          f"{'tiny 64 px' if args.tiny else '128 px'} model, device {result.device}")
    print(f"  {result.step} steps in {result.seconds:.1f} s = {result.steps_per_s:.2f} steps/s, final loss {result.loss:.4f}")
    print(f"\nInference on {eval_clip.name}, {len(frames)} frames 640x480 (median ms per frame, ratio to swap)")
    for name, value in ms.items():
        print(f"  {name:<17} {value:8.1f}   {value / ms['swap']:5.2f}x")

    idx = [i for i in range(len(frames)) if track is not None and i in track.faces]
    print(f"\nDe-identification over {len(idx)} patient frames (same person, a clip not used for training)")
    print(f"  {'anonymizer':<10} {'dlib med':>9} {'dlib>0.6':>9} {'SFace med':>10} {'SFace<.363':>11}")
    dlib, sface = get_recognizer("dlib"), get_recognizer("sface")
    for name in anonymizers:
        # dlib's similarity is its Euclidean distance; no SFace face found after the swap counts as -1
        d = np.array([_compare(dlib, frames[i], outs[name][i], track.faces[i].box, float("inf")) for i in idx])
        s = np.array([_compare(sface, frames[i], outs[name][i], track.faces[i].box, -1.0) for i in idx])
        print(f"  {name:<10} {np.median(d):9.3f} {np.mean(d > 0.6):9.1%} {np.median(s):10.3f} {np.mean(s < 0.363):11.1%}")

    i = idx[len(idx) // 2]
    bx = track.faces[i].box.astype(int)
    cx, cy, r = (bx[0] + bx[2]) // 2, (bx[1] + bx[3]) // 2, int(0.9 * max(bx[2] - bx[0], bx[3] - bx[1]))
    crop = lambda im: im[max(0, cy - r) : cy + r, max(0, cx - r) : cx + r]  # noqa: E731
    sheet = np.hstack([crop(frames[i])] + [crop(outs[n][i]) for n in anonymizers])
    path = args.out / "learned_swap_sheet.png"
    cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(sheet), cv2.COLOR_RGB2BGR))
    print(f"\ncontact sheet (original | {' | '.join(anonymizers)}): {path}")
    if not args.keep_model:
        secure_delete_model(model)  # a model trained on a face is identifying data


def _compare(rec, original: np.ndarray, anonymized: np.ndarray, box: np.ndarray, missing: float) -> float:
    """``rec``'s similarity of the face at ``box`` before and after; ``missing`` when either has no face."""
    a, b = rec.embed(original, box=box), rec.embed(anonymized, box=box)
    return missing if a is None or b is None else rec.similarity(a, b)


def _timed(frames, times):
    t = time.perf_counter()
    for frame in frames:
        times.append(time.perf_counter() - t)
        yield frame
        t = time.perf_counter()


if __name__ == "__main__":
    main()

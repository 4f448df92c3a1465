"""Donor pools a site can review: build one from the generator, check one, describe the built-in one.

A site that prefers a fixed pool it has looked at over a face generated per patient builds a folder
of vetted generated faces once (:func:`build_generated_pool`), reviews it, and points the profile's
``pool`` at it. :func:`check_pool` says what a folder is worth before a release uses it: which files
the loader accepts, what the generator's vetting would say of each face, which donors recognizers
take for one person (a duplicate or a look-alike makes two composites alike), and the chance that two
patients share a donor.
"""

from __future__ import annotations

import itertools
import secrets
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clinrelease.errors import ConfigError
from clinrelease.face.surrogates import IMAGE_SUFFIXES, VIDEO_SUFFIXES, Donor, _donor_from_file, shared_donor_probability

RECOGNIZERS = ("dlib", "sface")
#: the notice written beside generated donors (the weights' licence travels with the folder)
LICENCE_FILE = "LICENCE.txt"


def _embeddings(donor: Donor) -> dict[str, np.ndarray | None]:
    from clinrelease.verify.reid import get_recognizer

    return {n: get_recognizer(n).embed(donor.image, landmarks=donor.landmarks) for n in RECOGNIZERS}


def _matched_by(a: dict, b: dict) -> list[str]:
    """The recognizers that take two donors' embeddings for one person."""
    from clinrelease.verify.reid import get_recognizer

    out = []
    for n in RECOGNIZERS:
        rec = get_recognizer(n)
        if a[n] is not None and b[n] is not None and rec.is_match(rec.similarity(a[n], b[n])):
            out.append(n)
    return out


@dataclass
class PoolCheck:
    """What :func:`check_pool` found; ``usable`` donors, ``rejected`` files with the loader's reason."""

    folder: str
    k: int
    usable: list[str] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)
    #: accepted by the loader, but the generator's vetting would not take them (glasses, open mouth, ...)
    vetting: list[dict[str, Any]] = field(default_factory=list)
    #: pairs both recognizers take for one person (a duplicate, or the same person twice)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    #: pairs one recognizer takes for one person
    lookalikes: list[dict[str, Any]] = field(default_factory=list)
    licence: str = ""

    @property
    def shared_donor_probability(self) -> float | None:
        n = len(self.usable)
        return shared_donor_probability(n, self.k) if n >= self.k else None

    @property
    def vetting_counts(self) -> dict[str, int]:
        """Donors the vetting would reject, by check (a donor can fail several)."""
        counts = Counter(kind for entry in self.vetting for kind in entry["kinds"])
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    @property
    def ok(self) -> bool:
        """Usable as a release's pool: at least ``k`` donors, every file accepted, no duplicates."""
        return len(self.usable) >= max(self.k, 2) and not self.rejected and not self.duplicates

    def to_dict(self) -> dict[str, Any]:
        p = self.shared_donor_probability
        return {
            "folder": self.folder,
            "ok": self.ok,
            "donors": len(self.usable),
            "k": self.k,
            "shared_donor_probability": None if p is None else round(p, 4),
            "usable": self.usable,
            "rejected": self.rejected,
            "vetting": self.vetting,
            "vetting_counts": self.vetting_counts,
            "duplicates": self.duplicates,
            "lookalikes": self.lookalikes,
            "licence": self.licence,
        }


def check_pool(folder: str | Path, k: int = 3, *, min_face_px: int = 80) -> PoolCheck:
    """Check a donor folder file by file (where :meth:`DonorPool.load` stops at the first bad one).

    Raises
    ------
    ConfigError
        When ``folder`` is not a folder.
    """
    from clinrelease.face.generator import vet

    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError("donor pool folder does not exist", folder)
    out = PoolCheck(str(folder), k)
    notice = folder / LICENCE_FILE
    out.licence = notice.read_text(encoding="utf-8").strip() if notice.is_file() else ""
    donors: list[Donor] = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES):
        try:
            donor = _donor_from_file(path, min_face_px)
        except ConfigError as exc:
            out.rejected.append({"file": path.name, "reason": exc.message})
            continue
        donor.donor_id = path.name
        donors.append(donor)
        out.usable.append(path.name)
        verdict, _ = vet(donor.image)
        if not verdict.ok:
            out.vetting.append({"file": path.name, "reason": "; ".join(verdict.reasons), "kinds": list(verdict.kinds)})
    embeddings = [_embeddings(d) for d in donors]
    for (da, ea), (db, eb) in itertools.combinations(zip(donors, embeddings), 2):
        matched = _matched_by(ea, eb)
        if len(matched) == len(RECOGNIZERS):
            out.duplicates.append({"a": da.donor_id, "b": db.donor_id})
        elif matched:
            out.lookalikes.append({"a": da.donor_id, "b": db.donor_id, "recognizers": matched})
    return out


def build_generated_pool(count: int, folder: str | Path, seed: bytes | None = None, progress=None) -> list[Path]:
    """Write ``count`` vetted generated faces the pool loader accepts to ``folder`` (PNG), none that both recognizers take
    for a face already written, and the weights' licence beside them.

    ``seed`` (random when None) plays the release key's part: the n-th face is the first vetted
    latent of ``"pool/<n>"``. ``progress`` is called with each file written.

    Raises
    ------
    ConfigError
        When ``count`` is below 2, the folder already holds donor images, or the generator is missing.
    """
    import cv2

    from clinrelease.face.generator import LICENCE, MAX_ATTEMPTS, generate_face
    from clinrelease.face.surrogates import _skin_checked

    if count < 2:
        raise ConfigError(f"a donor pool needs at least two donors, got {count}")
    folder = Path(folder)
    if folder.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES for p in folder.iterdir()):
        raise ConfigError("the folder already holds donor images; build into an empty or new folder", folder)
    folder.mkdir(parents=True, exist_ok=True)
    seed = secrets.token_bytes(32) if seed is None else seed
    kept: list[dict] = []
    written: list[Path] = []
    name = 0
    while len(written) < count:
        if name >= count * 4:
            raise ConfigError(f"only {len(written)} distinct vetted faces in {name} tries of {MAX_ATTEMPTS} latents each", folder)
        face = generate_face(seed, f"pool/{name}")
        name += 1
        try:
            _skin_checked(face.donor, "generated face")
        except ConfigError:
            continue  # the pool loader would refuse it: hair or a beard covers the face
        emb = _embeddings(face.donor)
        if any(len(_matched_by(emb, other)) == len(RECOGNIZERS) for other in kept):
            continue
        kept.append(emb)
        path = folder / f"generated_{len(written):03d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(face.donor.image, cv2.COLOR_RGB2BGR))
        written.append(path)
        if progress is not None:
            progress(path)
    (folder / LICENCE_FILE).write_text(LICENCE + "\n", encoding="utf-8")
    return written


def builtin_pool_summary(k: int = 3) -> dict[str, Any]:
    """The built-in pool (donor ids and where they come from) and whether the generator is available."""
    from clinrelease.face.generator import INSTALL_HINT, LICENCE
    from clinrelease.face.surrogates import default_pool
    from clinrelease.models import package_dir

    pool = default_pool()
    generator = package_dir("openvino") is not None and package_dir("random_face") is not None
    return {
        "builtin": {
            "donors": [d.donor_id for d in pool.donors],
            "k": k,
            "shared_donor_probability": round(shared_donor_probability(len(pool), k), 4),
        },
        "generator": {"installed": generator, "licence": LICENCE, **({} if generator else {"install": INSTALL_HINT})},
    }

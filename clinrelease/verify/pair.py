"""Run every check on a pair of video files (original, anonymized): what ``clinrelease verify`` does.

The release pipeline calls the individual checks with the analysis it already has; this module is
for arbitrary pairs, where the face analysis has to be made here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clinrelease.errors import InputError
from clinrelease.face.base import FaceAnalysis
from clinrelease.verify.decision import ItemReports


@dataclass
class PairOptions:
    """What to check on a pair and how densely."""

    #: names, or recognizers judging at a profile's thresholds (:func:`clinrelease.verify.reid.profile_recognizers`)
    recognizers: Sequence[Any] = ("dlib", "sface")
    sample_every: int = 5
    text_every: int = 30
    text_min_score: float = 0.5
    phi: Sequence[str] = field(default_factory=list)
    keypoints: bool = True
    text: bool = True
    model_dir: str | None = None
    #: clinical endpoints to judge, name -> tolerance (:mod:`clinrelease.verify.endpoints`)
    endpoints: dict = field(default_factory=dict)
    #: None: ``sample_every``
    endpoint_sample_every: int | None = None


def analyze(frames: Iterable[np.ndarray]) -> FaceAnalysis:
    """Face analysis of the original with the face stage's tracker, as a release makes it."""
    from clinrelease.face.pipeline import analyze_faces

    return analyze_faces(frames)


def verify_pair(original: str | Path, anonymized: str | Path, options: PairOptions | None = None) -> tuple[ItemReports, dict[str, object]]:
    """Run re-id, keypoint (with face realism), burned-in text and leak checks on two video files.

    Returns
    -------
    (ItemReports, info)
        The reports, and facts about the run (frame counts, analysis source).

    Raises
    ------
    InputError
        When a file cannot be opened or the two videos differ in frame size.
    """
    from clinrelease.dicom.video import open_video
    from clinrelease.verify.keypoints import verify_keypoints
    from clinrelease.verify.leaks import scan_bytes
    from clinrelease.verify.ocr import scan_text
    from clinrelease.verify.realism import verify_realism
    from clinrelease.verify.reid import verify_reid

    opts = options or PairOptions()
    src, out = open_video(original), open_video(anonymized)
    a, b = src.info, out.info
    if (a.rows, a.columns) != (b.rows, b.columns):
        raise InputError(f"frame size {b.columns}x{b.rows} differs from the original's {a.columns}x{a.rows} ({a.path})", b.path)
    if a.frames and b.frames and a.frames != b.frames:
        raise InputError(f"{b.frames} frames but the original ({a.path}) has {a.frames}", b.path)
    analysis = analyze(src.frames())
    reports = ItemReports()
    try:
        reports.reid = verify_reid(src.frames(), out.frames(), analysis, opts.recognizers, opts.sample_every, model_dir=opts.model_dir)
        if opts.keypoints:
            reports.keypoints = verify_keypoints(src.frames(), out.frames(), opts.sample_every)
            reports.realism = verify_realism(src.frames(), out.frames(), analysis, opts.sample_every)
        if opts.endpoints:
            from clinrelease.verify.endpoints import groups_of, verify_endpoints

            if reports.realism is None and "face" in groups_of(opts.endpoints):
                reports.realism = verify_realism(src.frames(), out.frames(), analysis, opts.sample_every)
            reports.endpoints = verify_endpoints(
                src.frames(), out.frames(), a.fps, opts.endpoints, opts.endpoint_sample_every or opts.sample_every, reports.realism
            )
    except ValueError as exc:  # zip(strict=True): the streams ended at different frames
        if "zip()" not in str(exc):
            raise
        raise InputError(f"the two videos do not have the same number of frames ({exc})", b.path) from exc
    if opts.text:
        reports.text = scan_text(out.frames(), opts.text_every, opts.text_min_score)
    reports.leaks = scan_bytes(b.path, opts.phi)
    info = {
        "original": str(a.path),
        "anonymized": str(b.path),
        "frames": b.frames,
        "analysis": "clinrelease.face.pipeline.analyze_faces",
        "tracks": len(analysis.tracks),
    }
    return reports, info

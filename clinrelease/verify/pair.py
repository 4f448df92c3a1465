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
    from clinrelease.verify.endpoints import groups_of
    from clinrelease.verify.leaks import scan_bytes
    from clinrelease.verify.walk import WalkPlan, verify_frames

    opts = options or PairOptions()
    src, out = open_video(original), open_video(anonymized)
    a, b = src.info, out.info
    if (a.rows, a.columns) != (b.rows, b.columns):
        raise InputError(f"frame size {b.columns}x{b.rows} differs from the original's {a.columns}x{a.rows} ({a.path})", b.path)
    if a.frames and b.frames and a.frames != b.frames:
        raise InputError(f"{b.frames} frames but the original ({a.path}) has {a.frames}", b.path)
    analysis = analyze(src.frames())
    plan = WalkPlan(
        sample_every=opts.sample_every, recognizers=tuple(opts.recognizers), model_dir=opts.model_dir,
        keypoints=opts.keypoints, realism=opts.keypoints or "face" in groups_of(opts.endpoints), endpoints=dict(opts.endpoints),
        endpoint_sample_every=opts.endpoint_sample_every, fps=a.fps, text_every=opts.text_every if opts.text else None,
        text_min_score=opts.text_min_score,
    )  # fmt: skip
    try:
        # one decode of each video for every check (the analysis above is the original's first)
        reports, _, _, _ = verify_frames(src.frames(), out.frames(), analysis, plan)
    except ValueError as exc:  # zip(strict=True): the streams ended at different frames
        if "zip()" not in str(exc):
            raise
        raise InputError(f"the two videos do not have the same number of frames ({exc})", b.path) from exc
    reports.leaks = scan_bytes(b.path, opts.phi)
    info = {
        "original": str(a.path),
        "anonymized": str(b.path),
        "frames": b.frames,
        "analysis": "clinrelease.face.pipeline.analyze_faces",
        "tracks": len(analysis.tracks),
    }
    return reports, info

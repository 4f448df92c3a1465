"""verify stage: what must hold before an item may be released. Submodules only read pixels and bytes.

- :mod:`~clinrelease.verify.decision`: THE release decision: :func:`~clinrelease.verify.decision.checks_for`
  turns a profile into every check (figure, operator, limit); :func:`~clinrelease.verify.decision.decide`
  judges an item's figures and returns its reasons and the audit rows ``audit verify`` recomputes.
  Every reason an item can get is worded there.
- :mod:`~clinrelease.verify.reid`: re-identification risk (dlib, sface, arcface recognizers, each at
  the profile's threshold; per-item pairwise check, release-level gallery attack).
- :mod:`~clinrelease.verify.dlib_net`: dlib's recognition network in torch.
- :mod:`~clinrelease.verify.keypoints`: keypoint preservation (mediapipe pose OKS/AP per body part,
  face-mesh NME).
- :mod:`~clinrelease.verify.realism`: the released face still reads as a face with the patient's expression.
- :mod:`~clinrelease.verify.endpoints`: clinical endpoints (tapping, tremor, gait, blinks and mouth)
  on original and released video, judged against the profile's tolerances.
- :mod:`~clinrelease.verify.ocr`: burned-in text (find, read, sampled video scan); painting it out is
  :mod:`clinrelease.clean`.
- :mod:`~clinrelease.verify.leaks`: PHI and encoder-text byte scan of output files.
- :mod:`~clinrelease.verify.released_text`: the release's own texts under the same leak scan.
- :mod:`~clinrelease.verify.walk`: one pass over the original and the released video that feeds
  every check (``clinrelease run`` and ``clinrelease verify`` alike).
- :mod:`~clinrelease.verify.pair`: all checks on a pair of video files (``clinrelease verify``).

Submodules load models lazily; importing this package is cheap.
"""

__all__ = ["decision", "dlib_net", "endpoints", "keypoints", "leaks", "ocr", "pair", "realism", "reid", "released_text"]

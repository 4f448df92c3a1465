"""verify stage: what must hold before an item may be released.

- :mod:`~clinrelease.verify.reid`: re-identification risk (dlib, sface, arcface recognizers; per-item
  pairwise check, release-level gallery attack).
- :mod:`~clinrelease.verify.keypoints`: keypoint preservation (mediapipe pose OKS/AP per body part,
  face-mesh NME).
- :mod:`~clinrelease.verify.endpoints`: clinical endpoints (tapping, tremor, gait, blinks and mouth)
  on original and released video, judged against the profile's tolerances.
- :mod:`~clinrelease.verify.ocr`: burned-in text (find, clean, sampled video scan).
- :mod:`~clinrelease.verify.leaks`: PHI and encoder-text byte scan of output files.
- :mod:`~clinrelease.verify.checks`: thresholds and the release/quarantine verdict.
- :mod:`~clinrelease.verify.walk`: one pass over the original and the released video that feeds
  every check (``clinrelease run`` and ``clinrelease verify`` alike).
- :mod:`~clinrelease.verify.pair`: all checks on a pair of video files (``clinrelease verify``).

Submodules load models lazily; importing this package is cheap.
"""

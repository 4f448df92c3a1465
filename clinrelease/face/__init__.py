"""face stage: find every face in a video and replace the patient's with a key-chosen surrogate.

- :mod:`~clinrelease.face.base`: plain data shared by the stages (tracked faces, tracks, the analysis).
- :mod:`~clinrelease.face.detect`, :mod:`~clinrelease.face.track`, :mod:`~clinrelease.face.landmarks`,
  :mod:`~clinrelease.face.occlusion`: detection, tracking, dense landmarks, hands in front of a face.
- :mod:`~clinrelease.face.pipeline`: the two passes over a video (analyze, then anonymize) and the
  residual-face check.
- :mod:`~clinrelease.face.registry`: anonymizers by name (built-ins and entry-point plug-ins).
- :mod:`~clinrelease.face.swap` (with :mod:`~clinrelease.face.swap_torch`, its batched renderer),
  :mod:`~clinrelease.face.baselines`, :mod:`~clinrelease.face.learned`: the anonymizers.
- :mod:`~clinrelease.face.surrogates`, :mod:`~clinrelease.face.generator`,
  :mod:`~clinrelease.face.surrogate_choice`, :mod:`~clinrelease.face.pool_check`,
  :mod:`~clinrelease.face.pools`: donor pools, which source a profile names, and which surrogate a
  patient gets.
- :mod:`~clinrelease.face.small`, :mod:`~clinrelease.face.bystander`: per face and frame, what a small
  or turned face gets, and a bystander the profile's treatment leaves recognizable.
- :mod:`~clinrelease.face.geometry`: 2-D geometry for the mesh warps.
"""

__all__ = [
    "base", "baselines", "bystander", "detect", "generator", "geometry", "landmarks", "learned", "occlusion", "pipeline",
    "pool_check", "pools", "registry", "small", "surrogate_choice", "surrogates", "swap", "swap_torch", "track",
]  # fmt: skip

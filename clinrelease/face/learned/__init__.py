"""Learned face-swap backends: the paper's shared-encoder/two-decoder model and insightface's swapper.

Both implement :class:`clinrelease.face.base.Anonymizer` and are registered through the
``clinrelease.anonymizers`` entry-point group:

- ``faceswap`` (:func:`clinrelease.face.learned.faceswap.faceswap_anonymizer`): a model trained per
  patient with ``clinrelease swap train``. The model file is identifying data (see
  :func:`~clinrelease.face.learned.faceswap.secure_delete_model`).
- ``inswapper`` (:func:`clinrelease.face.learned.inswapper.inswapper_anonymizer`): insightface's
  one-shot swapper loaded from a site-configured folder.

Submodules import torch / onnxruntime; this package itself imports nothing heavy.
"""

"""DICOM and video input/output, and header de-identification.

- :mod:`~clinrelease.dicom.video`: video sources (DICOM video, container files) decoded lazily.
- :mod:`~clinrelease.dicom.writer`, :mod:`~clinrelease.dicom.bitstream`: writing DICOM video, and
  cleaning encoded streams before they go in.
- :mod:`~clinrelease.dicom.pixeldata`, :mod:`~clinrelease.dicom.truncation`,
  :mod:`~clinrelease.dicom.syntaxes`: reading pixel data on disk, whole-file checks, transfer syntaxes
  and SOP classes.
- :mod:`~clinrelease.dicom.deid` with :mod:`~clinrelease.dicom.annex_e`,
  :mod:`~clinrelease.dicom.deid_options`, :mod:`~clinrelease.dicom.safe_attributes` and
  :mod:`~clinrelease.dicom.keyed`: PS3.15 Annex E header de-identification, keyed and consistent.
- :mod:`~clinrelease.dicom.phi_strings`, :mod:`~clinrelease.dicom.residual`: the patient's
  identifying strings, and what the released header must no longer hold.
"""

__all__ = [
    "annex_e", "bitstream", "deid", "deid_options", "keyed", "phi_strings", "pixeldata", "residual",
    "safe_attributes", "syntaxes", "truncation", "video", "writer",
]  # fmt: skip

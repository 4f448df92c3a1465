"""A profile's ``pool`` setting as a donor source: the built-in pool, the generator or a site's folder.

The one place that knows every source, so :mod:`~clinrelease.face.surrogates` (donors and
composites) and :mod:`~clinrelease.face.generator` (generated donors, built on the former) never
import each other.
"""

from __future__ import annotations

from pathlib import Path

from clinrelease.face.generator import GeneratorPool
from clinrelease.face.surrogates import DonorPool, default_pool

__all__ = ["load_pool"]


def load_pool(source):
    """A profile's ``pool`` setting as a donor source: ``"default"`` (the built-in pool of openpeople's
    synthetic people; ``"openpeople"`` is the same), ``"generator"`` (a vetted generated face per patient, :mod:`clinrelease.face.generator`) or a
    folder of donor photos; a pool object passes through.

    Raises
    ------
    ConfigError
        As :meth:`DonorPool.load`; for the generator, when its optional packages are not installed.
    """
    if source is None or (isinstance(source, str) and source == "default"):
        return default_pool()
    if isinstance(source, str) and source == "openpeople":
        return default_pool()  # the built-in pool is openpeople's portraits now
    if isinstance(source, str) and source == "generator":
        return GeneratorPool()
    if isinstance(source, (str, Path)):
        return DonorPool.load(source)
    return source

"""Anonymizers by name: the built-ins and third-party ones from the ``clinrelease.anonymizers`` entry points."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from clinrelease.errors import ConfigError
from clinrelease.face.base import Anonymizer

#: entry-point group third parties register anonymizer factories in
ENTRY_POINT_GROUP = "clinrelease.anonymizers"


def _builtins() -> dict[str, Callable[..., Anonymizer]]:
    from clinrelease.face.baselines import BlurAnonymizer, MaskAnonymizer, PixelateAnonymizer
    from clinrelease.face.swap import SwapAnonymizer
    from clinrelease.face.textured_blur import TexturedBlurAnonymizer

    return {
        "swap": SwapAnonymizer,
        "blur": BlurAnonymizer,
        "pixelate": PixelateAnonymizer,
        "mask": MaskAnonymizer,
        "textured_blur": TexturedBlurAnonymizer,
    }


def _plugins() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_anonymizers() -> list[str]:
    """Names of every anonymizer: built-ins first, then installed plug-ins."""
    names = list(_builtins())
    return names + sorted(n for n in _plugins() if n not in names)


def get_anonymizer(name: str = "swap", **params: Any) -> Anonymizer:
    """Build the anonymizer called ``name`` with the profile's ``params``.

    Raises
    ------
    ConfigError
        When no anonymizer has that name, a parameter is not accepted, or a plug-in fails to load or
        returns something that is not an :class:`~clinrelease.face.base.Anonymizer`.
    """
    builtins = _builtins()
    if name in builtins:
        factory: Callable[..., Any] = builtins[name]
    else:
        plugin = _plugins().get(name)
        if plugin is None:
            raise ConfigError(f"unknown anonymizer {name!r}; available: {', '.join(available_anonymizers())}")
        try:
            factory = plugin.load()
        except Exception as exc:  # a broken third-party package must not crash with a traceback
            raise ConfigError(f"anonymizer plug-in {name!r} ({plugin.value}) failed to load: {exc}") from exc
    try:
        anonymizer = factory(**params)
    except TypeError as exc:
        raise ConfigError(f"anonymizer {name!r} does not accept these parameters: {exc}") from exc
    if not isinstance(anonymizer, Anonymizer):
        raise ConfigError(f"anonymizer {name!r} did not return an object with name, prepare and anonymize_frame")
    return anonymizer

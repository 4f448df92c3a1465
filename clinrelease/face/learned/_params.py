"""Checking a profile's anonymizer parameters against a backend's constructor."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from clinrelease.errors import ConfigError


def check_params(cls: type, params: dict[str, Any], required: Iterable[str], what: str) -> None:
    """Raise :class:`ConfigError` for a missing required or an unknown parameter of ``cls(**params)``."""
    accepted = [name for name in inspect.signature(cls.__init__).parameters if name != "self"]
    missing = [name for name in required if name not in params]
    if missing:
        raise ConfigError(f"the {what} anonymizer needs {', '.join(missing)} (accepted: {', '.join(accepted)})")
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(f"the {what} anonymizer has no parameter {', '.join(unknown)} (accepted: {', '.join(accepted)})")

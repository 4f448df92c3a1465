"""Key derivation: every keyed value in a release comes from one release key by HMAC-SHA256.

A *label* names the use ("uid", "patient-id", "date-shift", "surrogate", "commitment", ...), so
that values derived for one use can never be confused with another's. Same key and input, same
output; a different key gives unrelated outputs.
"""

from __future__ import annotations

import hashlib
import hmac

#: length in bytes of a release key
KEY_BYTES = 32


def derive(key: bytes, label: str, data: bytes | str = b"") -> bytes:
    """Return HMAC-SHA256(key, label || 0x00 || data): 32 bytes bound to ``label`` and ``data``."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hmac.new(key, label.encode("ascii") + b"\x00" + data, hashlib.sha256).digest()


def derive_int(key: bytes, label: str, data: bytes | str = b"") -> int:
    """The derived 256-bit value as a non-negative integer (big-endian)."""
    return int.from_bytes(derive(key, label, data), "big")


def derive_hex(key: bytes, label: str, data: bytes | str = b"", length: int = 64) -> str:
    """The derived value as lowercase hex, cut to ``length`` characters."""
    return derive(key, label, data).hex()[:length]

"""Shamir secret sharing over GF(2^8), byte by byte, for M-of-N custodian escrow.

Each byte of the secret is the constant term of its own random polynomial of degree ``m - 1``
over GF(256) (the AES field, reduction polynomial x^8 + x^4 + x^3 + x + 1); share ``x`` holds the
polynomials' values at ``x`` (1..255). Any ``m`` shares give the secret by Lagrange interpolation
at 0; fewer reveal nothing about it. Shares carry no integrity: the escrow layer authenticates the
recombined key with AES-GCM, so a wrong or corrupted share shows up as a failed decryption.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# log/antilog tables for GF(256) with generator 3
_EXP = [0] * 512
_LOG = [0] * 256
_value = 1
for _i in range(255):
    _EXP[_i] = _value
    _LOG[_value] = _i
    _value ^= (_value << 1) ^ (0x11B if _value & 0x80 else 0)  # multiply by 3
    _value &= 0xFF
for _i in range(255, 512):
    _EXP[_i] = _EXP[_i - 255]


def gf_mul(a: int, b: int) -> int:
    """Product of two GF(256) elements."""
    if a == 0 or b == 0:
        return 0
    return _EXP[_LOG[a] + _LOG[b]]


def gf_div(a: int, b: int) -> int:
    """Quotient ``a / b`` of two GF(256) elements (``b`` non-zero)."""
    if b == 0:
        raise ZeroDivisionError("division by zero in GF(256)")
    if a == 0:
        return 0
    return _EXP[(_LOG[a] - _LOG[b]) % 255]


@dataclass(frozen=True)
class Share:
    """One share: the evaluation point ``x`` (1..255) and one value byte per secret byte."""

    x: int
    value: bytes

    def to_bytes(self) -> bytes:
        """``x`` as one byte followed by the values."""
        return bytes([self.x]) + self.value

    @classmethod
    def from_bytes(cls, data: bytes) -> Share:
        """Inverse of :meth:`to_bytes`."""
        if len(data) < 2 or data[0] == 0:
            raise ValueError("not a Shamir share")
        return cls(data[0], bytes(data[1:]))


def split(secret: bytes, m: int, n: int) -> list[Share]:
    """Split ``secret`` into ``n`` shares, any ``m`` of which recover it.

    Parameters
    ----------
    secret:
        Bytes to share (e.g. a 32-byte data key).
    m:
        Threshold, ``1 <= m <= n``.
    n:
        Number of shares, at most 255.
    """
    if not 1 <= m <= n <= 255:
        raise ValueError(f"need 1 <= m <= n <= 255, got m={m}, n={n}")
    # coefficients[k][i]: coefficient of x^k for secret byte i; k = 0 is the secret itself
    coefficients = [secret] + [os.urandom(len(secret)) for _ in range(m - 1)]
    shares = []
    for x in range(1, n + 1):
        values = bytearray(len(secret))
        for i in range(len(secret)):
            acc = 0
            for k in range(m - 1, -1, -1):  # Horner's rule
                acc = gf_mul(acc, x) ^ coefficients[k][i]
            values[i] = acc
        shares.append(Share(x, bytes(values)))
    return shares


def combine(shares: list[Share]) -> bytes:
    """Recover the secret from at least the threshold number of distinct shares."""
    if not shares:
        raise ValueError("no shares given")
    xs = [share.x for share in shares]
    if len(set(xs)) != len(xs):
        raise ValueError("duplicate shares given")
    length = len(shares[0].value)
    if any(len(share.value) != length for share in shares):
        raise ValueError("shares of different lengths")
    # Lagrange basis at 0: l_j(0) = prod_{k != j} x_k / (x_k - x_j); minus is xor in GF(2^8)
    weights = []
    for j, xj in enumerate(xs):
        weight = 1
        for k, xk in enumerate(xs):
            if k != j:
                weight = gf_mul(weight, gf_div(xk, xk ^ xj))
        weights.append(weight)
    secret = bytearray(length)
    for weight, share in zip(weights, shares):
        for i, byte in enumerate(share.value):
            secret[i] ^= gf_mul(weight, byte)
    return bytes(secret)

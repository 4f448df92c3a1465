"""Shamir secret sharing over GF(256)."""

from __future__ import annotations

import itertools
import os

import pytest

from clinrelease.crypto.shamir import Share, combine, gf_div, gf_mul, split


def test_field_arithmetic() -> None:
    assert gf_mul(0x53, 0xCA) == 0x01  # the AES field's textbook inverse pair (FIPS-197 §4.2)
    assert gf_mul(0x57, 0x83) == 0xC1  # FIPS-197 §4.2 example
    for a in range(1, 256):
        assert gf_mul(a, gf_div(1, a)) == 1
        assert gf_div(gf_mul(a, 0x1D), 0x1D) == a
    with pytest.raises(ZeroDivisionError):
        gf_div(5, 0)


@pytest.mark.parametrize(("m", "n"), [(1, 1), (1, 3), (2, 3), (3, 5), (5, 5)])
def test_any_m_shares_recover_the_secret(m: int, n: int) -> None:
    secret = os.urandom(32)
    shares = split(secret, m, n)
    assert len(shares) == n and sorted(s.x for s in shares) == list(range(1, n + 1))
    for subset in itertools.combinations(shares, m):
        assert combine(list(subset)) == secret
    for subset in itertools.combinations(shares, n):  # more than m shares also work
        assert combine(list(subset)) == secret


def test_fewer_than_m_shares_do_not_recover_it() -> None:
    secret = os.urandom(32)
    shares = split(secret, 3, 5)
    for subset in itertools.combinations(shares, 2):
        assert combine(list(subset)) != secret
    # with m = 2 one share alone is uniformly random, not the secret
    assert all(s.value != secret for s in split(secret, 2, 4))


def test_share_encoding_and_bad_input() -> None:
    share = split(b"key", 2, 2)[0]
    assert Share.from_bytes(share.to_bytes()) == share
    with pytest.raises(ValueError):
        Share.from_bytes(b"\x00abc")
    with pytest.raises(ValueError):
        split(b"k", 3, 2)
    with pytest.raises(ValueError):
        combine([share, share])

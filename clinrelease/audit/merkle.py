"""A Merkle tree over the released files, hashed as in RFC 6962 (Certificate Transparency).

Leaves are the released files sorted by their relative path (POSIX, ``/``-separated, compared as
UTF-8 bytes). For a file with relative path ``p`` and SHA-256 digest ``d`` (32 raw bytes)::

    leaf_data   = UTF-8(p) || 0x00 || d
    leaf hash   = SHA-256(0x00 || leaf_data)
    node hash   = SHA-256(0x01 || left || right)
    root(empty) = SHA-256("")

and the tree over ``n`` leaves splits at the largest power of two below ``n`` (RFC 6962 §2.1).
The 0x00/0x01 prefixes keep a leaf from ever being taken for a node (second-preimage safety).
Inclusion proofs let a researcher show one file belongs to a signed release without the rest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence


def leaf_hash(relpath: str, sha256_hex: str) -> bytes:
    """RFC 6962 leaf hash of one released file."""
    if "\x00" in relpath:
        raise ValueError("a path cannot contain NUL")
    return hashlib.sha256(b"\x00" + relpath.encode("utf-8") + b"\x00" + bytes.fromhex(sha256_hex)).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _root(leaves: Sequence[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return _node(_root(leaves[:k]), _root(leaves[k:]))


def _sorted_leaves(files: Iterable[tuple[str, str]]) -> list[tuple[str, bytes]]:
    items = sorted(files, key=lambda f: f[0].encode("utf-8"))
    paths = [p for p, _ in items]
    if len(set(paths)) != len(paths):
        raise ValueError("the same path is listed twice")
    return [(p, leaf_hash(p, d)) for p, d in items]


def merkle_root(files: Iterable[tuple[str, str]]) -> str:
    """Root (hex) over ``(relative path, sha256 hex)`` pairs, in any order (they are sorted here)."""
    return _root([h for _, h in _sorted_leaves(files)]).hex()


def inclusion_proof(files: Iterable[tuple[str, str]], relpath: str) -> tuple[int, int, list[str]]:
    """RFC 6962 audit path of ``relpath``: ``(leaf index, tree size, sibling hashes hex)``."""
    leaves = _sorted_leaves(files)
    index = next((i for i, (p, _) in enumerate(leaves) if p == relpath), None)
    if index is None:
        raise KeyError(relpath)
    hashes = [h for _, h in leaves]

    def path(m: int, sub: Sequence[bytes]) -> list[bytes]:
        if len(sub) <= 1:
            return []
        k = _split(len(sub))
        if m < k:
            return path(m, sub[:k]) + [_root(sub[k:])]
        return path(m - k, sub[k:]) + [_root(sub[:k])]

    return index, len(hashes), [h.hex() for h in path(index, hashes)]


def verify_inclusion(relpath: str, sha256_hex: str, index: int, size: int, proof: Sequence[str], root_hex: str) -> bool:
    """Check an inclusion proof (RFC 9162 §2.1.3.2) against a Merkle root."""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    result = leaf_hash(relpath, sha256_hex)
    for sibling_hex in proof:
        sibling = bytes.fromhex(sibling_hex)
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            result = _node(sibling, result)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            result = _node(result, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and result.hex() == root_hex

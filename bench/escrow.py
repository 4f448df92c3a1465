"""Escrow throughput and memory: chunked AES-256-GCM escrow + reversal vs plain peers.

Peers in the same run: `sha256` of the file (the I/O + hashing floor) and a one-shot AESGCM
over the whole file read into memory (what the chunked stream replaces). Prints medians and
ratios. Usage: python bench/escrow.py [--mib 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from clinrelease.crypto.escrow import Vault, reverse
from clinrelease.crypto.keys import create_custodian


def _median(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        original = t / "original.bin"
        with open(original, "wb") as fh:
            for _ in range(args.mib):
                fh.write(os.urandom(1 << 20))
        custodian = create_custodian("bench", t / "cust", "bench passphrase 42")
        released = t / "released.bin"
        released.write_bytes(b"released")
        digest = hashlib.sha256(released.read_bytes()).hexdigest()
        counter = iter(range(10**6))

        def escrow() -> None:
            with Vault(t / "vault").open_release(f"r{next(counter)}", [custodian.public_path]) as session:
                session.escrow(original, "2.25.1", digest)

        def hash_only() -> None:
            h = hashlib.sha256()
            with open(original, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)

        def one_shot() -> None:
            AESGCM(os.urandom(32)).encrypt(os.urandom(12), original.read_bytes(), b"")

        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t_escrow = _median(escrow, args.repeats)
        rss_escrow = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # keep one release only so that reversal finds a single entry
        for extra in sorted((t / "vault").iterdir())[1:]:
            import shutil

            shutil.rmtree(extra)

        def reversal() -> None:
            out = t / "back.bin"
            out.unlink(missing_ok=True)
            reverse(released, t / "vault", custodian.private_path, "bench passphrase 42", out)

        t_reverse = _median(reversal, args.repeats)
        t_hash = _median(hash_only, args.repeats)
        rss_chunked = max(rss_escrow, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        t_oneshot = _median(one_shot, args.repeats)
        rss_oneshot = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        mib = args.mib
        print(f"file: {mib} MiB, repeats: {args.repeats} (medians)")
        print(f"{'operation':<34}{'s':>8}{'MiB/s':>9}{'vs sha256':>11}")
        for name, sec in (
            ("sha256 of the file (floor)", t_hash),
            ("escrow (chunked AES-GCM + sha256)", t_escrow),
            ("reverse (decrypt + sha256 + fsync)", t_reverse),
            ("one-shot AESGCM in memory (peer)", t_oneshot),
        ):
            print(f"{name:<34}{sec:>8.3f}{mib / sec:>9.0f}{sec / t_hash:>11.2f}")
        print(f"peak RSS: start {rss_before / 1024:.0f} MiB, after escrow+reverse {rss_chunked / 1024:.0f} MiB, "
              f"after one-shot {rss_oneshot / 1024:.0f} MiB")


if __name__ == "__main__":
    main()

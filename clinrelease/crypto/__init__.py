"""crypto stage: keys, keyed values, digests and escrow.

- :mod:`~clinrelease.crypto.kdf`: every keyed value of a release derived from one release key (HMAC-SHA256).
- :mod:`~clinrelease.crypto.keys`: release keys, signing keys and custodian key pairs on disk.
- :mod:`~clinrelease.crypto.protect`: passphrase protection of custodian private keys.
- :mod:`~clinrelease.crypto.shamir`: M-of-N secret sharing for custodian escrow.
- :mod:`~clinrelease.crypto.escrow`: originals encrypted to custodians, outside the release, and reversal.
- :mod:`~clinrelease.crypto.digest`: file digests read in blocks.

Nothing here imports the audit log or the release: callers pass what they need.
"""

__all__ = ["digest", "escrow", "kdf", "keys", "protect", "shamir"]

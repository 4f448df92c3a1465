"""audit stage: the signed, tamper-evident account of a release.

- :mod:`~clinrelease.audit.records`: record kinds, canonical JSON (RFC 8785), digests, recorded checks.
- :mod:`~clinrelease.audit.chain`: the hash-chained log (the site's internal copy, the released copy).
- :mod:`~clinrelease.audit.merkle`: a Merkle root over the released files (RFC 6962 hashing).
- :mod:`~clinrelease.audit.manifest`: BagIt-style manifests (``sha256sum -c`` compatible).
- :mod:`~clinrelease.audit.dsse`: DSSE envelopes signed with Ed25519 around in-toto statements.
- :mod:`~clinrelease.audit.finalize`: closing a release (last record, statement, manifests).
- :mod:`~clinrelease.audit.verify`: ``clinrelease audit verify``: every check an auditor reruns.
- :mod:`~clinrelease.audit.identity`: a release's nonce and id.
- :mod:`~clinrelease.audit.export`: the DICOM Data Export audit message for hospital repositories.

Dependencies point down: records <- chain <- finalize <- verify; nothing here imports the release.
"""

__all__ = ["chain", "dsse", "export", "finalize", "identity", "manifest", "merkle", "records", "verify"]

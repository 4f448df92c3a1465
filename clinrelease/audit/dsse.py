"""DSSE envelopes (Dead Simple Signing Envelope v1) signed with Ed25519, carrying in-toto statements.

The signature covers the *pre-authentication encoding* (PAE) of the payload::

    PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

with ``LEN`` the decimal byte length. The envelope is written as canonical JSON (one line), so
``sed``/``base64`` alone can take it apart (see ``audit/AUDITORS_GUIDE.md``). The key id is the
SHA-256 of the signer's DER public key (:func:`clinrelease.crypto.keys.key_id`).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from clinrelease.crypto.keys import key_id

#: payload type of an in-toto statement
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"


class EnvelopeError(ValueError):
    """An envelope is malformed or its signature does not verify; the message says which."""


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding of ``payload``."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def sign_envelope(payload: bytes, payload_type: str, key: ed25519.Ed25519PrivateKey) -> dict[str, Any]:
    """A DSSE envelope of ``payload`` with one Ed25519 signature."""
    signature = key.sign(pae(payload_type, payload))
    return {
        "payload": base64.b64encode(payload).decode("ascii"),
        "payloadType": payload_type,
        "signatures": [{"keyid": key_id(key.public_key()), "sig": base64.b64encode(signature).decode("ascii")}],
    }


def envelope_payload(envelope: Mapping[str, Any]) -> tuple[str, bytes]:
    """``(payloadType, payload bytes)`` of an envelope, unverified."""
    try:
        return str(envelope["payloadType"]), base64.b64decode(envelope["payload"], validate=True)
    except (KeyError, TypeError, ValueError) as exc:
        raise EnvelopeError(f"not a DSSE envelope ({exc})") from None


def verify_envelope(envelope: Mapping[str, Any], public: ed25519.Ed25519PublicKey) -> bytes:
    """Return the payload when a signature by ``public`` verifies over its PAE.

    Raises
    ------
    EnvelopeError
        Malformed envelope, no signature with this key's id, or a signature that does not verify.
    """
    payload_type, payload = envelope_payload(envelope)
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise EnvelopeError("the envelope carries no signature")
    expected = key_id(public)
    mine = [s for s in signatures if isinstance(s, Mapping) and s.get("keyid") == expected]
    if not mine:
        ids = ", ".join(str(s.get("keyid"))[:16] for s in signatures if isinstance(s, Mapping))
        raise EnvelopeError(f"the statement is signed by another key (key id {ids}), not by {expected[:16]}")
    message = pae(payload_type, payload)
    for signature in mine:
        try:
            public.verify(base64.b64decode(str(signature.get("sig")), validate=True), message)
            return payload
        except (InvalidSignature, ValueError):
            continue
    raise EnvelopeError("the statement's signature does not verify: the statement or its signature was changed")

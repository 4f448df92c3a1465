"""Audit records: their canonical bytes, their digests, and recorded verification checks.

A record is a flat JSON object. Every record has ``type``, ``seq`` (0, 1, 2, ...), ``prev``
(SHA-256 hex of the previous record's canonical bytes; 64 zeros for the first) and ``time`` (UTC,
ISO 8601). Its canonical bytes are RFC 8785 (JSON Canonicalization Scheme) UTF-8; one record is
one line of a ``.jsonl`` log, written in exactly those bytes, so ``sha256(line)`` is its digest.

Verification figures are recorded as *checks* so that an auditor can recompute every verdict::

    {"name": "dlib_distance_min", "value": 0.71, "op": ">", "threshold": 0.6, "passed": true}

The record types and their fields are specified in ``audit/record.schema.json`` and explained in
``audit/AUDITORS_GUIDE.md``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import operator
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import PurePath
from typing import Any

import rfc8785

#: ``prev`` of the first record of a log
GENESIS = "0" * 64
RELEASE_START = "release_start"
ITEM = "item"
ARTIFACT = "artifact"
RELEASE_END = "release_end"
REVERSAL = "reversal"
RECORD_TYPES = (RELEASE_START, ITEM, ARTIFACT, RELEASE_END, REVERSAL)
#: keys every record carries, set by the log, never by the caller
RESERVED = ("type", "seq", "prev", "time", "sig")
VERDICTS = ("released", "quarantined")

#: comparison operators a check may use
OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


def utc_now() -> str:
    """The current UTC time as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_plain(value: Any) -> Any:
    """Make ``value`` JSON-plain: numpy scalars/arrays, paths, dataclasses, tuples, sets.

    Raises
    ------
    ValueError
        For NaN or infinite floats, which JSON (and so the audit log) cannot hold.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_plain(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(to_plain(v) for v in value)
    if isinstance(value, PurePath):
        return value.as_posix()
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"audit records cannot hold the non-finite number {value}")
        return value
    if hasattr(value, "tolist"):  # numpy scalar or array
        return to_plain(value.tolist())
    raise TypeError(f"cannot put a {type(value).__name__} into an audit record")


def canonical_bytes(record: Mapping[str, Any]) -> bytes:
    """RFC 8785 canonical UTF-8 bytes of a JSON-plain object."""
    return rfc8785.dumps(to_plain(record))


def record_digest(record: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a record's canonical bytes: what the next record's ``prev`` holds."""
    return canonical_digest(canonical_bytes(record))


def canonical_digest(canonical: bytes) -> str:
    """:func:`record_digest` of the record whose :func:`canonical_bytes` are ``canonical``."""
    return hashlib.sha256(canonical).hexdigest()


def make_check(name: str, value: float | int | bool | str, op: str, threshold: float | int | bool | str) -> dict[str, Any]:
    """A recorded check: ``value op threshold``, with ``passed`` computed here.

    Parameters
    ----------
    name:
        What was measured, e.g. ``"dlib_distance_min"``, ``"body_ap"``, ``"ocr_text_boxes"``.
    value:
        The measured figure.
    op:
        One of ``<``, ``<=``, ``>``, ``>=``, ``==``, ``!=``: the condition for passing.
    threshold:
        The profile's threshold.
    """
    if op not in OPS:
        raise ValueError(f"unknown check operator {op!r}; use one of {', '.join(OPS)}")
    value, threshold = to_plain(value), to_plain(threshold)
    return {"name": name, "value": value, "op": op, "threshold": threshold, "passed": bool(OPS[op](value, threshold))}


def recheck(check: Mapping[str, Any]) -> bool | None:
    """Recompute a recorded check's outcome; ``None`` when it is malformed."""
    op = OPS.get(str(check.get("op")))
    if op is None or "value" not in check or "threshold" not in check:
        return None
    try:
        return bool(op(check["value"], check["threshold"]))
    except TypeError:
        return None

"""Keyed, consistent replacement values derived from the release key.

Every value here is HMAC-SHA256 of the release key with its own label
(:func:`clinrelease.crypto.kdf.derive`), so the same input under the same key always gives the same
output across a whole release (UID references keep pointing at the right objects, a patient's
videos and clinical rows share one pseudonym and one date shift), while a different key gives
unrelated values. DICOM headers and clinical tables both use these functions.
"""

from __future__ import annotations

import base64
import datetime as _dt

from clinrelease.crypto.kdf import derive, derive_int

#: labels, one per use (never reuse one for another purpose)
LABEL_UID = "deid-uid"
LABEL_PATIENT = "patient-id"
LABEL_DATE_SHIFT = "date-shift"

#: date shifts are whole days in [-MAX_SHIFT_DAYS, -1]: always into the past, never zero
MAX_SHIFT_DAYS = 365

#: length of the base32 part of a pseudonym (60 bits)
PSEUDONYM_CHARS = 12


def pseudonym(key: bytes, patient_id: str) -> str:
    """The release pseudonym of a patient: ``"P"`` + 12 base32 characters.

    Parameters
    ----------
    key:
        The release key.
    patient_id:
        The original patient identifier (DICOM Patient ID or the clinical table's ID column).

    Returns
    -------
    str
        An upper-case identifier valid as DICOM LO and PN, e.g. ``"PK3J7Q2M4XA5B"``.
    """
    digest = derive(key, LABEL_PATIENT, patient_id.strip())
    return "P" + base64.b32encode(digest).decode("ascii")[:PSEUDONYM_CHARS]


def date_shift_days(key: bytes, patient_id: str) -> int:
    """The per-patient date shift in whole days, in ``[-MAX_SHIFT_DAYS, -1]``.

    Parameters
    ----------
    key:
        The release key.
    patient_id:
        The original patient identifier.
    """
    return -1 - derive_int(key, LABEL_DATE_SHIFT, patient_id.strip()) % MAX_SHIFT_DAYS


def keyed_uid(key: bytes, uid: str) -> str:
    """Replace a UID by ``2.25.<128-bit integer>`` derived from the key and the UID.

    The same UID always maps to the same replacement under one key, so references follow.
    """
    return "2.25." + str(derive_int(key, LABEL_UID, uid.strip().rstrip("\x00")) >> 128)


def shift_date(value: str, days: int) -> str | None:
    """Shift a DA value ``YYYYMMDD`` by ``days``; None if it is not a full date."""
    value = value.strip()
    if len(value) != 8 or not value.isdigit():
        return None
    try:
        day = _dt.date(int(value[:4]), int(value[4:6]), int(value[6:8]))
    except ValueError:
        return None
    return (day + _dt.timedelta(days=days)).strftime("%Y%m%d")


def shift_datetime(value: str, days: int) -> str | None:
    """Shift the date part of a DT value by ``days`` (time and offset kept); None if unparseable."""
    value = value.strip()
    if len(value) < 8:
        return None
    shifted = shift_date(value[:8], days)
    return None if shifted is None else shifted + value[8:]


def shift_iso_date(value: str, days: int) -> str | None:
    """Shift an ISO ``YYYY-MM-DD`` (optionally followed by a time) date; None if unparseable.

    Used by clinical tables, which write dates the ISO way.
    """
    value = value.strip()
    try:
        day = _dt.date.fromisoformat(value[:10])
    except ValueError:
        return None
    return (day + _dt.timedelta(days=days)).isoformat() + value[10:]

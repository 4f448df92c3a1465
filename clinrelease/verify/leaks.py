"""PHI leak scan: none of the patient's identifying strings may appear anywhere in an output's bytes.

The scan reads the raw file (header, pixel-data bitstream, container metadata, padding) in chunks,
so multi-gigabyte files need constant memory. Each identifying string is expanded into the forms it
is commonly written in (:func:`phi_variants`) and searched case-insensitively in UTF-8/Latin-1 and
UTF-16 (LE and BE). Encoders' own text (x264's settings SEI, libav muxer tags) is flagged too: it
reveals the toolchain and proves that a stream was not cleaned.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from clinrelease.errors import InputError

#: encoder and muxer text that must not survive into a released stream
ENCODER_MARKERS = ("x264 - core", "x265 (build", "options: ", "Lavf", "Lavc", "libx264", "HandBrake")

#: date formats an input date is recognised in
_DATE_INPUT = ("%Y%m%d", "%Y-%m-%d", "%Y/%m/%d", "%d/%m/%Y", "%d.%m.%Y", "%d %b %Y", "%d %B %Y", "%b %d, %Y", "%B %d, %Y")

#: shortest single name component searched on its own (shorter ones collide with random bytes)
MIN_NAME_PART = 4
#: shortest ID searched (shorter ones collide with random bytes)
MIN_ID = 4

_CONTEXT = 24


@dataclass(frozen=True)
class Leak:
    """One occurrence of an identifying string (or encoder text) in a file."""

    #: the PHI value as given (or the encoder marker)
    string: str
    #: the written form that matched, e.g. ``12/03/1950`` for ``19500312``
    variant: str
    offset: int
    #: bytes around the hit, printable ASCII kept and the rest shown as ``.``
    context: str
    encoding: str
    kind: str  # "name", "date", "id", "text" or "encoder"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return asdict(self)


def parse_date(value: str) -> date | None:
    """``value`` as a date when it is written in one of the common formats, else None."""
    text = value.strip()
    for fmt in _DATE_INPUT:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def date_variants(d: date) -> list[str]:
    """Every common written form of a date (DICOM DA, ISO, European, US, dotted, spelled months)."""
    y, m, dd = d.year, d.month, d.day
    mon, month = d.strftime("%b"), d.strftime("%B")
    forms = {
        f"{y:04d}{m:02d}{dd:02d}",
        f"{y:04d}-{m:02d}-{dd:02d}",
        f"{y:04d}/{m:02d}/{dd:02d}",
        f"{y:04d}.{m:02d}.{dd:02d}",
        f"{dd:02d}/{m:02d}/{y:04d}",
        f"{m:02d}/{dd:02d}/{y:04d}",
        f"{dd}/{m}/{y}",
        f"{m}/{dd}/{y}",
        f"{dd:02d}.{m:02d}.{y:04d}",
        f"{dd}.{m}.{y}",
        f"{dd:02d}-{m:02d}-{y:04d}",
        f"{m:02d}-{dd:02d}-{y:04d}",
        f"{dd} {mon} {y}",
        f"{dd:02d} {mon} {y}",
        f"{dd} {month} {y}",
        f"{dd}-{mon}-{y}",
        f"{mon} {dd}, {y}",
        f"{month} {dd}, {y}",
        f"{dd:02d}{mon}{y}",
    }
    return sorted(forms)


def name_variants(name: str) -> list[str]:
    """Written forms of a person's name: DICOM PN (``DOE^JOHN``), ``John Doe``, ``Doe, John``, parts."""
    parts = [p for p in re.split(r"[\^,\s]+", name.strip()) if p]
    if not parts:
        return []
    forms = {name.strip().rstrip("^"), " ".join(parts), "^".join(parts), " ".join(reversed(parts)), "^".join(reversed(parts))}
    if len(parts) >= 2:
        family, given = parts[0], parts[1]
        forms |= {f"{family}, {given}", f"{given} {family}", f"{family},{given}", f"{given[0]}. {family}", f"{family}^{given[0]}"}
    forms |= {p for p in parts if len(p) >= MIN_NAME_PART}
    return sorted(f for f in forms if f)


def id_variants(value: str) -> list[str]:
    """Written forms of an identifier: as given, without separators, with ``-``, space or ``.`` between groups."""
    groups = [g for g in re.split(r"[\s\-./_]+", value.strip()) if g]
    forms = {value.strip(), "".join(groups), "-".join(groups), " ".join(groups), ".".join(groups)}
    return sorted(f for f in forms if len(f) >= MIN_ID)


def phi_variants(phi_strings: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Map every written form to ``(original string, kind)``.

    Each string is classified: a date when it parses as one; free text (an address) when it holds
    digits and at least two words; an identifier when it holds a digit; otherwise a name.
    """
    out: dict[str, tuple[str, str]] = {}
    for raw in phi_strings:
        value = str(raw).strip()
        if not value:
            continue
        d = parse_date(value)
        if d is not None:
            forms, kind = date_variants(d), "date"
        elif any(ch.isdigit() for ch in value) and sum(w.isalpha() for w in value.split()) >= 2:
            forms, kind = [value, " ".join(value.split())], "text"  # an address or free text
        elif any(ch.isdigit() for ch in value):
            forms, kind = id_variants(value) + [value], "id"
        else:
            forms, kind = name_variants(value), "name"
        for form in forms:
            out.setdefault(form, (value, kind))
    return out


def _pattern(forms: Iterable[str], encoding: str) -> re.Pattern[bytes]:
    encoded = sorted({f.encode(encoding, errors="ignore") for f in forms}, key=len, reverse=True)
    return re.compile(b"|".join(re.escape(e) for e in encoded if e), re.IGNORECASE)


def _printable(data: bytes) -> str:
    return "".join(chr(b) if 32 <= b < 127 else "." for b in data)


def scan_bytes(
    path: str | Path,
    phi_strings: Iterable[str],
    encoder_text: bool = True,
    chunk_size: int = 1 << 22,
) -> list[Leak]:
    """Every occurrence of the patient's identifying strings (and encoder text) in a file's bytes.

    Parameters
    ----------
    path:
        The output file (DICOM, MP4, CSV, anything).
    phi_strings:
        Identifying values from the input: names, IDs, dates, addresses.
    encoder_text:
        Also flag :data:`ENCODER_MARKERS` (case-sensitive, UTF-8 only).
    chunk_size:
        Bytes read at a time; matches across chunk borders are found through an overlap.

    Returns
    -------
    list[Leak]
        One entry per occurrence, in file order.

    Raises
    ------
    InputError
        When the file cannot be read.
    """
    path = Path(path)
    forms = phi_variants(phi_strings)
    patterns: list[tuple[re.Pattern[bytes], str, dict[bytes, tuple[str, str, str]]]] = []
    if forms:
        for enc in ("utf-8", "utf-16-le", "utf-16-be"):
            lookup = {f.encode(enc).lower(): (f, *forms[f]) for f in forms}
            patterns.append((_pattern(forms, enc), enc, lookup))
    if encoder_text:
        lookup = {m.encode().lower(): (m, m, "encoder") for m in ENCODER_MARKERS}
        patterns.append((re.compile(b"|".join(re.escape(m.encode()) for m in ENCODER_MARKERS)), "utf-8", lookup))
    if not patterns:
        return []
    longest = max(len(k) for _, _, lookup in patterns for k in lookup)
    overlap = max(longest - 1, _CONTEXT)
    hits: list[tuple[int, int, Leak]] = []
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise InputError(f"cannot read the file for the PHI leak scan: {exc.strerror}", path) from exc
    with fh:
        tail = b""
        base = 0  # file offset of buf[0]
        while True:
            chunk = fh.read(chunk_size)
            buf = tail + chunk
            final = not chunk
            # matches starting in the last `overlap` bytes wait for the next round, unless at the end
            limit = len(buf) if final else max(len(buf) - overlap, 0)
            for pattern, enc, lookup in patterns:
                for m in pattern.finditer(buf):
                    if m.start() >= limit:
                        continue
                    variant, original, kind = lookup.get(m.group().lower(), (m.group().decode(enc, "replace"), "?", "?"))
                    context = buf[max(0, m.start() - _CONTEXT) : m.end() + _CONTEXT]
                    leak = Leak(original, variant, base + m.start(), _printable(context), enc, kind)
                    hits.append((base + m.start(), base + m.end(), leak))
            if final:
                break
            tail = buf[limit:]
            base += limit
    return _without_overlaps(hits)


def _without_overlaps(hits: list[tuple[int, int, Leak]]) -> list[Leak]:
    # one string read in another encoding (UTF-16-LE seen shifted as -BE) is still one leak
    leaks: list[Leak] = []
    end = -1
    for start, stop, leak in sorted(hits, key=lambda h: (h[0], -(h[1] - h[0]))):
        if start >= end:
            leaks.append(leak)
            end = stop
        else:
            end = max(end, stop)
    return leaks

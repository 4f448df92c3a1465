"""PHI leak scan: none of the patient's identifying strings may appear anywhere in an output's bytes.

The scan reads the raw file (header, pixel-data bitstream, container metadata, padding) in chunks,
so multi-gigabyte files need constant memory. Each identifying string is expanded into the forms it
is commonly written in (:func:`phi_variants`) and searched case-insensitively in UTF-8/Latin-1 and
UTF-16 (LE and BE). Encoders' own text (x264's settings SEI, libav muxer tags) is flagged too: it
reveals the toolchain and proves that a stream was not cleaned.

A name matches as a name: a single-word name form (``MARY``) only where no letter touches it, so
the patient MARY is not found inside the defined term PRIMARY, and a single word of the DICOM
standard's own vocabulary (:data:`DICOM_VOCABULARY`: defined terms such as ``ORIGINAL`` or
``MONOCHROME2``, one-word keywords such as ``Modality``) is never searched on its own; the patient's
whole name still is. :func:`scan_text` applies the same scan to released text (report, summary,
audit records, clinical tables), where identifiers match on token boundaries too.
"""

from __future__ import annotations

import bisect
import io
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

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

#: defined terms (CS values) that DICOM headers carry as values; a one-word name equal to one of
#: them is searched only as part of the whole name (the term is in every such header)
DEFINED_TERMS = frozenset(
    """
    ORIGINAL DERIVED PRIMARY SECONDARY AXIAL LOCALIZER OTHER VOLUME PROJECTION REFORMATTED MPR
    MIP MINIP SCREEN SAVE MONOCHROME1 MONOCHROME2 RGB PALETTE COLOR YBR_FULL YBR_FULL_422
    YBR_PARTIAL_420 YBR_ICT YBR_RCT IDENTITY INVERSE YES NO NONE UNKNOWN MALE FEMALE HELICAL
    SPIRAL STANDARD SHARP SMOOTH SOFT BONE LUNG DETAIL NORMAL CONTRAST STATIC DYNAMIC GATED WHOLE
    BODY HEAD BRAIN NECK CHEST ABDOMEN PELVIS SPINE KNEE HAND FOOT ARM LEG HEART LIVER KIDNEY
    RENAL BREAST LEFT RIGHT BOTH ANTERIOR POSTERIOR LATERAL MEDIAL ISOTROPIC LINEAR LOG
    HOUNSFIELD HU UNSPECIFIED WORKSTATION DIGITIZED SYNTHETIC SCANNED VIDEO PHOTO PHOTOGRAPHIC
    REALWORLD FULL PARTIAL PLANAR ENDOSCOPY MICROSCOPY ULTRASOUND DOPPLER BMODE MMODE FILTERED
    BACKPROJECTION ITERATIVE RECON SCOUT TOPOGRAM SURVEY ROUTINE EMERGENCY ELECTIVE PORTABLE
    """.split()
)


def _keyword_words() -> frozenset[str]:
    """One-word DICOM keywords (``Modality``, ``Manufacturer``), upper case."""
    from pydicom.datadict import DicomDictionary

    return frozenset(entry[4].upper() for entry in DicomDictionary.values() if entry[4] and re.fullmatch(r"[A-Z][a-z]+", entry[4]))


#: the DICOM standard's own vocabulary: a single name word equal to one of these is no leak alone
DICOM_VOCABULARY = DEFINED_TERMS | _keyword_words()


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
    #: where the value came from: its attribute (``PatientName``), metadata column or container tag; "" unknown
    attribute: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data."""
        return asdict(self)


@lru_cache(maxsize=4096)
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
    return sorted(f for f in forms if f and not _too_common_alone(f))


def _too_common_alone(form: str) -> bool:
    """A one-word form of the standard's vocabulary, or shorter than :data:`MIN_NAME_PART`
    (``NEW``, ``MAY``: words of any text), is searched only inside the whole name."""
    return _is_single_word(form) and (form.upper() in DICOM_VOCABULARY or len(form) < MIN_NAME_PART)


def _is_single_word(form: str) -> bool:
    return re.fullmatch(r"\w+", form) is not None


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
        forms, kind = _variants_of(value)
        for form in forms:
            out.setdefault(form, (value, kind))
    return out


@lru_cache(maxsize=4096)
def _variants_of(value: str) -> tuple[tuple[str, ...], str]:
    """The written forms of one identifying string and its kind (see :func:`phi_variants`); the
    objects of one patient repeat the same strings."""
    d = parse_date(value)
    if d is not None:
        # as given too: an ID such as 123456 also reads as a date (1234-05-06)
        return (*date_variants(d), value), "date"
    if any(ch.isdigit() for ch in value) and sum(w.isalpha() for w in value.split()) >= 2:
        return (value, " ".join(value.split())), "text"  # an address or free text
    if any(ch.isdigit() for ch in value):
        return (*id_variants(value), value), "id"
    return tuple(name_variants(value)), "name"


@dataclass(frozen=True)
class _Needle:
    """One written form in one encoding, searched as plain bytes (``bytes.find`` runs at memory
    speed; one case-insensitive regex alternation of every form ran at about 1.5 MB/s)."""

    #: the form's bytes, lower-cased (ASCII, as ``re.IGNORECASE`` folds bytes) unless ``exact``
    text: bytes
    #: "utf-8", "utf-16-le", "utf-16-be", or :data:`_UTF16_BOTH`: ``text`` is then what the form's
    #: LE and BE bytes share (see :func:`_utf16_core`), and each hit is told apart by its neighbours
    encoding: str
    #: encoder text: matched case-sensitively
    exact: bool
    #: a one-word name: no ASCII letter may touch either end (MARY inside PRIMARY is no name)
    bounded: bool
    #: (variant, original, kind, attribute) of the leak it reports
    found: tuple[str, str, str, str]
    #: the byte the LE form ends with and the BE form starts with, lower-cased (:data:`_UTF16_BOTH` only)
    pad: int = 0


@dataclass(frozen=True)
class _Anchored:
    """Needles that hold the same anchor: one ``find`` of the anchor, then each needle compared
    where its anchor would sit (``offset`` bytes into it). The forms of one value share most of
    their letters and digits (a birth date's year, an ID's digits), so a scan does a few finds
    where it did one per form and encoding."""

    anchor: bytes
    exact: bool
    #: (where the anchor starts in the needle, the needle)
    needles: tuple[tuple[int, _Needle], ...]
    #: the farthest into a needle its anchor starts
    reach: int


_Patterns = tuple[_Anchored, ...]
#: bytes an anchor is made of: ASCII letters and digits (lower-cased), and the zero high bytes of
#: their UTF-16 forms
_ANCHOR_BYTES = re.compile(rb"[a-z0-9\x00]+")
#: shortest anchor searched (bytes); a needle without one is its own anchor
MIN_ANCHOR = 4


def _anchor(needle: _Needle) -> bytes:
    """The longest run of letters and digits in the needle's bytes (for UTF-16, with their zero
    high bytes inside the run); the needle itself when that run is short."""
    runs = [m.group().strip(b"\x00") for m in _ANCHOR_BYTES.finditer(needle.text)]
    best = max(runs, key=len, default=b"")
    return best if len(best) >= MIN_ANCHOR and b"\x00\x00" not in best else needle.text


def _anchored(needles: Iterable[_Needle]) -> _Patterns:
    groups: dict[tuple[bytes, bool], list[tuple[int, _Needle]]] = {}
    for needle in needles:
        anchor = _anchor(needle)
        groups.setdefault((anchor, needle.exact), []).append((needle.text.find(anchor), needle))
    return tuple(_Anchored(anchor, exact, tuple(members), max(o for o, _ in members)) for (anchor, exact), members in groups.items())


#: the encodings the identifying strings are searched in
_ENCODINGS = ("utf-8", "utf-16-le", "utf-16-be")
_UTF16_BOTH = "utf-16"


def _utf16_core(form: str) -> tuple[bytes, int] | None:
    """The bytes a form's UTF-16-LE and -BE encodings share, and the byte each adds, where they
    share all but one: every character then has the same high byte (0 for ASCII), and LE is
    ``core + pad`` while BE is ``pad + core``. One search then finds both (a third of the scan)."""
    le, be = form.encode("utf-16-le", errors="ignore").lower(), form.encode("utf-16-be", errors="ignore").lower()
    if len(le) < 2 or le[:-1] != be[1:] or le[-1] != be[0]:
        return None
    return le[:-1], le[-1]


@lru_cache(maxsize=64)
def _patterns(phi: tuple[tuple[str, str], ...], encoder_text: bool) -> _Patterns:
    """The needles of one set of identifying strings (each with where it came from): the objects of
    one patient repeat the same strings, so the needles are built once per patient."""
    sources = dict(phi)
    return _anchored(_compile(phi_variants(sources), _ENCODINGS, encoder_text, sources))


def _compile(
    forms: dict[str, tuple[str, str]], encodings: Iterable[str], encoder_text: bool, sources: Mapping[str, str] | None = None
) -> tuple[_Needle, ...]:
    """The needles for the written forms: one-word names on letter boundaries, the rest anywhere."""
    needles: list[_Needle] = []
    bounded = {f for f in forms if forms[f][1] == "name" and _is_single_word(f)}
    encodings = tuple(encodings)
    both = {"utf-16-le", "utf-16-be"} <= set(encodings)
    for enc in encodings if forms else ():
        seen: set[tuple[bytes, bool]] = set()
        for form in sorted(forms, key=len, reverse=True):
            core = _utf16_core(form) if both and enc.startswith("utf-16") else None
            if core is not None and enc == "utf-16-be":
                continue  # searched with its LE form
            text, name = (core[0], _UTF16_BOTH) if core is not None else (form.encode(enc, errors="ignore").lower(), enc)
            if text and (text, form in bounded) not in seen:
                seen.add((text, form in bounded))
                original, kind = forms[form]
                found = (form, original, kind, (sources or {}).get(original, ""))
                needles.append(_Needle(text, name, False, form in bounded, found, core[1] if core is not None else 0))
    if encoder_text:
        needles += [_Needle(m.encode(), "utf-8", True, False, (m, m, "encoder", "")) for m in ENCODER_MARKERS]
    return tuple(needles)


def _is_letter_at(buf: bytes, pos: int, encoding: str) -> bool:
    """Whether the character unit at ``pos`` of ``buf`` (in ``encoding``) is an ASCII letter."""
    width = 2 if encoding.startswith("utf-16") else 1
    if pos < 0 or pos + width > len(buf):
        return False
    if width == 2:
        zero, letter = (pos + 1, pos) if encoding == "utf-16-le" else (pos, pos + 1)
        if buf[zero] != 0:
            return False
    else:
        letter = pos
    return 65 <= buf[letter] <= 90 or 97 <= buf[letter] <= 122


def _find(buf: bytes, patterns: _Patterns, base: int, start: int, limit: int) -> list[tuple[int, int, Leak]]:
    """Matches starting in ``buf[start:limit]`` (``buf`` starts at file offset ``base``)."""
    hits = []
    folded = buf.lower()
    for group in patterns:
        haystack = buf if group.exact else folded
        # an anchor at q belongs to a needle starting at q - offset: anchors up to ``reach`` bytes
        # past ``limit`` may still start a needle before it
        stop = limit + group.reach + len(group.anchor) - 1
        q = haystack.find(group.anchor, start, stop)
        while q != -1:
            for offset, needle in group.needles:
                pos = q - offset
                if start <= pos < limit and haystack.startswith(needle.text, pos):
                    hits += _hits(buf, folded, needle, pos, base)
            q = haystack.find(group.anchor, q + 1, stop)
    return hits


def _hits(buf: bytes, folded: bytes, needle: _Needle, pos: int, base: int) -> list[tuple[int, int, Leak]]:
    """The leaks of ``needle`` found at ``pos`` of ``buf``: one, or for a UTF-16 core each byte
    order its neighbours complete, unless a letter touches a bounded name."""
    end = pos + len(needle.text)
    if needle.encoding != _UTF16_BOTH:
        spans = ((pos, end, needle.encoding),)
    else:
        spans = tuple(
            span for span, ok in (((pos, end + 1, "utf-16-le"), end < len(buf) and folded[end] == needle.pad),
                                  ((pos - 1, end, "utf-16-be"), pos > 0 and folded[pos - 1] == needle.pad)) if ok
        )  # fmt: skip
    hits = []
    for first, last, encoding in spans:
        width = 2 if encoding.startswith("utf-16") else 1
        if not (needle.bounded and (_is_letter_at(buf, first - width, encoding) or _is_letter_at(buf, last, encoding))):
            variant, original, kind, attribute = needle.found
            context = buf[max(0, first - _CONTEXT) : last + _CONTEXT]
            hits.append((base + first, base + last, Leak(original, variant, base + first, _printable(context), encoding, kind, attribute)))
    return hits


def _printable(data: bytes) -> str:
    return "".join(chr(b) if 32 <= b < 127 else "." for b in data)


def _open(source: str | Path | bytes) -> BinaryIO:
    """The bytes to scan as a file: a file's, or bytes about to be written (the very bytes checked)."""
    if isinstance(source, bytes):
        return io.BytesIO(source)
    try:
        return open(source, "rb")
    except OSError as exc:
        raise InputError(f"cannot read the file for the PHI leak scan: {exc.strerror}", Path(source)) from exc


def scan_bytes(
    path: str | Path | bytes,
    phi_strings: Iterable[str],
    encoder_text: bool = True,
    chunk_size: int = 1 << 22,
    sources: Mapping[str, str] | None = None,
) -> list[Leak]:
    """Every occurrence of the patient's identifying strings (and encoder text) in a file's bytes.

    Parameters
    ----------
    path:
        The output file (DICOM, MP4, CSV, anything), or its bytes.
    phi_strings:
        Identifying values from the input: names, IDs, dates, addresses.
    encoder_text:
        Also flag :data:`ENCODER_MARKERS` (case-sensitive, UTF-8 only).
    chunk_size:
        Bytes read at a time; matches across chunk borders are found through an overlap.
    sources:
        Each identifying string -> where it came from (``PatientName``), recorded on its leaks;
        by default ``phi_strings`` itself when it is such a mapping.

    Returns
    -------
    list[Leak]
        One entry per occurrence, in file order.

    Raises
    ------
    InputError
        When the file cannot be read.
    """
    if sources is None and isinstance(phi_strings, Mapping):
        sources = phi_strings
    patterns = _patterns(tuple((str(s), (sources or {}).get(s, "")) for s in phi_strings), encoder_text)
    if not patterns:
        return []
    longest = max(len(needle.text) for group in patterns for _, needle in group.needles)
    # three more bytes: a UTF-16 core's pad byte, and the look-behind and look-ahead of a bounded
    # match need their neighbours
    overlap = max(longest + 3, _CONTEXT)
    hits: list[tuple[int, int, Leak]] = []
    with _open(path) as fh:
        tail = b""
        base = 0  # file offset of buf[0]
        start = 0  # where this round's matches may start: the bytes before are a look-behind's only
        while True:
            chunk = fh.read(chunk_size)
            buf = tail + chunk
            final = not chunk
            # matches starting in the last `overlap` bytes wait for the next round, unless at the end
            limit = len(buf) if final else max(len(buf) - overlap, start)
            hits += _find(buf, patterns, base, start, limit)
            if final:
                break
            keep_from = max(limit - 2, 0)
            tail = buf[keep_from:]
            start = limit - keep_from
            base += keep_from
    return _without_overlaps(hits)


def scan_text(text: str, phi_strings: Iterable[str]) -> list[Leak]:
    """Every occurrence of identifying strings in a released text, matched on token boundaries.

    ``text`` is the text as a reader sees it (HTML entities and JSON escapes already decoded): a
    name, ID or date counts where no letter or digit touches it, so a patient ID is not found
    inside a longer number or a digest. Offsets are in the text's UTF-8 bytes.
    """
    return text_scanner(phi_strings)(text)


def text_scanner(phi_strings: Iterable[str]) -> Callable[[str], list[Leak]]:
    """:func:`scan_text` prepared once, for scanning many texts.

    A match must start where no letter or digit precedes it and end where none follows, so only
    such (start, end) spans of a text are looked up in a table of the written forms: time grows with
    the text, not with the number of forms (a release's batch holds thousands; one regex alternation
    of them took seconds per hundred texts).
    """
    forms = {form.lower(): (form, *meta) for form, meta in phi_variants(phi_strings).items()}
    longest = max((len(f) for f in forms), default=0)
    # in ASCII text a match that starts at a letter or digit starts with the form's first token (no
    # token character precedes it, and the form cannot end inside a token): only the text's tokens
    # that are some form's first token, and the few places a form starting with punctuation could
    # start, need looking up
    first_tokens = {m.group() for f in forms if f.isascii() and (m := _ASCII_TOKEN.match(f))}
    odd_firsts = {f[0] for f in forms if f.isascii() and not _ASCII_TOKEN.match(f)}

    def hit(text: str, folded: str, i: int, j: int, offset: int) -> tuple[int, int, Leak] | None:
        found = forms.get(folded[i:j])
        if found is None:
            return None
        variant, original, kind = found
        context = text[max(0, i - _CONTEXT) : j + _CONTEXT].encode("utf-8")
        return i, j, Leak(original, variant, offset, _printable(context), "utf-8", kind)

    def scan_ascii(text: str) -> list[Leak]:
        starts = [m.start() for m in _ASCII_TOKEN.finditer(text) if m.group().lower() in first_tokens]
        if odd_firsts and any(c in text for c in odd_firsts):
            starts += [i for i, c in enumerate(text) if c in odd_firsts and (i == 0 or not _is_token_char(text[i - 1]))]
        if not starts:
            return []
        folded, size = text.lower(), len(text)
        ends = [m.start() for m in _NON_TOKEN.finditer(text)] + [size]
        hits = []
        for i in sorted(set(starts)):
            for j in ends[bisect.bisect_right(ends, i) :]:
                if j - i > longest:
                    break
                if (found := hit(text, folded, i, j, i)) is not None:
                    hits.append(found)
        return _without_overlaps(hits)

    def scan(text: str) -> list[Leak]:
        if not forms:
            return []
        if text.isascii():
            return scan_ascii(text)
        # one character for one (a few letters lower-case into two), so spans index both strings
        folded = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
        size = len(text)
        starts = [i for i in range(size) if i == 0 or not _is_token_char(text[i - 1])]
        ends = [j for j in range(1, size + 1) if j == size or not _is_token_char(text[j])]
        hits = []
        for i in starts:
            for j in ends[bisect.bisect_right(ends, i) :]:
                if j - i > longest:
                    break
                if (found := hit(text, folded, i, j, len(text[:i].encode("utf-8")))) is not None:
                    hits.append(found)
        return _without_overlaps(hits)

    return scan


_ASCII_TOKEN = re.compile(r"[A-Za-z0-9]+")
_NON_TOKEN = re.compile(r"[^A-Za-z0-9]")


def _is_token_char(char: str) -> bool:
    return char.isascii() and char.isalnum()


def _without_overlaps(hits: list[tuple[int, int, Leak]]) -> list[Leak]:
    # one string read in another encoding (UTF-16-LE seen shifted as -BE) is still one leak. Only a
    # leak kept ends the stretch it covers: a dropped shifted reading reaches one byte past the string
    # it shadows, and had swallowed a second string written right after the first
    leaks: list[Leak] = []
    end = -1
    for start, stop, leak in sorted(hits, key=lambda h: (h[0], -(h[1] - h[0]))):
        if start >= end:
            leaks.append(leak)
            end = stop
    return leaks


def describe_leaks(leaks: list[Leak], where: str) -> str:
    """A PHI-free sentence for a reason: how many occurrences of which kinds, and the attributes their
    values came from, never the values."""
    kinds: dict[str, int] = {}
    for leak in leaks:
        kinds[leak.kind] = kinds.get(leak.kind, 0) + 1
    counted = ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items()))
    attributes = sorted({leak.attribute for leak in leaks if leak.attribute})
    if attributes:
        counted += f"; the values of {', '.join(attributes)}"
    offsets = ", ".join(str(leak.offset) for leak in leaks[:5]) + (" ..." if len(leaks) > 5 else "")
    return (
        f"PHI leak scan: {len(leaks)} occurrence(s) of the patient's identifying strings or encoder text in {where} "
        f"({counted}; at byte offset(s) {offsets}; the values are in the site's quarantine copy only)"
    )


def leak_details(leaks: list[Leak], where: str, limit: int = 20) -> list[str]:
    """The site-only account of each leak (the value, its form and where): never released."""
    return [
        f"{where}: {leak.kind} {leak.string!r}{f' of {leak.attribute}' if leak.attribute else ''} written as {leak.variant!r} at offset {leak.offset} ({leak.encoding})"
        for leak in leaks[:limit]
    ]

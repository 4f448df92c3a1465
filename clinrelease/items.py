"""Finding the input items of a release: DICOM files, DICOMDIR sets, plain videos with a metadata table.

An *item* is one thing that is released or quarantined on its own: a DICOM object, or a plain video
file (MP4, MKV, AVI, ...) together with its row of the metadata table, which supplies the patient and
study attributes a DICOM header would hold.
"""

from __future__ import annotations

import csv
import functools
import secrets
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path

from clinrelease.crypto.kdf import derive_hex
from clinrelease.errors import InputError

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mkv", ".avi", ".mov", ".webm", ".mpg", ".mpeg", ".ts"}
#: files never taken as items (sidecars, the metadata table itself, OS litter)
IGNORED_NAMES = {".ds_store", "thumbs.db"}

#: metadata-table columns that map onto DICOM header keywords
METADATA_COLUMNS = {
    "patient_id": "PatientID",
    "patient_name": "PatientName",
    "birth_date": "PatientBirthDate",
    "sex": "PatientSex",
    "age": "PatientAge",
    "study_date": "StudyDate",
    "study_time": "StudyTime",
    "study_description": "StudyDescription",
    "series_description": "SeriesDescription",
    "accession_number": "AccessionNumber",
    "institution_name": "InstitutionName",
    "referring_physician": "ReferringPhysicianName",
    "operator": "OperatorsName",
    "comments": "PatientComments",
}


@dataclass(frozen=True)
class InputItem:
    """One input of a release."""

    path: Path
    #: path relative to the input root, POSIX style: used in reports (never in output names)
    relpath: str
    #: "dicom", "container", or "unreadable" (see ``problem``)
    kind: str
    #: header attributes for a plain video, from its metadata-table row (DICOM keyword -> value)
    metadata: dict[str, str] = field(default_factory=dict)
    #: item id of an earlier input that is the same object (same SOP Instance UID, or the same
    #: plain video file): both would be released under one output path, so only the first is
    duplicate_of: str | None = None
    #: why a file found among the inputs cannot be taken (kind "unreadable"): an item error, PHI-free
    problem: str | None = None
    #: a short id for this input within a release, keyed (:func:`item_id`): released reports name
    #: items by it, so it must not let anyone recover the input's name by guessing
    item_id: str = ""


#: key for item ids when discovery is given none: stable within this process only
_PROCESS_ID_KEY = secrets.token_bytes(32)


def item_id(id_key: bytes | None, relpath: str) -> str:
    """HMAC of the relative path with the release key: stable across runs (resume needs that) and
    unguessable without the key (an unkeyed hash of ``Smith_John_visit.dcm`` is found by trying names)."""
    return derive_hex(id_key or _PROCESS_ID_KEY, "item-id", relpath, 16)


def is_dicom_file(path: Path) -> bool:
    """True when the file carries the DICM magic after a 128-byte preamble."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _why_not_an_item(path: Path) -> str:
    """What is wrong with a file that is neither DICOM nor a known video (no file name: it may carry PHI)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        return f"the file cannot be read ({exc.strerror or type(exc).__name__})"
    if len(head) < 132:
        return f"the file is truncated or not DICOM: {len(head)} bytes, shorter than a DICOM preamble"
    return "neither a DICOM file (no DICM preamble) nor a known video file type"


def read_metadata_table(path: Path) -> dict[str, dict[str, str]]:
    """Read the metadata table for plain videos: one row per video, keyed by its ``file`` column.

    Columns: ``file`` (path of the video relative to the input folder, or its name) and any of
    :data:`METADATA_COLUMNS`. Unknown columns are an error, so that nothing is silently dropped.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "file" not in reader.fieldnames:
                raise InputError("the metadata table needs a 'file' column naming each video", path)
            unknown = [c for c in reader.fieldnames if c != "file" and c not in METADATA_COLUMNS]
            if unknown:
                raise InputError(
                    f"unknown metadata column(s) {', '.join(unknown)}; allowed: file, {', '.join(METADATA_COLUMNS)}",
                    path,
                )
            rows: dict[str, dict[str, str]] = {}
            for line, row in enumerate(reader, start=2):
                name = (row.get("file") or "").strip()
                if not name:
                    raise InputError(f"row {line}: empty 'file' value", path)
                rows[name] = {METADATA_COLUMNS[k]: v for k, v in row.items() if k != "file" and v}
            return rows
    except UnicodeDecodeError as exc:
        raise InputError(f"not a UTF-8 CSV file: {exc}", path) from exc
    except OSError as exc:
        raise InputError(f"cannot read the metadata table: {exc}", path) from exc


def _dicomdir_members(dicomdir: Path) -> list[Path]:
    """The files a DICOMDIR references (it lists them; it is not an item itself)."""
    from pydicom import dcmread

    try:
        ds = dcmread(dicomdir)
    except Exception as exc:  # pydicom raises many types for a bad file
        raise InputError(f"unreadable DICOMDIR: {exc}", dicomdir) from exc
    members = []
    for record in ds.get("DirectoryRecordSequence", []):
        ref = record.get("ReferencedFileID")
        if ref:
            parts = [ref] if isinstance(ref, str) else list(ref)
            members.append(dicomdir.parent.joinpath(*parts))
    return members


def discover_items(inputs: list[Path], metadata: Path | None = None, id_key: bytes | None = None) -> list[InputItem]:
    """All items under the given files and folders, sorted by relative path.

    Folders are searched recursively. A DICOMDIR contributes the files it references. Plain videos
    need a row in the metadata table; without one they are an input error, since their header
    attributes would be unknown. Any other file (unreadable, cut short, of an unknown type, listed
    by a DICOMDIR but missing) is an item of kind ``unreadable`` whose ``problem`` says why: the
    batch goes on. ``id_key`` (the release key) keys the item ids; without it they are keyed by a
    random key of this process.
    """
    table = read_metadata_table(metadata) if metadata else {}
    items: dict[str, InputItem] = {}
    for root in inputs:
        if not root.exists():
            raise InputError("no such file or folder", root)
        base = root if root.is_dir() else root.parent
        candidates = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in candidates:
            hidden = path.name.startswith(".")  # OS litter (._x.mp4, .DS_Store) and tools' temporary files
            if hidden or path.name.lower() in IGNORED_NAMES or (metadata and path.resolve() == metadata.resolve()):
                continue
            rel = path.relative_to(base).as_posix()
            if path.name.upper() == "DICOMDIR":
                # its members are items even when only the DICOMDIR itself was named as input
                try:
                    members = _dicomdir_members(path)
                except InputError:
                    items[rel] = InputItem(path, rel, "unreadable", problem="the DICOMDIR cannot be read")
                    continue
                for member in members:
                    member_rel = member.relative_to(base).as_posix()
                    if not member.is_file():
                        items[member_rel] = InputItem(member, member_rel, "unreadable", problem="listed in its DICOMDIR, but missing")
                    elif not is_dicom_file(member):
                        items[member_rel] = InputItem(member, member_rel, "unreadable", problem="listed in its DICOMDIR, but not a DICOM file")
                    else:
                        items[member_rel] = InputItem(member, member_rel, "dicom")
                continue
            if path.suffix.lower() in VIDEO_SUFFIXES:
                row = table.get(rel) or table.get(path.name)
                if row is None:
                    raise InputError(
                        "a plain video needs a row in the metadata table (--metadata FILE, column 'file')", path
                    )
                items[rel] = InputItem(path, rel, "container", row)
            elif is_dicom_file(path):
                items[rel] = InputItem(path, rel, "dicom")
            elif path.suffix.lower() in {".csv", ".tsv", ".txt", ".md", ".json", ".yaml", ".yml"}:
                continue  # sidecar documents are not items
            else:
                # one file that cannot be read must not stop the batch: it is an item error
                items[rel] = InputItem(path, rel, "unreadable", problem=_why_not_an_item(path))
    if not items:
        raise InputError("no DICOM or video files found", inputs[0] if inputs else None)
    return _mark_duplicates([replace(items[k], item_id=item_id(id_key, k)) for k in sorted(items)])


def _identity_key(item: InputItem) -> str | None:
    """What decides an item's output path: its SOP Instance UID, or a plain video's content."""
    if item.kind == "container":
        from clinrelease.crypto.digest import sha256_file

        return "file:" + sha256_file(item.path)
    try:
        uid = _sop_instance_uid(item.path)
    except Exception:  # an unreadable file is reported by the pipeline, with the reason
        return None
    return f"uid:{uid}" if uid else None


_SOP_INSTANCE_UID = 0x00080018
#: the first bytes of a file, where its file meta and SOP Instance UID almost always are
_HEAD_BYTES = 1 << 14
#: "not found in the first bytes, or in an encoding the scan leaves to pydicom"
_UNSURE = object()


@functools.lru_cache(maxsize=1)
def _vrs() -> tuple[frozenset[bytes], frozenset[bytes]]:
    """Every two-letter VR, and the explicit VRs whose length takes four bytes, as pydicom knows them."""
    from pydicom.filewriter import EXPLICIT_VR_LENGTH_32
    from pydicom.valuerep import VR

    return frozenset(vr.value.encode() for vr in VR if len(vr.value) == 2), frozenset(vr.encode() for vr in EXPLICIT_VR_LENGTH_32)


def _sop_instance_uid(path: Path):
    """The SOP Instance UID as ``pydicom.filereader.read_partial`` reads it (the header up to that
    element only), scanned from the file's first bytes where their encoding is a plain one: a parse
    per file by pydicom cost as much as the rest of discovery."""
    with open(path, "rb") as fh:
        uid = _scanned_sop_instance_uid(fh.read(_HEAD_BYTES))
        if uid is not _UNSURE:
            return uid
        from pydicom.filereader import read_partial

        fh.seek(0)
        return read_partial(fh, stop_when=_past_sop_instance_uid, specific_tags=[_SOP_INSTANCE_UID]).get("SOPInstanceUID")


def _scanned_sop_instance_uid(head: bytes):
    """:func:`_sop_instance_uid` from the first bytes of a Part 10 file in implicit or explicit VR
    little endian (file meta included): the UID, ``None`` when the data set has none, or
    :data:`_UNSURE` (anything else: pydicom reads it)."""
    from pydicom.uid import UID
    from pydicom.values import convert_UI

    if head[128:132] != b"DICM":
        return _UNSURE
    ts, start = None, 132
    for tag, vr, at, length in _elements(head, 132, implicit=False):
        if tag >> 16 != 0x0002:
            break
        if tag == 0x00020010:
            ts = convert_UI(head[at : at + length], True)
        start = at + length
    else:
        return _UNSURE  # the file meta runs past the first bytes
    if not isinstance(ts, UID) or not ts.is_transfer_syntax or ts.is_deflated or not ts.is_little_endian or start >= len(head):
        return _UNSURE
    implicit = ts.is_implicit_VR
    if _looks_explicit(head, start) == implicit:
        return _UNSURE  # pydicom follows what the first element looks like, not the syntax
    for tag, vr, at, length in _elements(head, start, implicit):
        if tag >> 16 == 0 or length == 0xFFFFFFFF or (vr is not None and vr not in _vrs()[0]):
            return _UNSURE  # a command set, a sequence of undefined length, bytes that are no element
        if tag > _SOP_INSTANCE_UID:
            return None
        if tag == _SOP_INSTANCE_UID:
            value = head[at : at + length]
            if (vr not in (None, b"UI")) or len(value) != length or b"\\" in value:
                return _UNSURE
            return convert_UI(value, True) or None
    return _UNSURE




def _looks_explicit(head: bytes, at: int) -> bool:
    return head[at + 4 : at + 6] in _vrs()[0]


def _elements(head: bytes, at: int, implicit: bool):
    """(tag, VR or None, value offset, value length) of the elements from ``at``, as far as their
    headers lie within ``head``."""
    while at + 8 <= len(head):
        group, element = struct.unpack_from("<HH", head, at)
        if implicit:
            vr, length, value = None, struct.unpack_from("<L", head, at + 4)[0], at + 8
        else:
            vr = head[at + 4 : at + 6]
            if vr in _vrs()[1]:
                if at + 12 > len(head):
                    return
                length, value = struct.unpack_from("<L", head, at + 8)[0], at + 12
            else:
                length, value = struct.unpack_from("<H", head, at + 6)[0], at + 8
        yield (group << 16) | element, vr, value, length
        if length == 0xFFFFFFFF:
            return
        at = value + length


def _past_sop_instance_uid(tag, vr, length) -> bool:
    return tag > _SOP_INSTANCE_UID


def _mark_duplicates(items: list[InputItem]) -> list[InputItem]:
    """Mark later inputs that are the same object as an earlier one (in relative-path order).

    Two inputs with one SOP Instance UID would both be released under one output path and the
    second would silently replace the first; deciding here, before any item runs, keeps the
    outcome the same for every worker count and shard. Plain videos are only hashed when another
    one has the same size.
    """
    sizes: dict[int, int] = {}
    for item in items:
        if item.kind == "container":
            size = item.path.stat().st_size
            sizes[size] = sizes.get(size, 0) + 1
    first: dict[str, str] = {}
    marked = []
    for item in items:
        if item.kind == "unreadable" or (item.kind == "container" and sizes[item.path.stat().st_size] < 2):
            marked.append(item)
            continue
        key = _identity_key(item)
        if key is None:
            marked.append(item)
        elif key in first:
            marked.append(replace(item, duplicate_of=first[key]))
        else:
            first[key] = item.item_id
            marked.append(item)
    return marked

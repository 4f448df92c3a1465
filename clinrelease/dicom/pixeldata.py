"""Find a DICOM file's pixel data on disk without loading it, and read it through a file-like view.

pydicom reads the header (``stop_before_pixels=True``) and leaves the file positioned at the Pixel
Data tag; from there :func:`locate_pixel_data` scans the element header and, for encapsulated data,
the item headers only (seeking over each fragment's bytes), so a multi-gigabyte video costs a few
kilobytes of memory. :class:`FragmentStream` then presents the fragments, Basic Offset Table skipped,
as one seekable read-only byte stream that PyAV can demux lazily.
"""

from __future__ import annotations

import io
import os
import struct
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path

from clinrelease.errors import InputError

PIXEL_DATA_TAG = (0x7FE0, 0x0010)
_ITEM = (0xFFFE, 0xE000)
_SEQUENCE_DELIMITER = (0xFFFE, 0xE0DD)
_UNDEFINED = 0xFFFFFFFF
#: explicit VRs whose length field is 4 bytes after 2 reserved bytes (PS3.5 7.1.2)
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


@dataclass(frozen=True)
class Fragment:
    """One encapsulated item: where its bytes start in the file and how many there are."""

    offset: int
    length: int


@dataclass(frozen=True)
class PixelDataLocation:
    """Where a file's Pixel Data element lives.

    For native data ``value_offset``/``value_length`` span the raw pixels; for encapsulated data
    ``fragments`` lists the items after the Basic Offset Table, whose entries are ``offsets``.
    """

    value_offset: int
    value_length: int
    encapsulated: bool
    fragments: list[Fragment] = field(default_factory=list)
    #: Basic Offset Table entries (byte offsets of each frame's first item, relative to the first item)
    offsets: list[int] = field(default_factory=list)


def locate_pixel_data(fp: io.BufferedIOBase, path: Path, explicit_vr: bool) -> PixelDataLocation:
    """Parse the Pixel Data element starting at ``fp``'s current position.

    Parameters
    ----------
    fp:
        A binary file positioned at the (7FE0,0010) tag, as ``dcmread(..., stop_before_pixels=True)``
        leaves it.
    path:
        The file's path, for error messages.
    explicit_vr:
        Whether the data set uses explicit VRs.

    Raises
    ------
    InputError
        When there is no Pixel Data element, or the file ends inside it (truncated).
    """
    file_size = os.fstat(fp.fileno()).st_size
    start = fp.tell()
    header = fp.read(8)
    if len(header) < 8:
        raise InputError("the file holds no Pixel Data (7FE0,0010): it is not an image", path)
    group, elem = struct.unpack("<HH", header[:4])
    if (group, elem) != PIXEL_DATA_TAG:
        raise InputError(
            f"the file holds ({group:04X},{elem:04X}) instead of Pixel Data (7FE0,0010): it is not a video "
            "with 8-bit integer pixels",
            path,
        )
    if explicit_vr:
        vr = header[4:6]
        if vr in _LONG_VRS:
            rest = fp.read(4)
            if len(rest) < 4:
                raise InputError("the file is truncated inside the Pixel Data element header", path)
            (length,) = struct.unpack("<I", rest)
        else:
            (length,) = struct.unpack("<H", header[6:8])
    else:
        (length,) = struct.unpack("<I", header[4:8])
    value_offset = fp.tell()
    if length != _UNDEFINED:
        if value_offset + length > file_size:
            raise InputError(
                f"the file is truncated: Pixel Data declares {length} bytes but only "
                f"{file_size - value_offset} remain",
                path,
            )
        return PixelDataLocation(value_offset, length, encapsulated=False)
    items = _scan_items(fp, path, file_size, start)
    if not items:
        raise InputError("the encapsulated Pixel Data has no Basic Offset Table item", path)
    bot = items[0]
    fp.seek(bot.offset)
    raw = fp.read(bot.length)
    offsets = list(struct.unpack(f"<{bot.length // 4}I", raw[: bot.length // 4 * 4]))
    return PixelDataLocation(value_offset, -1, encapsulated=True, fragments=items[1:], offsets=offsets)


def _scan_items(fp: io.BufferedIOBase, path: Path, file_size: int, start: int) -> list[Fragment]:
    """Read item headers until the Sequence Delimitation Item, seeking over every item's value."""
    items: list[Fragment] = []
    while True:
        pos = fp.tell()
        head = fp.read(8)
        if len(head) < 8:
            raise InputError(
                f"the file is truncated: encapsulated Pixel Data (at byte {start}) ends after "
                f"{len(items)} items without a Sequence Delimitation Item",
                path,
            )
        group, elem, length = struct.unpack("<HHI", head)
        if (group, elem) == _SEQUENCE_DELIMITER:
            return items
        if (group, elem) != _ITEM or length == _UNDEFINED:
            raise InputError(
                f"corrupt encapsulated Pixel Data: expected an item at byte {pos}, found "
                f"({group:04X},{elem:04X})",
                path,
            )
        if pos + 8 + length > file_size:
            raise InputError(
                f"the file is truncated: Pixel Data item {len(items)} declares {length} bytes but only "
                f"{file_size - pos - 8} remain",
                path,
            )
        items.append(Fragment(pos + 8, length))
        fp.seek(length, io.SEEK_CUR)


class FragmentStream(io.RawIOBase):
    """A read-only, seekable byte stream over encapsulated fragments of one file, joined in order.

    Only the bytes asked for are read from disk, so PyAV can demux a long stream with bounded memory.
    """

    def __init__(self, path: Path, fragments: list[Fragment]) -> None:
        super().__init__()
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._fragments = fragments
        self._starts: list[int] = []
        total = 0
        for frag in fragments:
            self._starts.append(total)
            total += frag.length
        self._size = total
        self._pos = 0

    @property
    def size(self) -> int:
        """Total length of the joined fragments in bytes."""
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self._pos < self._size:
            index = bisect_right(self._starts, self._pos) - 1
            frag = self._fragments[index]
            inside = self._pos - self._starts[index]
            count = min(len(view) - done, frag.length - inside)
            self._file.seek(frag.offset + inside)
            got = self._file.readinto(view[done : done + count])
            if not got:
                break
            done += got
            self._pos += got
        return done

    def read_at(self, offset: int, size: int) -> bytes:
        """Read ``size`` bytes starting at ``offset`` without moving the stream position."""
        saved = self._pos
        self._pos = offset
        try:
            return self.read(size) or b""
        finally:
            self._pos = saved

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


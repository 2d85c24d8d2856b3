"""The text chunks of a PNG (tEXt, zTXt, iTXt), read straight from the chunk stream within fixed bounds.

Read here rather than through Pillow so that a crafted file costs bounded time and memory and each problem is
a sentence: every chunk and its decompressed text is at most MAX_TEXT_BYTES (a zTXt/iTXt bomb is cut off after
that many bytes), all text together at most MAX_TOTAL_TEXT_BYTES, and reading stops at the image data (IDAT),
where every writer we read (A1111, ComfyUI, us: all via Pillow) has put its text. The pixels are never decoded.

A chunk that cannot be read (too big, a bomb, a bad checksum, bad UTF-8) is left out and its problem noted by
keyword, so the other chunks stay usable; a file that is cut off or is not a PNG at all raises MetadataError.
"""

from __future__ import annotations

import logging
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from app.metadata.limits import MAX_TEXT_BYTES, MAX_TOTAL_TEXT_BYTES, MetadataError, mib

log = logging.getLogger(__name__)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TEXT_TYPES = (b"tEXt", b"zTXt", b"iTXt")
_MAX_CHUNKS = 10_000  # before the image data; real files have a dozen
_MAX_CHUNK_LENGTH = (1 << 31) - 1  # the PNG specification's limit
_HEADER_ROOM = 256  # keyword, language tag and flags before the text of a chunk


@dataclass(slots=True)
class PngText:
    chunks: dict[str, str] = field(default_factory=dict)  # keyword → text
    problems: dict[str, str] = field(default_factory=dict)  # keyword → why its chunk was left out


def read_png_text(path: Path) -> dict[str, str]:
    """The readable text chunks by keyword; {} for a file that is not a PNG. Raises MetadataError for a PNG
    that is cut off or damaged in its structure."""
    return read_png_chunks(path).chunks


def read_png_chunks(path: Path) -> PngText:
    try:
        with open(path, "rb") as f:
            if f.read(8) != PNG_SIGNATURE:
                return PngText()
            return _read_chunks(f)
    except OSError as exc:
        raise MetadataError(f"The file cannot be read ({exc.strerror or exc}).") from None


def _read_chunks(f: BinaryIO) -> PngText:
    out = PngText()
    total = 0
    for _ in range(_MAX_CHUNKS):
        header = f.read(8)
        if len(header) < 8:
            raise MetadataError("The PNG file is cut off before its image data.")
        length, kind = struct.unpack(">I4s", header)
        if length > _MAX_CHUNK_LENGTH:
            raise MetadataError("The PNG file is damaged (a chunk has an impossible length).")
        if kind in (b"IDAT", b"IEND"):
            return out
        if kind not in _TEXT_TYPES:
            f.seek(length + 4, 1)  # data and CRC, unread
            continue
        if length > MAX_TEXT_BYTES + _HEADER_ROOM:
            keyword = _peek_keyword(f, length)
            out.problems[keyword] = (
                f"The “{keyword}” text is {mib(length)}, more than the {mib(MAX_TEXT_BYTES)} that are read."
            )
            continue
        data, crc = f.read(length), f.read(4)
        if len(data) < length or len(crc) < 4:
            raise MetadataError("The PNG file is cut off in the middle of a text chunk.")
        keyword, _, _ = data.partition(b"\0")
        name = keyword[:79].decode("latin-1")
        if struct.unpack(">I", crc)[0] != zlib.crc32(kind + data):
            out.problems[name] = f"The “{name}” text is damaged (the chunk's checksum does not match)."
            continue
        try:
            text = _decode(kind, data)
        except MetadataError as exc:
            out.problems[name] = f"The “{name}” text {exc}"
            continue
        total += len(text)
        if total > MAX_TOTAL_TEXT_BYTES:
            raise MetadataError(f"The PNG file holds more than {mib(MAX_TOTAL_TEXT_BYTES)} of text.")
        out.chunks[name] = text
    raise MetadataError(f"The PNG file has more than {_MAX_CHUNKS} chunks before its image data.")


def _peek_keyword(f: BinaryIO, length: int) -> str:
    """The keyword of a chunk too big to read (the first 80 bytes), and skip the rest of it."""
    head = f.read(min(length, 80))
    f.seek(length - len(head) + 4, 1)
    return head.partition(b"\0")[0][:79].decode("latin-1") or "?"


def _decode(kind: bytes, data: bytes) -> str:
    """The text of one chunk; MetadataError (the end of a sentence that starts "The “key” text") when unreadable."""
    keyword, sep, rest = data.partition(b"\0")
    if not sep or not keyword:
        raise MetadataError("is malformed (no keyword).")
    if kind == b"tEXt":
        return rest.decode("latin-1")
    if kind == b"zTXt":
        if rest[:1] != b"\0":
            raise MetadataError("uses an unknown compression method.")
        return _inflate(rest[1:]).decode("latin-1")
    # iTXt: compression flag, method, language tag \0, translated keyword \0, UTF-8 text
    if len(rest) < 2:
        raise MetadataError("is malformed (cut off).")
    compressed, method, rest = rest[0], rest[1], rest[2:]
    _language, sep1, rest = rest.partition(b"\0")
    _translated, sep2, body = rest.partition(b"\0")
    if not (sep1 and sep2):
        raise MetadataError("is malformed (cut off).")
    if compressed:
        if method != 0:
            raise MetadataError("uses an unknown compression method.")
        body = _inflate(body)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise MetadataError("is not valid UTF-8.") from None


def _inflate(data: bytes) -> bytes:
    """Decompress at most MAX_TEXT_BYTES; a stream that would give more is refused, not expanded."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, MAX_TEXT_BYTES + 1)
    except zlib.error:
        raise MetadataError("is damaged (its compressed data cannot be unpacked).") from None
    if len(out) > MAX_TEXT_BYTES or inflater.unconsumed_tail:
        raise MetadataError(
            f"expands to more than {mib(MAX_TEXT_BYTES)} when unpacked (a decompression bomb?)."
        )
    return out

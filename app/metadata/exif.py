"""JPEG and WebP copies with the infotext in EXIF UserComment, where A1111 and Civitai look for it.

UserComment (tag 0x9286 in the Exif IFD, type UNDEFINED) starts with an 8-byte character-code prefix; we write
`UNICODE\\0` and UTF-16 big-endian text, byte for byte what A1111 writes with
`piexif.helper.UserComment.dump(text, encoding="unicode")` and reads back with `UserComment.load` (which decodes
`utf_16_be`). We read the usual variants too (UNICODE in either byte order, ASCII, undefined).

The EXIF block is built here rather than with `PIL.Image.Exif`: Pillow does not know UserComment's type and
stores bytes as BYTE, which piexif returns as a tuple of ints, so A1111's reader cannot decode it.
"""

from __future__ import annotations

import logging
import os
import struct
import tempfile
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from app.metadata.file_modes import make_shareable
from app.metadata.limits import MAX_TEXT_BYTES, MetadataError, mib

log = logging.getLogger(__name__)

EXIF_IFD = 0x8769
USER_COMMENT = 0x9286
_UNICODE = b"UNICODE\0"
_ASCII = b"ASCII\0\0\0"
_LONG, _UNDEFINED = 4, 7  # TIFF field types
JPEG_EXIF_LIMIT = 65533  # a JPEG APP1 segment holds at most this many bytes


def encode_user_comment(text: str) -> bytes:
    return _UNICODE + text.encode("utf-16-be")


def exif_with_user_comment(text: str) -> bytes:
    """An EXIF block (`Exif\\0\\0` + big-endian TIFF, as piexif.dump lays it out) holding only UserComment."""
    comment = encode_user_comment(text)
    # offsets from the TIFF header: header 8 bytes, IFD0 (1 entry) 18 bytes, Exif IFD (1 entry) 18 bytes
    ifd0, exif_ifd, data = 8, 26, 44
    tiff = b"MM\0*" + struct.pack(">I", ifd0)
    tiff += struct.pack(">H", 1) + struct.pack(">HHII", EXIF_IFD, _LONG, 1, exif_ifd) + struct.pack(">I", 0)
    tiff += struct.pack(">H", 1) + struct.pack(">HHII", USER_COMMENT, _UNDEFINED, len(comment), data)
    tiff += struct.pack(">I", 0) + comment
    return b"Exif\0\0" + tiff


def decode_user_comment(raw: bytes | str) -> str:
    if isinstance(raw, str):
        return raw
    prefix, body = raw[:8], raw[8:]
    if prefix == _UNICODE:
        # Big-endian per the standard; some writers use little-endian (ASCII in UTF-16-BE starts with NUL).
        big = len(body) >= 2 and body[0] == 0 and body[1] != 0
        little = len(body) >= 2 and body[1] == 0 and body[0] != 0
        codec = "utf-16-le" if little and not big else "utf-16-be"
        return body.decode(codec, errors="replace").rstrip("\0")
    if prefix in (_ASCII, b"\0" * 8):
        return body.decode("utf-8", errors="replace").rstrip("\0")
    return raw.decode("utf-8", errors="replace").rstrip("\0")


def read_user_comment(path: Path) -> str | None:
    """The EXIF UserComment of a JPEG or WebP; None when it has none. Raises MetadataError when the file is
    not an image Pillow reads, its EXIF is damaged, or the comment is longer than MAX_TEXT_BYTES."""
    try:
        with Image.open(path) as im:
            raw = im.getexif().get_ifd(EXIF_IFD).get(USER_COMMENT)
    except (UnidentifiedImageError, Image.DecompressionBombError):
        raise MetadataError("The file is not an image that can be read.") from None
    except OSError as exc:
        raise MetadataError(f"The file cannot be read ({exc.strerror or exc}).") from None
    except (SyntaxError, ValueError, TypeError, KeyError, IndexError, struct.error) as exc:
        raise MetadataError(f"The file's EXIF data is damaged ({exc}).") from None
    if raw is None:
        return None
    if len(raw) > 2 * MAX_TEXT_BYTES:  # UTF-16: two bytes a character
        raise MetadataError(f"The EXIF comment is {mib(len(raw))}, more than is read.")
    return decode_user_comment(raw)


def save_with_user_comment(src: Path, dest: Path, text: str, fmt: str, quality: int = 92) -> None:
    """Convert `src` to JPEG or WebP at `dest` (atomically) with `text` in EXIF UserComment."""
    if fmt not in ("jpeg", "webp"):
        raise ValueError(f"unsupported export format {fmt!r}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}-", suffix=".tmp", dir=dest.parent)
    try:
        make_shareable(fd)
        with Image.open(src) as im:
            rgb = im.convert("RGB")
        exif = exif_with_user_comment(text)
        if fmt == "jpeg" and len(exif) > JPEG_EXIF_LIMIT:
            raise ValueError(
                f"The parameters of {src.name} are too long for a JPEG's EXIF (64 KB); export as WebP or PNG."
            )
        with os.fdopen(fd, "wb") as f:
            rgb.save(f, format=fmt.upper(), quality=quality, exif=exif)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

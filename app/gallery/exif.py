"""JPEG and WebP copies with the infotext in EXIF UserComment, where A1111 and Civitai look for it.

UserComment (tag 0x9286 in the Exif IFD) starts with an 8-byte character-code prefix; we write
`UNICODE\\0` and UTF-16 big-endian text, the form A1111's JPEG/WebP saving produces, and read the usual
variants (UNICODE in either byte order, ASCII, undefined).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from PIL import Image

log = logging.getLogger(__name__)

EXIF_IFD = 0x8769
USER_COMMENT = 0x9286
_UNICODE = b"UNICODE\0"
_ASCII = b"ASCII\0\0\0"


def encode_user_comment(text: str) -> bytes:
    return _UNICODE + text.encode("utf-16-be")


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
    with Image.open(path) as im:
        raw = im.getexif().get_ifd(EXIF_IFD).get(USER_COMMENT)
    return None if raw is None else decode_user_comment(raw)


def save_with_user_comment(src: Path, dest: Path, text: str, fmt: str, quality: int = 92) -> None:
    """Convert `src` to JPEG or WebP at `dest` (atomically) with `text` in EXIF UserComment."""
    if fmt not in ("jpeg", "webp"):
        raise ValueError(f"unsupported export format {fmt!r}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}-", suffix=".tmp", dir=dest.parent)
    try:
        with Image.open(src) as im:
            rgb = im.convert("RGB")
        exif = Image.Exif()
        exif.get_ifd(EXIF_IFD)[USER_COMMENT] = encode_user_comment(text)
        with os.fdopen(fd, "wb") as f:
            rgb.save(f, format=fmt.upper(), quality=quality, exif=exif.tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

"""Thumbnails cached on disk, keyed by the source's path, size and modification time.

`ensure_thumbnail` is a plain blocking function: the UI calls it from a QThreadPool task, never on the UI
thread. A cache entry is written atomically, so a crash leaves either a whole thumbnail or none.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

from PIL import Image

log = logging.getLogger(__name__)

THUMB_SIZE = 256


def cache_key(src: Path, size: int = THUMB_SIZE) -> str:
    """Raises FileNotFoundError when the source is gone (the gallery shows it as missing)."""
    stat = Path(src).stat()
    raw = f"{Path(src).resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{size}"
    return hashlib.sha1(raw.encode("utf-8")).hexdigest()


def thumbnail_path(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / key[:2] / f"{key}.jpg"


def make_thumbnail(src: Path, size: int = THUMB_SIZE) -> Image.Image:
    with Image.open(src) as im:
        im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale
        im.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=2.0)
        return im.convert("RGB")


def ensure_thumbnail(cache_dir: Path, src: Path, size: int = THUMB_SIZE) -> Path:
    key = cache_key(src, size)
    path = thumbnail_path(cache_dir, key)
    if path.exists():
        return path
    image = make_thumbnail(src, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".thumb-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            image.save(f, format="JPEG", quality=85)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

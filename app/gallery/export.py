"""Exporting a set of images: to a folder or a .zip, with the files byte-identical (so every metadata chunk
survives), a labelled contact sheet and a JSON manifest. Optionally JPEG/WebP copies with EXIF metadata."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from app.gallery.db import ImageRecord
from app.gallery.grid_image import contact_sheet
from app.gallery.labels import summary
from app.gallery.thumbnails import make_thumbnail
from app.metadata.a1111 import infotext_of
from app.metadata.exif import save_with_user_comment
from app.metadata.file_modes import make_shareable
from app.metadata.png_info import save_png

log = logging.getLogger(__name__)

MANIFEST_FORMAT = "sd35-studio.export"
CONTACT_SHEET = "contact-sheet.png"
MANIFEST = "manifest.json"
FORMATS = ("original", "jpeg", "webp")
DEFAULT_QUALITY = 92


@dataclass(frozen=True, slots=True)
class ExportReport:
    destination: Path
    exported: int
    missing: tuple[Path, ...]  # records whose file no longer exists


def _unique_names(records: Sequence[ImageRecord], fmt: str) -> list[str]:
    taken: set[str] = set()
    names = []
    for r in records:
        suffix = r.path.suffix if fmt == "original" else (".jpg" if fmt == "jpeg" else ".webp")
        stem, n = r.path.stem, 2
        name = f"{stem}{suffix}"
        while name.lower() in taken or name in (CONTACT_SHEET, MANIFEST):
            name = f"{stem}-{n}{suffix}"
            n += 1
        taken.add(name.lower())
        names.append(name)
    return names


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def export_images(
    records: Sequence[ImageRecord],
    destination: Path,
    *,
    as_zip: bool = False,
    fmt: str = "original",
    quality: int = DEFAULT_QUALITY,
    title: str = "",
    cancel: threading.Event | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ExportReport:
    """Blocking; run it on a worker thread. A folder export writes into `destination` (created if needed);
    a zip export writes `destination` (a .zip path) atomically. `quality` (1-100) applies to JPEG and WebP."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}")
    present = [r for r in records if r.path.is_file()]
    missing = tuple(r.path for r in records if not r.path.is_file())
    with tempfile.TemporaryDirectory(prefix="sd35-export-") as tmp:
        staging = Path(tmp) / "export" if as_zip else Path(destination)
        staging.mkdir(parents=True, exist_ok=True)
        names = _unique_names(present, fmt)
        entries, thumbs = [], []
        for i, (record, name) in enumerate(zip(present, names, strict=True)):
            if cancel is not None and cancel.is_set():
                break
            target = staging / name
            if fmt == "original":
                shutil.copyfile(record.path, target)  # byte for byte: every chunk stays as it was
            else:
                save_with_user_comment(record.path, target, infotext_of(record.params), fmt, quality)
            entries.append(_manifest_entry(record, name, target))
            rated = f"  ·  rated {record.rating}/5" if record.rating else ""
            thumbs.append((_thumb(record.path), f"{name}{rated}\n{summary(record.params)}"))
            if on_progress is not None:
                on_progress(i + 1, len(present))
        sheet = contact_sheet(thumbs, title=title or "SD3.5 Studio")
        save_png(staging / CONTACT_SHEET, np.asarray(sheet), f"Contact sheet: {len(entries)} images")
        manifest = {
            "format": MANIFEST_FORMAT,
            "version": 1,
            "exported": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "title": title,
            "contact_sheet": CONTACT_SHEET,
            "images": entries,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
        if as_zip:
            _zip_folder(staging, Path(destination))
    return ExportReport(Path(destination), len(entries), missing)


def _thumb(path: Path) -> Image.Image | None:
    try:
        return make_thumbnail(path)
    except (OSError, UnidentifiedImageError):
        return None


def _manifest_entry(record: ImageRecord, name: str, target: Path) -> dict[str, object]:
    return {
        "file": name,
        "sha256": _sha256(target),
        "original_path": str(record.path),
        "rating": record.rating,
        "job_id": record.job_id,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created)),
        "source": record.source,
        "infotext": infotext_of(record.params) if record.source == "sd35-studio" else None,
        "parameters": record.params.to_dict(),
    }


def _zip_folder(folder: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{destination.stem}-", suffix=".zip.tmp", dir=destination.parent)
    try:
        make_shareable(fd)  # a zip to hand to someone else: the usual permissions, not mkstemp's 0600
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w") as zf:
                for item in sorted(folder.iterdir()):
                    compress = zipfile.ZIP_DEFLATED if item.suffix == ".json" else zipfile.ZIP_STORED
                    zf.write(item, item.name, compress_type=compress)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, destination)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

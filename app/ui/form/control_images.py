"""Control images that exist only in the window (pasted from the clipboard, the canvas's unsaved picture): a
scratch PNG while the form uses them, then — when a job is built — a copy in the output folder that the image's
metadata points to, so recall finds it again after the scratch folder is gone.

The copy is content-addressed (`<output>/control-images/<sha256[:16]>.png`): the same picture used by many jobs
is stored once. Images the user opened from a file stay where they are (the metadata names that file).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from PySide6.QtGui import QImage

from app.inference.api.control import ControlSpec
from app.metadata.control_image_search import KEPT_FOLDER_NAME, KEPT_HASH_DIGITS  # recall looks there too

log = logging.getLogger(__name__)

SCRATCH_FOLDER_NAME = "sd35-studio-control"
_HASH_DIGITS = KEPT_HASH_DIGITS


def scratch_folder() -> Path:
    return Path(tempfile.gettempdir()) / SCRATCH_FOLDER_NAME


def is_scratch(path: Path) -> bool:
    return Path(path).parent == scratch_folder()


def _sha(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_scratch_image(image: QImage) -> Path:
    """The picture as a scratch PNG named by its content; raises OSError with the reason when it cannot."""
    folder = scratch_folder()
    folder.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=".writing-", suffix=".png", dir=folder)
    os.close(handle)  # QImage writes the file itself
    if not image.save(name, "PNG"):
        Path(name).unlink(missing_ok=True)
        raise OSError(f"cannot write {name}")
    target = folder / f"control-{_sha(Path(name))[:_HASH_DIGITS]}.png"
    Path(name).replace(target)
    return target


def keep_control_images(specs: tuple[ControlSpec, ...], output_root: Path) -> tuple[ControlSpec, ...]:
    """The specs with every scratch control image copied into the output folder (and pointing there).
    Raises OSError when a copy cannot be written (the caller says so; nothing is sent)."""
    out = []
    for spec in specs:
        if is_scratch(spec.image) and Path(spec.image).is_file():
            digest = _sha(spec.image)
            target = Path(output_root) / KEPT_FOLDER_NAME / f"{digest[:_HASH_DIGITS]}.png"
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(spec.image, target)
                log.info("kept control image %s as %s", spec.image.name, target)
            spec = replace(spec, image=target, image_hash=digest)
        out.append(spec)
    return tuple(out)

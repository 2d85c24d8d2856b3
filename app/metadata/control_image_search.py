"""Recall of a control image that has moved: the metadata records the control image's path and SHA-256; when that
path is gone (the output folder was moved or copied to another computer), the kept copy is looked for by its
content-addressed name (`control-images/<sha256[:16]>.png`, or the recorded file name) in the `control-images/`
folders near the recalled picture and in the current output folder. Only a file whose SHA-256 equals the recorded
one is used. Torch-free.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from app.inference.api.control import ControlSpec
from app.metadata.controlnet_meta import file_sha256

log = logging.getLogger(__name__)

KEPT_FOLDER_NAME = (
    "control-images"  # <output root>/control-images/<sha256[:16]>.png (app.ui.form.control_images)
)
KEPT_HASH_DIGITS = 16


def kept_image_folders(image: Path | None, output_root: Path | None) -> tuple[Path, ...]:
    """Where a picture's kept control images may be: next to it, one level up (dated output folders), and in
    the current output folder."""
    places: list[Path] = []
    if image is not None:
        places += [Path(image).parent, Path(image).parent.parent]
    if output_root is not None:
        places.append(Path(output_root))
    return tuple(dict.fromkeys(p / KEPT_FOLDER_NAME for p in places))


def find_moved_control_images(
    specs: tuple[ControlSpec, ...], folders: Iterable[Path]
) -> tuple[ControlSpec, ...]:
    """The specs with each missing control image replaced by a file of the same SHA-256 found in `folders`
    (by its kept name or its recorded name); a spec without a recorded hash, or with its image in place, is kept."""
    folders = tuple(folders)
    out = []
    for spec in specs:
        image = Path(spec.image)
        if folders and spec.image_hash and image.name and not image.is_file():
            found = _same_content(spec.image_hash, image.name, folders)
            if found is not None:
                log.info("control image %s found again as %s", image, found)
                spec = replace(spec, image=found)
        out.append(spec)
    return tuple(out)


def _same_content(digest: str, name: str, folders: tuple[Path, ...]) -> Path | None:
    names = dict.fromkeys([f"{digest[:KEPT_HASH_DIGITS].lower()}.png", name])
    for folder in folders:
        for candidate in (folder / n for n in names):
            if candidate.is_file() and file_sha256(candidate) == digest.lower():
                return candidate
    return None

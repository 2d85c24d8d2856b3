"""Where finished images go: the output folder, a dated subfolder, and names that never overwrite.

Images are written by the inference worker as soon as they finish (atomic PNG with the parameters), so an image
the user has seen is always on disk. Qt-free except `default_output_root`, which asks QStandardPaths for the
user's Pictures folder.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

APP_FOLDER = "SD3.5 Studio"
_NUMBERED = re.compile(r"^(\d{5,})-")


def default_output_root() -> Path:
    """`<Pictures>/SD3.5 Studio` (QStandardPaths, so XDG user dirs and the test mode are honoured)."""
    from PySide6.QtCore import QStandardPaths

    pictures = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.PicturesLocation)
    return Path(pictures or Path.home()) / APP_FOLDER


@dataclass(frozen=True, slots=True)
class OutputTarget:
    """`root` itself when `dated` is False (the `--output-dir` contract), else `root/<YYYY-MM-DD>`."""

    root: Path
    dated: bool = True

    def folder(self, today: dt.date | None = None) -> Path:
        return self.root / (today or dt.date.today()).isoformat() if self.dated else self.root


class ImageNamer:
    """`00001-<seed>.png`, `00002-<seed>.png`, ... per folder, continuing after the files already there."""

    def __init__(self) -> None:
        self._next: dict[Path, int] = {}
        self._lock = threading.Lock()

    def path_for(self, folder: Path, seed: int) -> Path:
        with self._lock:
            if folder not in self._next:
                self._next[folder] = _first_free_number(folder)
            number = self._next[folder]
            path = folder / f"{number:05d}-{seed}.png"
            while path.exists():  # another program wrote into the folder meanwhile
                number += 1
                path = folder / f"{number:05d}-{seed}.png"
            self._next[folder] = number + 1
            return path


def _first_free_number(folder: Path) -> int:
    highest = 0
    try:
        for entry in folder.iterdir():
            match = _NUMBERED.match(entry.name)
            if match:
                highest = max(highest, int(match.group(1)))
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cannot list %s: %s", folder, exc)
    return highest + 1

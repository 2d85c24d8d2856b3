"""Where images go and what they are called: the one naming policy of every writer (window, CLI, gallery, X/Y).

- The window and the gallery: `<root>/<YYYY-MM-DD>/00001-<seed>.png`, numbered per folder, continuing after
  the files already there, never overwriting (`OutputTarget` + `ImageNamer`). `--output-dir` drops the date.
- The CLI's `--out lighthouse.png`: that name for one image; `lighthouse-<seed>.png` for each of several
  (`batch_path`).
- An X/Y plot sheet: `xy-<YYYYmmdd-HHMMSS>.png` next to its cells (`sheet_path`).

Qt-free: the window finds the default root (the user's Pictures folder) itself.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

APP_FOLDER = "SD3.5 Studio"
_NUMBERED = re.compile(r"^(\d{5,})-")


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

    def path_for(self, folder: Path, seed: int | None) -> Path:
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


def batch_path(out: Path, seed: int, count: int) -> Path:
    """The CLI's `--out`: the path itself for one image; `<stem>-<seed><suffix>` for each of several."""
    return out if count == 1 else out.with_name(f"{out.stem}-{seed}{out.suffix or '.png'}")


def sheet_path(folder: Path, when: float | None = None) -> Path:
    """A new X/Y sheet's path in `folder`: `xy-<time>.png`, then `-2`, `-3`... when the name is taken."""
    stem = f"xy-{time.strftime('%Y%m%d-%H%M%S', time.localtime(when))}"
    path, n = folder / f"{stem}.png", 1
    while path.exists():
        n += 1
        path = folder / f"{stem}-{n}.png"
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

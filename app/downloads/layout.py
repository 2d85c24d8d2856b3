"""Where downloads go on disk: the destination folder, and the partial files kept for resuming.

A file being downloaded lives in `<destination>/.downloads/<local path>.<etag>.incomplete` and is moved to
`<destination>/<local path>` only once it is complete and its checksum matches. A cancelled or failed download
therefore leaves resumable `.incomplete` data in the hidden folder and never a finished-looking file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path

log = logging.getLogger(__name__)

PARTIAL_DIR = ".downloads"
PARTIAL_SUFFIX = ".incomplete"


def user_data_dir(env: Mapping[str, str] | None = None, home: Path | None = None) -> Path:
    """The per-user data folder of SD3.5 Studio (XDG on Linux, the platform's usual place elsewhere); `env` and
    `home` stand in for the process's environment and home folder (tests)."""
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    if sys.platform == "win32":
        base = Path(env.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(env.get("XDG_DATA_HOME") or home / ".local" / "share")
    return base / "sd35-studio"


def default_models_dir(env: Mapping[str, str] | None = None, home: Path | None = None) -> Path:
    return user_data_dir(env, home) / "models"


def partial_path(destination: Path, local_path: str, etag: str) -> Path:
    return destination / PARTIAL_DIR / f"{local_path}.{etag}{PARTIAL_SUFFIX}"


def find_partials(destination: Path, local_path: str) -> list[Path]:
    """Partial files of one destination file, whatever version (etag) they belong to."""
    target = destination / PARTIAL_DIR / local_path
    try:
        siblings = list(target.parent.iterdir())
    except OSError:
        return []
    prefix = f"{target.name}."
    return sorted(
        p for p in siblings if p.name.startswith(prefix) and p.name.endswith(PARTIAL_SUFFIX) and p.is_file()
    )


def remove_empty_partial_dirs(destination: Path) -> None:
    """Tidy `.downloads/` once nothing is left in it (keeps anything still holding partial data)."""
    root = destination / PARTIAL_DIR
    if not root.is_dir():
        return
    folders = sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
    for folder in [*folders, root]:
        with contextlib.suppress(OSError):  # not empty: still holds partial data
            folder.rmdir()

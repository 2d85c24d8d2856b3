"""Permissions of files we write through a temporary file (mkstemp creates them 0600)."""

from __future__ import annotations

import os
import threading

_lock = threading.Lock()


def usual_file_mode() -> int:
    """0666 minus the process umask: what `open(..., "w")` would have given the file."""
    with _lock:  # reading the umask means setting it; keep other threads from seeing the 0 in between
        umask = os.umask(0)
        os.umask(umask)
    return 0o666 & ~umask


def make_shareable(fd: int) -> None:
    """Give a file from `tempfile.mkstemp` the usual permissions before it replaces the final name."""
    if hasattr(os, "fchmod"):  # POSIX only; Windows has no mode bits to fix
        os.fchmod(fd, usual_file_mode())

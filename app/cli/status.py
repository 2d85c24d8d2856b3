"""Exit statuses of the commands, and stopping quietly when the reader of stdout has gone away."""

from __future__ import annotations

import os
import sys

EXIT_ERROR = 1  # every refused input or failed job: one line on stderr
EXIT_CLOSED_STDOUT = 128 + 13  # what a shell reports for a tool stopped by SIGPIPE (`... | head`)


def closed_stdout() -> int:
    """The reader of stdout went away (`| head`, `| grep -q`): stop quietly, as command-line tools do. Python's
    recipe: point stdout at devnull, so that the flush at interpreter exit cannot fail a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a file descriptor (tests capture it)
        pass
    return EXIT_CLOSED_STDOUT

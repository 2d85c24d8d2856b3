"""How any part of the window tells the user something, without knowing where the message shows.

The window implements `Notifier` with its banner (errors and guidance, above the canvas) and its status bar
(passing notes); the tools, the gallery hookup and the commands receive one instead of reaching for the widgets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

# A button on the message: its label and what it does ("Locate…", open the folder dialog).
Action = tuple[str, Callable[[], None]]


class Notifier(Protocol):
    def error(self, text: str, action: Action | None = None) -> None:
        """Something failed: shown until dismissed, with what to do."""

    def info(self, text: str, action: Action | None = None) -> None:
        """Guidance the user should read before going on (a missing model, an invalid field)."""

    def status(self, text: str) -> None:
        """A passing note ("Settings applied", "X/Y plot saved to …")."""

    def clear(self) -> None:
        """Take the shown message down (a new job started)."""

"""What the gallery dock shows when the gallery database cannot be opened: what happened, where, and what to do.

A damaged database (or a folder in its place) is kept as it is until the user chooses: "Start a new gallery"
renames it aside (`gallery.sqlite3.damaged-<date>-<time>`, next to it) and opens a new one; "Rebuild from the
output folder" does the same and then imports the output folder's images from their metadata. A read-only or
full disk needs the user first, so only "Try again" is offered. Images on disk are never touched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from app.gallery.db_open import set_aside
from app.gallery.errors import GalleryOpenError

log = logging.getLogger(__name__)

_TITLE = "The gallery could not be opened"
_KEPT = (
    "Your images are not affected. Starting a new gallery keeps the damaged file next to it, renamed; "
    "ratings and saved filters stay in that file."
)


class DatabaseProblemPanel(QWidget):
    """Emits `resolved(rebuild)` once the damaged file is set aside (rebuild: import the output folder next),
    or `retry_requested` for a problem the user has fixed outside the app."""

    resolved = Signal(bool)
    retry_requested = Signal()

    def __init__(self, error: GalleryOpenError, output_folder: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("galleryProblem")
        self.error = error
        self.output_folder = output_folder
        title = QLabel(_TITLE)
        title.setStyleSheet("font-weight: bold; font-size: 14px;")
        self.message = _wrapped(str(error))
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.hint = _wrapped(_KEPT if error.damaged else "Your images are not affected.")
        self.hint.setStyleSheet("color: palette(placeholder-text);")
        self.status = _wrapped("")
        self.status.setStyleSheet("color: #e0a040;")
        self.status.hide()
        self.new_button = QPushButton("Start a new gallery")
        self.new_button.setToolTip(f"Rename {error.path.name} aside and start an empty gallery")
        self.rebuild_button = QPushButton("Rebuild from the output folder")
        self.rebuild_button.setToolTip(f"Start a new gallery and import the images in {output_folder}")
        self.retry_button = QPushButton("Try again")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 16, 12, 12)
        layout.setSpacing(10)
        for widget in (title, self.message, self.hint, self.status):
            layout.addWidget(widget)
        for button in (self.new_button, self.rebuild_button, self.retry_button):
            button.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
            layout.addWidget(button)
        layout.addStretch(1)
        self.new_button.setVisible(error.damaged)
        self.rebuild_button.setVisible(error.damaged)
        self.retry_button.setVisible(not error.damaged)
        self.new_button.clicked.connect(lambda: self._start_new(rebuild=False))
        self.rebuild_button.clicked.connect(lambda: self._start_new(rebuild=True))
        self.retry_button.clicked.connect(self.retry_requested)

    def _start_new(self, rebuild: bool) -> None:
        try:
            kept = set_aside(self.error.path)
        except OSError as exc:
            self.show_status(
                f"The damaged file could not be renamed ({exc.strerror or exc}); nothing was changed."
            )
            return
        log.info("starting a new gallery; the damaged one is kept as %s", kept)
        self.resolved.emit(rebuild)

    def show_status(self, text: str) -> None:
        self.status.setText(text)
        self.status.setVisible(bool(text))


def _wrapped(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # never widens the dock
    return label


def offer_repair(
    error: GalleryOpenError,
    output_folder: Path,
    show: Callable[[QWidget], None],
    reopen: Callable[[], bool],
    rebuild: Callable[[Path], None],
) -> DatabaseProblemPanel:
    """Show the problem with `show`; on the user's choice call `reopen()` (True when the gallery opened; it
    shows the next problem itself otherwise) and, for a rebuild, `rebuild(output_folder)`."""
    panel = DatabaseProblemPanel(error, output_folder)

    def on_resolved(rebuild_wanted: bool) -> None:
        if reopen() and rebuild_wanted:
            rebuild(output_folder)

    panel.resolved.connect(on_resolved)
    panel.retry_requested.connect(reopen)
    show(panel)
    return panel

"""Help menu: getting models, the keyboard shortcuts, the log folder, About."""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QDialog, QLabel, QMessageBox, QVBoxLayout, QWidget

from app import __version__
from app.ui.window.settings_store import log_folder

log = logging.getLogger(__name__)


class HelpCommands:
    def __init__(
        self,
        parent: QWidget,
        getting_models: Callable[[], None],
        shortcuts: Callable[[], list[tuple[str, str]]],
    ) -> None:
        self._parent, self._getting_models, self._shortcuts = parent, getting_models, shortcuts

    def handlers(self) -> dict[str, Callable[[], object]]:
        return {
            "getting_models": self._getting_models,
            "shortcuts": self.show_shortcuts,
            "open_logs": lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(log_folder()))),
            "about": self.about,
        }

    def show_shortcuts(self) -> None:
        rows = "".join(
            f"<tr><td>{name}</td><td>&nbsp;&nbsp;<b>{keys}</b></td></tr>" for name, keys in self._shortcuts()
        )
        dialog = QDialog(self._parent)
        dialog.setWindowTitle("Keyboard shortcuts")
        layout = QVBoxLayout(dialog)
        layout.addWidget(QLabel(f"<table>{rows}</table>", dialog))
        dialog.show()

    def about(self) -> None:
        QMessageBox.about(
            self._parent,
            "About SD3.5 Studio",
            f"<b>SD3.5 Studio {__version__}</b><br>Stable Diffusion 3.5 on your own computer.<br><br>"
            "The SD3.5 models are © Stability AI, under the Stability AI Community License.",
        )

"""A dismissable message above the canvas: errors with what to do, never a modal dialog that blocks work."""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

log = logging.getLogger(__name__)


class MessageBanner(QFrame):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("messageBanner")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 8, 8, 8)
        layout.setSpacing(8)
        self.text = QLabel("", self)
        self.text.setObjectName("bannerText")
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.action_button = QPushButton("", self)
        self.close_button = QPushButton("Dismiss", self)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.action_button)
        layout.addWidget(self.close_button)
        self.close_button.clicked.connect(self.hide)
        self.action_button.clicked.connect(self._on_action_button_clicked)
        self._action: Callable[[], None] | None = None
        self.hide()

    def show_message(
        self, text: str, *, severity: str = "error", action: tuple[str, Callable[[], None]] | None = None
    ) -> None:
        self.text.setText(text)
        self.setProperty("severity", severity)
        self.style().unpolish(self)
        self.style().polish(self)
        self._action = action[1] if action else None
        self.action_button.setText(action[0] if action else "")
        self.action_button.setVisible(action is not None)
        self.show()

    def message(self) -> str:
        return self.text.text() if self.isVisible() else ""

    def _on_action_button_clicked(self) -> None:
        if self._action is not None:
            self.hide()
            self._action()

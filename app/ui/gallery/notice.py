"""The message strip above the gallery: a notice with an optional Undo button that goes away by itself."""

from __future__ import annotations

import logging

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

log = logging.getLogger(__name__)

NOTICE_SECONDS = 8


class NoticeBar(QWidget):
    undo_clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setStyleSheet("background: #3a3320; color: #f2e3b3; padding: 6px; border-radius: 4px;")
        self.undo_button = QPushButton("Undo")
        self.close_button = QPushButton("✕")
        self.close_button.setFlat(True)
        self.sticky = ""  # a notice that stays until closed (the read-only database message)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.label, 1)
        row.addWidget(self.undo_button)
        row.addWidget(self.close_button)
        self._timer = QTimer(self, singleShot=True, interval=NOTICE_SECONDS * 1000)
        self._timer.timeout.connect(self._on_timer_timeout)
        self.undo_button.clicked.connect(self.undo_clicked)
        self.close_button.clicked.connect(self.hide_notice)
        self.hide_notice()

    def show_notice(self, text: str, undo: bool = False) -> None:
        """One without an Undo button goes away by itself after a while."""
        self.label.setText(text)
        if text and not undo:
            self._timer.start()
        else:
            self._timer.stop()
        for widget in (self, self.label, self.close_button):
            widget.setVisible(bool(text))
        self.undo_button.setVisible(undo and bool(text))

    def hide_notice(self) -> None:
        for widget in (self, self.label, self.undo_button, self.close_button):
            widget.setVisible(False)

    def _on_timer_timeout(self) -> None:
        if not self.sticky or self.label.text() != self.sticky:
            self.hide_notice()

"""The message strip above the gallery: a notice with an optional Undo button that goes away by itself, or one
with details (why files were skipped) that stays until closed and shows them on a click of Details."""

from __future__ import annotations

import logging

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget

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
        self.details_button = QPushButton("Details")
        self.details_button.setCheckable(True)
        self.close_button = QPushButton("✕")
        self.close_button.setFlat(True)
        self.details = QPlainTextEdit(readOnly=True)
        self.details.setMaximumHeight(140)
        self.sticky = ""  # a notice that stays until closed (the read-only database message)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.label, 1)
        row.addWidget(self.details_button)
        row.addWidget(self.undo_button)
        row.addWidget(self.close_button)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.addLayout(row)
        column.addWidget(self.details)
        self._timer = QTimer(self, singleShot=True, interval=NOTICE_SECONDS * 1000)
        self._timer.timeout.connect(self._on_timer_timeout)
        self.undo_button.clicked.connect(self.undo_clicked)
        self.details_button.toggled.connect(self.details.setVisible)
        self.close_button.clicked.connect(self.hide_notice)
        self.hide_notice()

    def show_notice(self, text: str, undo: bool = False, details: str = "") -> None:
        """One without an Undo button or details goes away by itself after a while."""
        self.label.setText(text)
        self.label.setToolTip(details)
        self.details.setPlainText(details)
        if text and not undo and not details:
            self._timer.start()
        else:
            self._timer.stop()
        for widget in (self, self.label, self.close_button):
            widget.setVisible(bool(text))
        self.undo_button.setVisible(undo and bool(text))
        self.details_button.setVisible(bool(text and details))
        self.details_button.setChecked(False)
        self.details.setVisible(False)

    def hide_notice(self) -> None:
        for widget in (
            self,
            self.label,
            self.undo_button,
            self.details_button,
            self.details,
            self.close_button,
        ):
            widget.setVisible(False)

    def _on_timer_timeout(self) -> None:
        if not self.sticky or self.label.text() != self.sticky:
            self.hide_notice()

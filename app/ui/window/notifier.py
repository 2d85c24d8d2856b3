"""The window's `Notifier`: errors and guidance in the banner above the canvas, notes in the status bar."""

from __future__ import annotations

import logging

from PySide6.QtWidgets import QStatusBar

from app.ui.notify import Action
from app.ui.window.banner import MessageBanner

log = logging.getLogger(__name__)


class WindowNotifier:
    def __init__(self, banner: MessageBanner, status_bar: QStatusBar) -> None:
        self._banner, self._status_bar = banner, status_bar

    def error(self, text: str, action: Action | None = None) -> None:
        log.info("error shown: %s", text)
        self._banner.show_message(text, severity="error", action=action)

    def info(self, text: str, action: Action | None = None) -> None:
        self._banner.show_message(text, severity="info", action=action)

    def status(self, text: str) -> None:
        self._status_bar.showMessage(text)

    def clear(self) -> None:
        self._banner.hide()

"""Dropping an image file on the window: the file goes to one handler instead of a widget's default drop.

Without this, a PNG dropped on the prompt editor pastes its path as text. An event filter on the window and on
every child that would otherwise take the drop (text editors) claims drags that carry a single local image file
and hands the path to `on_image_dropped`; other drags (plain text, several files, non-images) pass through.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from PySide6.QtCore import QEvent, QMimeData, QObject
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QWidget

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp"})


def dropped_image(mime: QMimeData) -> Path | None:
    """The one local image file a drag carries, or None (no files, several, remote URLs, other types)."""
    if not mime.hasUrls():
        return None
    urls = mime.urls()
    if len(urls) != 1 or not urls[0].isLocalFile():
        return None
    path = Path(urls[0].toLocalFile())
    return path if path.suffix.lower() in IMAGE_SUFFIXES else None


class ImageDropFilter(QObject):
    """Claims single-image drags on the widgets it watches; calls `on_image_dropped(path)` on drop."""

    def __init__(self, on_image_dropped: Callable[[Path], None], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._on_image_dropped = on_image_dropped

    def watch(self, widgets: Iterable[QWidget]) -> None:
        for widget in widgets:
            widget.setAcceptDrops(True)
            widget.installEventFilter(self)
            viewport = getattr(widget, "viewport", None)  # scroll areas receive drops on their viewport
            if callable(viewport):
                viewport().setAcceptDrops(True)
                viewport().installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if isinstance(event, (QDragEnterEvent, QDragMoveEvent)):
            if dropped_image(event.mimeData()) is not None:
                event.acceptProposedAction()
                return True
        elif isinstance(event, QDropEvent):
            path = dropped_image(event.mimeData())
            if path is not None:
                event.acceptProposedAction()
                log.info("image dropped on the window: %s", path)
                self._on_image_dropped(path)
                return True
        return super().eventFilter(watched, event)

"""GalleryView: a virtualised QListView of thumbnail tiles with full-width group headers, and its delegate.

Only the rows on screen are painted (and so only they fetch records and thumbnails). Keys: 0-5 rate the
selection, Del moves it to the trash, Enter opens the current image; images drag out as files.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QKeyEvent, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QListView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QWidget,
)

from app.gallery.db import ImageRecord

log = logging.getLogger(__name__)

TILE = 168
CAPTION = 24
HEADER_HEIGHT = 34
SPACING = 6

BG = QColor(40, 41, 46)
PLACEHOLDER = QColor(54, 56, 62)
MUTED = QColor(150, 150, 162)
STAR = QColor(240, 180, 90)


class GalleryItemDelegate(QStyledItemDelegate):
    def __init__(self, view: QListView) -> None:
        super().__init__(view)
        self._view = view

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        if index.model().is_header(index.row()):
            return QSize(max(TILE, self._view.viewport().width() - 2 * SPACING - 4), HEADER_HEIGHT)
        return QSize(TILE, TILE + CAPTION)

    def paint(
        self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        header, pixmap, record, missing = index.model().tile(index.row())
        if header is not None:
            self._paint_header(painter, option.rect, header)
        else:
            self._paint_tile(painter, option, pixmap, record, missing)
        painter.restore()

    def _paint_header(self, painter: QPainter, rect: QRect, text: str) -> None:
        font = QFont(painter.font())
        font.setBold(True)
        painter.setFont(font)
        # Headers sit on the view's own background (light or dark theme), not on a tile: its text colour.
        palette = self._view.palette()
        painter.setPen(palette.color(QPalette.ColorRole.Text))
        text_rect = rect.adjusted(4, 0, -4, -6)
        elided = painter.fontMetrics().elidedText(text, Qt.TextElideMode.ElideRight, text_rect.width())
        painter.drawText(text_rect, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignBottom, elided)
        painter.setPen(QPen(palette.color(QPalette.ColorRole.Mid), 1))
        painter.drawLine(rect.left() + 4, rect.bottom() - 1, rect.right() - 4, rect.bottom() - 1)

    def _paint_tile(
        self, painter: QPainter, option: QStyleOptionViewItem, pixmap: QPixmap | None,
        record: ImageRecord | None, missing: bool,
    ) -> None:  # fmt: skip
        rect = option.rect
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        accent = option.palette.color(QPalette.ColorRole.Highlight)
        image_rect = QRect(rect.left(), rect.top(), rect.width(), TILE)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(BG)
        painter.drawRoundedRect(rect, 6, 6)
        inner = image_rect.adjusted(4, 4, -4, -4)
        if missing:
            painter.setBrush(QColor(70, 40, 40))
            painter.drawRoundedRect(inner, 4, 4)
            painter.setPen(QColor(255, 170, 160))
            painter.drawText(inner, Qt.AlignmentFlag.AlignCenter, "⚠\nFile missing")
        elif pixmap is None or pixmap.isNull():
            painter.setBrush(PLACEHOLDER)
            painter.drawRoundedRect(inner, 4, 4)
        else:
            size = pixmap.size().scaled(inner.size(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRect(0, 0, size.width(), size.height())
            target.moveCenter(inner.center())
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawPixmap(target, pixmap)
        caption = QRect(rect.left() + 6, rect.top() + TILE, rect.width() - 12, CAPTION - 4)
        if record is not None:
            painter.setPen(MUTED)
            seed = f"seed {record.params.seed}" if record.params.seed is not None else record.path.stem
            metrics = painter.fontMetrics()
            stars = "★" * record.rating
            star_width = metrics.horizontalAdvance(stars) + 4 if stars else 0
            text = metrics.elidedText(seed, Qt.TextElideMode.ElideRight, caption.width() - star_width)
            painter.drawText(caption, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, text)
            if stars:
                painter.setPen(STAR)
                painter.drawText(caption, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, stars)
        if selected:
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.setPen(QPen(accent.lighter(130), 3))
            painter.drawRoundedRect(rect.adjusted(1, 1, -1, -1), 6, 6)


class GalleryView(QListView):
    rating_pressed = Signal(int)
    delete_pressed = Signal()
    copy_pressed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(True)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(400)
        self.setMovement(QListView.Movement.Static)
        self.setSpacing(SPACING)
        self.setUniformItemSizes(False)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.verticalScrollBar().setSingleStep(24)
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragOnly)
        self.setItemDelegate(GalleryItemDelegate(self))
        self.setFrameShape(QFrame.Shape.NoFrame)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key, mods = event.key(), event.modifiers()
        if Qt.Key.Key_0 <= key <= Qt.Key.Key_5 and not mods & ~Qt.KeyboardModifier.KeypadModifier:
            self.rating_pressed.emit(key - Qt.Key.Key_0)
        elif key in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
            self.delete_pressed.emit()
        elif key == Qt.Key.Key_C and mods & Qt.KeyboardModifier.ControlModifier:
            self.copy_pressed.emit()
        else:
            super().keyPressEvent(event)

"""The queue panel (pending jobs, removable) and the strip of recent results (the gallery issue grows it)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import QIcon, QImage, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QListView,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.ui.generation.controller import JOB_ID_ROLE, JobQueueListModel
from app.ui.generation.jobs import ImageResult, QueuedJob

log = logging.getLogger(__name__)

KEEP_FULL_IMAGES = 24  # newest results kept in memory; older ones are read back from their files
MAX_RECENT = 300
RESULT_ROLE = Qt.ItemDataRole.UserRole + 2


class QueuePanel(QWidget):
    remove_requested = Signal(int)  # job id
    clear_requested = Signal()

    def __init__(self, queue: JobQueueListModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 8)
        layout.setSpacing(6)
        self.running = QLabel("Nothing running.", self)
        self.running.setObjectName("hintLabel")
        self.running.setWordWrap(True)
        layout.addWidget(self.running)
        self.view = QListView(self)
        self.view.setObjectName("queueList")
        self.view.setModel(queue)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setWordWrap(True)
        self.view.setSpacing(2)
        self.view.setToolTip("Jobs waiting to run, in order. Del removes the selected ones.")
        layout.addWidget(self.view, 1)
        buttons = QHBoxLayout()
        self.remove_button = QPushButton("Remove", self)
        self.remove_button.setToolTip("Remove the selected jobs from the queue (Del).")
        self.clear_button = QPushButton("Clear queue", self)
        self.clear_button.setToolTip("Remove every waiting job; the running job goes on.")
        buttons.addWidget(self.remove_button)
        buttons.addWidget(self.clear_button)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        self.remove_button.clicked.connect(self._remove_selected)
        self.clear_button.clicked.connect(self.clear_requested)
        delete = QShortcut(QKeySequence(QKeySequence.StandardKey.Delete), self.view)
        delete.setContext(Qt.ShortcutContext.WidgetShortcut)
        delete.activated.connect(self._remove_selected)
        queue.modelReset.connect(self._update_buttons)
        self._update_buttons()

    def show_running(self, job: QueuedJob | None) -> None:
        self.running.setText(f"Running: {job.summary(60)}" if job else "Nothing running.")

    def _remove_selected(self) -> None:
        for index in self.view.selectionModel().selectedIndexes():
            self.remove_requested.emit(int(index.data(JOB_ID_ROLE)))

    def _update_buttons(self) -> None:
        has_jobs = self.view.model().rowCount() > 0
        self.remove_button.setEnabled(has_jobs)
        self.clear_button.setEnabled(has_jobs)


class RecentResultsListModel(QAbstractListModel):
    """Finished images of this session, newest first."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._results: list[ImageResult] = []
        self._icons: list[QIcon] = []

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._results)

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        if not index.isValid() or not 0 <= index.row() < len(self._results):
            return None
        result = self._results[index.row()]
        if role == Qt.ItemDataRole.DecorationRole:
            return self._icons[index.row()]
        if role == Qt.ItemDataRole.ToolTipRole:
            where = str(result.path) if result.path else f"not saved: {result.save_error}"
            return f"{result.infotext}\n\n{where}"
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return f"Image with seed {result.seed}"
        if role == RESULT_ROLE:
            return result
        return None

    def add(self, result: ImageResult) -> None:
        thumbnail = result.thumbnail or result.image.scaled(112, 112, Qt.AspectRatioMode.KeepAspectRatio)
        self.beginInsertRows(QModelIndex(), 0, 0)
        self._results.insert(0, result)
        self._icons.insert(0, QIcon(QPixmap.fromImage(thumbnail)))
        self.endInsertRows()
        for row in range(KEEP_FULL_IMAGES, len(self._results)):  # release old full-size pixels (on disk)
            old = self._results[row]
            if old.path is not None and not old.image.isNull():
                self._results[row] = replace(old, image=QImage())
        if len(self._results) > MAX_RECENT:
            self.beginRemoveRows(QModelIndex(), MAX_RECENT, len(self._results) - 1)
            del self._results[MAX_RECENT:], self._icons[MAX_RECENT:]
            self.endRemoveRows()

    def remove_paths(self, paths: list[Path]) -> None:
        """Images that left their files (moved to the trash) leave the strip too."""
        gone = {str(p) for p in paths}
        for row in reversed(range(len(self._results))):
            path = self._results[row].path
            if path is not None and str(path) in gone:
                self.beginRemoveRows(QModelIndex(), row, row)
                del self._results[row], self._icons[row]
                self.endRemoveRows()

    def result(self, row: int) -> ImageResult:
        return self._results[row]

    def full_image(self, row: int) -> QImage:
        """The full-size image of `row`, read back from its file when it is no longer in memory."""
        result = self._results[row]
        if result.image.isNull() and result.path is not None:
            return QImage(str(result.path))
        return result.image


class RecentStrip(QListView):
    result_activated = Signal(object, object)  # ImageResult, QImage (full size)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("recentStrip")
        self.results = RecentResultsListModel(self)
        self.setModel(self.results)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(False)
        self.setMovement(QListView.Movement.Static)
        self.setIconSize(QSize(96, 96))
        self.setGridSize(QSize(106, 106))
        self.setUniformItemSizes(True)
        self.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setMinimumHeight(118)
        self.setToolTip("Recent results. Click one to show it on the canvas.")
        self.clicked.connect(self._on_view_clicked)
        self.activated.connect(self._on_view_clicked)

    def add(self, result: ImageResult) -> None:
        self.results.add(result)
        self.scrollToTop()

    def remove_paths(self, paths: list[Path]) -> None:
        self.results.remove_paths(paths)

    def _on_view_clicked(self, index: QModelIndex) -> None:
        if index.isValid():
            self.result_activated.emit(self.results.result(index.row()), self.results.full_image(index.row()))

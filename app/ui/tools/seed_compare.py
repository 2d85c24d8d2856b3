"""Compare Seeds: the current settings as one job of N images, shown live side by side, one tile per seed.

Each tile paints its own image's step previews (`StepInfo.image_index`), has a Stop button that cancels only
that image (`GenerationController.cancel_image`), and shows the final image when it is done. When the job
ends, "Open in compare" hands the saved images to the gallery's compare view. The page sits in the window's
central stack next to the canvas.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import replace

from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPaintEvent, QPalette, QPixmap
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app.inference.api.request import MAX_SEED
from app.remote.engine_list import short_name
from app.ui.elided_label import ElidedLabel
from app.ui.gallery.hookup import GalleryHookup
from app.ui.generation.jobs import ImageResult, JobOutcome, JobStatus, QueuedJob, StepInfo
from app.ui.tools.context import ToolContext

log = logging.getLogger(__name__)

MAX_SEEDS = 16


class _Picture(QWidget):
    """Paints one image scaled to fit, centred, keeping its aspect ratio; dimmed when `dimmed`."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._pixmap: QPixmap | None = None
        self._aspect = 1.0
        self.dimmed = False
        self.placeholder = ""
        self.setMinimumSize(96, 96)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_image(self, image: QImage | None, aspect: float | None = None) -> None:
        self._pixmap = None if image is None or image.isNull() else QPixmap.fromImage(image)
        if aspect is not None:
            self._aspect = aspect
        elif self._pixmap is not None:
            self._aspect = self._pixmap.width() / max(1, self._pixmap.height())
        self.update()

    def has_image(self) -> bool:
        return self._pixmap is not None

    def paintEvent(self, _event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        w, h = self.width(), self.height()
        fit_w = min(w, h * self._aspect)
        fit_h = fit_w / self._aspect
        target = QRectF((w - fit_w) / 2, (h - fit_h) / 2, fit_w, fit_h)
        if self._pixmap is None:
            painter.fillRect(target, self.palette().color(QPalette.ColorRole.AlternateBase))
            painter.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(target, Qt.AlignmentFlag.AlignCenter, self.placeholder)
            return
        painter.drawPixmap(target, self._pixmap, QRectF(self._pixmap.rect()))
        if self.dimmed:
            painter.fillRect(target, QColor(0, 0, 0, 140))


class SeedTile(QFrame):
    """One seed: its label and progress, its live picture and a Stop button."""

    stop_requested = Signal(int)  # image index
    activated = Signal(int)  # image index: double-clicked (open the finished image in the canvas)

    def __init__(self, index: int, seed: int, aspect: float, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("seedTile")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.index, self.seed = index, seed
        self._state = "waiting"
        self.result: ImageResult | None = None
        self.previews = 0
        self.stopping = False
        self._aspect = aspect
        self.seed_label = QLabel(f"<b>seed {seed}</b>", self)
        self.seed_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status = ElidedLabel("waiting", self)  # takes the room left; elides rather than widen the grid
        self.status.setObjectName("seedTileStatus")
        self.status.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.state = "waiting"
        self.picture = _Picture(self)
        self.picture.placeholder = "waiting for its turn"
        self.picture.set_image(None, aspect)
        self.stop_button = QPushButton("Stop", self)
        self.stop_button.setToolTip("Stop this seed only; the others go on")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(lambda: self.stop_requested.emit(self.index))
        header = QWidget(self)
        header.setFixedHeight(self.stop_button.sizeHint().height())  # one height with or without Stop
        top = QHBoxLayout(header)
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.seed_label)
        top.addWidget(self.status, 1)
        top.addWidget(self.stop_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.setSpacing(4)
        layout.addWidget(header)
        layout.addWidget(self.picture, 1)

    @property
    def state(self) -> str:
        """ "waiting" | "running" | "done" | "stopped"; the status text is coloured by it (dark.qss)."""
        return self._state

    @state.setter
    def state(self, value: str) -> None:
        self._state = value
        self.status.setProperty("state", value)
        self.status.style().unpolish(self.status)  # a dynamic property only restyles on a re-polish
        self.status.style().polish(self.status)

    def set_running(self) -> None:
        if self.state == "waiting":
            self.state = "running"
            self.stop_button.setEnabled(True)

    def show_step(self, info: StepInfo) -> None:
        if self.state in ("done", "stopped"):
            return
        self.set_running()
        if not self.stopping:
            self.status.setText(f"step {info.step}/{info.steps}")
        if info.preview is not None:
            self.previews += 1
            self.picture.set_image(info.preview, self._aspect)

    def mark_stopping(self) -> None:
        self.stopping = True
        self.stop_button.setEnabled(False)
        self.status.setText("stopping…")

    def show_final(self, result: ImageResult, server: str = "") -> None:
        """`server`: the name of the ComfyUI server that made the image ("" for this machine)."""
        self.state, self.result = "done", result
        self.status.setText(("done" if result.path is not None else "done (not saved)") + (f" · {server}" if server
                                                                                            else ""))  # fmt: skip
        if result.engine:
            self.status.setToolTip(f"made by {server} ({result.engine})")
        self.stop_button.hide()
        self.picture.dimmed = False
        self.picture.set_image(result.image)
        self.setToolTip("Double-click to open in the canvas")

    def show_stopped(self) -> None:
        if self.state == "done":
            return
        self.state = "stopped"
        self.status.setText("stopped")
        self.stop_button.hide()
        self.picture.dimmed = True
        self.picture.placeholder = "stopped before its first step"
        self.picture.update()

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        if self.result is not None:
            self.activated.emit(self.index)
        super().mouseDoubleClickEvent(event)


class SeedComparePage(QWidget):
    """The live grid of one Compare Seeds job; `start()` queues it from the form's current settings. The page
    sits in the central stack next to the canvas (`shown`)."""

    compare_opened = Signal(list)  # the gallery records handed to the compare view

    def __init__(self, tools: ToolContext, gallery: GalleryHookup) -> None:
        super().__init__(tools.shown.stack)
        self.setObjectName("seedComparePage")
        self._controller, self._jobs, self._shown = tools.controller, tools.jobs, tools.shown
        self._gallery, self._notifier = gallery, tools.notifier
        self.job: QueuedJob | None = None
        self.tiles: list[SeedTile] = []
        self.running = False
        self._following = False  # bring this page back to the front when the canvas takes it away
        # The display name of a ComfyUI server by URL (the window sets the engine list's; host:port otherwise).
        self.server_name: Callable[[str], str] = short_name

        self.title = ElidedLabel("Compare seeds", self)  # the prompt: elided, never widens the window
        self.title.setObjectName("seedCompareTitle")
        font = self.title.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.15)
        self.title.setFont(font)
        self.summary = ElidedLabel("", self)
        self.summary.setObjectName("seedCompareSummary")
        self.stop_all_button = QPushButton("Stop all", self)
        self.stop_all_button.setToolTip("Stop the whole job")
        self.stop_all_button.clicked.connect(self._on_stop_all_button_clicked)
        self.compare_button = QPushButton("Open in compare", self)
        self.compare_button.setToolTip("Open the finished seeds in the gallery's compare view")
        self.compare_button.setEnabled(False)
        self.compare_button.clicked.connect(self.open_in_compare)
        self.back_button = QPushButton("Back to canvas", self)
        self.back_button.clicked.connect(self._on_back_button_clicked)
        # Two rows: the prompt and summary get the page's whole width (elided), the buttons their own row.
        header = QVBoxLayout()
        header.setContentsMargins(12, 8, 12, 4)
        header.setSpacing(2)
        header.addWidget(self.title)
        header.addWidget(self.summary)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for button in (self.stop_all_button, self.compare_button, self.back_button):
            buttons.addWidget(button)
        header.addLayout(buttons)
        self.grid_host = QWidget(self)
        self._layout = layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(header)
        layout.addWidget(self.grid_host, 1)

        self._shown.stack.addWidget(self)
        c = self._controller
        c.job_started.connect(self._on_controller_job_started)
        c.step_completed.connect(self._on_controller_step_completed)
        c.image_finished.connect(self._on_controller_image_finished)
        c.image_cancelled.connect(self._on_controller_image_cancelled)
        c.job_ended.connect(self._on_controller_job_ended)

    # ------------------------------------------------------------------------------------------ commands

    def start(self) -> QueuedJob | None:
        """Queue the current settings as one job of N seeds (N = the Images field, at least 2) and show it."""
        request = self._jobs.request()
        if request is None:
            return None
        n = min(MAX_SEEDS, max(2, request.count))
        request = replace(request, count=n, seed=min(request.seed, MAX_SEED - (n - 1)))
        job = self._jobs.job(request)
        self.show_job(job)
        self._notifier.clear()
        self._controller.submit(job)
        return job

    def show_job(self, job: QueuedJob) -> None:
        """Lay out one waiting tile per seed for `job` and bring the page to the front."""
        self.job, self.running = job, True
        host = QWidget(self)  # a fresh grid: rows and columns of an earlier sweep must not linger
        self._layout.replaceWidget(self.grid_host, host)
        self.grid_host.deleteLater()
        self.grid_host = host
        grid = QGridLayout(host)
        grid.setContentsMargins(12, 4, 12, 12)
        grid.setSpacing(8)
        r = job.request
        aspect = r.width / max(1, r.height)
        columns = _columns(r.count, aspect)
        self.tiles = []
        for k in range(r.count):
            tile = SeedTile(k, r.seed + k, aspect, host)
            tile.stop_requested.connect(self.stop_image)
            tile.activated.connect(self._on_tile_activated)
            grid.addWidget(tile, k // columns, k % columns)
            self.tiles.append(tile)
        for row in range(grid.rowCount()):
            grid.setRowStretch(row, 1)
        for col in range(grid.columnCount()):
            grid.setColumnStretch(col, 1)
        self.title.setText(r.prompt)
        self.summary.setText(
            f"{r.count} seeds from {r.seed} · {r.steps} steps · CFG {r.cfg:g} · {r.width}×{r.height}"
            + (" · waiting in the queue" if self._controller.is_busy else "")
        )
        self.stop_all_button.setEnabled(True)
        self.compare_button.setEnabled(False)
        self._following = True
        self._shown.stack.setCurrentWidget(self)

    def stop_image(self, index: int) -> None:
        """Stop one seed; the others go on."""
        if self.job is not None and self._controller.cancel_image(self.job.job_id, index):
            self.tiles[index].mark_stopping()

    def finished_results(self) -> list[ImageResult]:
        return [t.result for t in self.tiles if t.result is not None]

    def open_in_compare(self) -> list[object]:
        """Hand the finished, saved seeds to the gallery's compare view (they must be indexed by now)."""
        paths = [r.path for r in self.finished_results() if r.path is not None]
        records = self._gallery.open_compare(paths)
        if not records:
            return []
        self.compare_opened.emit(records)
        return records

    # ------------------------------------------------------------------------------------------ events

    def _is_ours(self, job_id: int) -> bool:
        return self.job is not None and job_id == self.job.job_id

    def _on_controller_job_started(self, job: QueuedJob) -> None:
        if self._is_ours(job.job_id):
            r = job.request
            self.summary.setText(f"{r.count} seeds from {r.seed} · {r.steps} steps · CFG {r.cfg:g} · "
                                 f"{r.width}×{r.height}")  # fmt: skip
            for tile in self.tiles:
                tile.set_running()

    def _on_controller_step_completed(self, info: StepInfo) -> None:
        if self._is_ours(info.job_id) and 0 <= info.image_index < len(self.tiles):
            self.tiles[info.image_index].show_step(info)

    def _on_controller_image_finished(self, result: ImageResult) -> None:
        if self._is_ours(result.job_id) and 0 <= result.image_index < len(self.tiles):
            server = self.server_name(result.engine) if result.engine else ""
            self.tiles[result.image_index].show_final(result, server)
            self._keep_in_front()

    def _on_controller_image_cancelled(self, job_id: int, index: int) -> None:
        if self._is_ours(job_id) and 0 <= index < len(self.tiles):
            self.tiles[index].show_stopped()

    def _on_controller_job_ended(self, job: QueuedJob, outcome: JobOutcome) -> None:
        if not self._is_ours(job.job_id):
            return
        self.running = False
        for tile in self.tiles:
            tile.show_stopped()  # a tile still unfinished was stopped with the job (done tiles stay done)
        done, total = len(self.finished_results()), len(self.tiles)
        stopped = sum(t.state == "stopped" for t in self.tiles)
        if outcome.status is JobStatus.FAILED:
            text = f"The job failed after {done} of {total} seeds — see the message above"
        else:
            text = f"{done} of {total} seeds finished" + (f", {stopped} stopped" if stopped else "")
        if done:
            text += " · double-click a seed to open it in the canvas"
        self.summary.setText(text)
        self.stop_all_button.setEnabled(False)
        saved = [r for r in self.finished_results() if r.path is not None]
        self.compare_button.setEnabled(len(saved) >= 2 and self._gallery.panel is not None)
        self._keep_in_front()

    def _on_stop_all_button_clicked(self) -> None:
        if self.job is None:
            return
        current = self._controller.current_job
        if current is not None and self._is_ours(current.job_id):
            self._controller.cancel_current()
        else:
            self._controller.remove_pending(self.job.job_id)
            self._on_controller_job_ended(self.job, _cancelled(self.job.job_id))

    def _on_back_button_clicked(self) -> None:
        self._following = False
        self._shown.show_canvas()

    def _on_tile_activated(self, index: int) -> None:
        result = self.tiles[index].result
        if result is not None:
            self._following = False
            self._shown.show_result(result, result.image)

    def _keep_in_front(self) -> None:
        """The window shows each finished image in the canvas; while following a job, come back to the front."""
        if self._following and self._shown.canvas_in_front():
            self._shown.stack.setCurrentWidget(self)

    def sizeHint(self) -> QSize:
        return QSize(900, 640)


def _columns(count: int, aspect: float) -> int:
    """Columns for `count` tiles of width/height `aspect` in a roughly 3:2 area: wide images stack more."""
    best, best_size = 1, 0.0
    for cols in range(1, count + 1):
        rows = math.ceil(count / cols)
        size = min(1.5 / cols, 1.0 / rows * aspect)  # tile width in units of the area's width
        if size > best_size + 1e-9:
            best, best_size = cols, size
    return best


def _cancelled(job_id: int) -> JobOutcome:
    return JobOutcome(job_id, JobStatus.CANCELLED)

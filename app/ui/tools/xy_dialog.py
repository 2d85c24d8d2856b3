"""X/Y Plot: a dialog to pick two axes (seed, CFG, steps, sampler, schedule, shift, prompt search/replace, LoRA
strength) with comma-separated values, and `XYRun`, which queues one job per cell and saves the labelled grid when
all are done.

The expansion and the sheet are `app.gallery.xy_plot.XYPlot`; this module only asks for the axes, queues the
cells through the controller, collects their images and writes the sheet on the window's I/O thread. What a
plot needs from the window comes in one `ToolContext`. numpy and PIL come with it: the window imports this
module only when the dialog is first opened.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from app.gallery.xy_plot import AXIS_KINDS, AXIS_TITLES, Axis, XYPlot
from app.inference.api.request import SAMPLER_NAMES, SCHEDULER_NAMES, GenerationRequest
from app.metadata.file_names import sheet_path
from app.ui.canvas.image_arrays import qimage_to_array
from app.ui.generation.jobs import ImageResult, JobOutcome, QueuedJob
from app.ui.tools.context import ToolContext

if TYPE_CHECKING:
    from app.metadata.params import ImageParams

log = logging.getLogger(__name__)

MAX_CELLS = 64
HINTS = {
    "seed": "Whole numbers; a range like 100-103 counts up.",
    "cfg": "Numbers, e.g. 3.5, 4.5, 5.5.",
    "steps": "Whole numbers; a range like 20-24 counts up.",
    "sampler": f"Any of: {', '.join(SAMPLER_NAMES)}.",
    "scheduler": f"Any of: {', '.join(SCHEDULER_NAMES)}.",
    "shift": "Numbers, e.g. 1.5, 3, 4.5.",
    "prompt": "The first value is found in the prompt and replaced by each value.",
    "lora_strength": "Strengths of the job's first LoRA, e.g. 0, 0.5, 1; for another one name it first: "
    "clay: 0, 0.5, 1.",
}


def default_values(kind: str, request: GenerationRequest) -> str:
    """Sensible starting values for an axis, around the current settings."""
    r = request
    if kind == "seed":
        return ", ".join(str(r.seed + k) for k in range(3))
    if kind == "cfg":
        cfg = r.cfg if r.cfg is not None else 4.5
        return ", ".join(f"{max(1.0, cfg + d):g}" for d in (-1.0, 0.0, 1.0))
    if kind == "steps":
        steps = r.steps if r.steps is not None else 28
        return ", ".join(str(max(1, steps + d)) for d in (-8, 0, 8))
    if kind == "sampler":
        return ", ".join(SAMPLER_NAMES)
    if kind == "scheduler":
        return ", ".join(SCHEDULER_NAMES[:3])
    if kind == "shift":
        shift = r.shift if r.shift is not None else 3.0
        return ", ".join(f"{max(0.5, shift + d):g}" for d in (-1.5, 0.0, 1.5))
    if kind == "lora_strength":
        return "0, 0.5, 1"
    words = r.prompt.split()
    return words[0].strip(",.;:") if words else ""


def build_plot(request: GenerationRequest, x: tuple[str, str], y: tuple[str, str] | None) -> XYPlot:
    """The plot for (kind, values text) axes; raises ValueError with a message the user can act on."""
    axes = []
    for name, spec in (("X", x), ("Y", y)):
        if spec is None:
            continue
        kind, text = spec
        try:
            axis = Axis.parse(kind, text)
        except ValueError as exc:
            message = str(exc) if "axis" in str(exc) or "unknown" in str(exc) else "a value is not a number"
            raise ValueError(f"{name} axis ({AXIS_TITLES[kind]}): {message}") from exc
        axes.append(axis)
    if len(axes) == 2 and (axes[0].kind, axes[0].lora) == (axes[1].kind, axes[1].lora):
        raise ValueError("Choose two different settings for X and Y")
    plot = XYPlot(request, axes[0], axes[1] if len(axes) > 1 else None)
    cols, rows = plot.shape
    if cols * rows > MAX_CELLS:
        raise ValueError(f"{cols * rows} images is too many for one plot (at most {MAX_CELLS})")
    plot.cells()  # prompt search/replace checks that its text occurs in the prompt
    return plot


class XYRun(QObject):
    """The jobs of one plot, in flight: collects each cell's image and saves the sheet when all have ended."""

    sheet_saved = Signal(object)  # Path
    sheet_failed = Signal(str)
    active: ClassVar[set[XYRun]] = set()  # runs in flight stay alive until their sheet is written

    def __init__(self, tools: ToolContext, plot: XYPlot) -> None:
        super().__init__(tools.controller)
        self.tools, self.plot = tools, plot
        self.cells: dict[int, tuple[int, int]] = {}  # job id -> (column, row)
        self.images: dict[tuple[int, int], np.ndarray] = {}
        self.params: dict[tuple[int, int], ImageParams] = {}
        self.results: dict[tuple[int, int], ImageResult] = {}
        self.ended: set[int] = set()
        self.jobs: list[QueuedJob] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> list[QueuedJob]:
        c = self.tools.controller
        c.image_finished.connect(self._on_controller_image_finished)
        c.job_ended.connect(self._on_controller_job_ended)
        XYRun.active.add(self)
        for cell in self.plot.cells():
            job = self.tools.jobs.job(cell.request)
            self.cells[job.job_id] = (cell.column, cell.row)
            self.jobs.append(job)
        for job in self.jobs:
            c.submit(job)
        c.queue_changed.connect(self._on_controller_queue_changed)  # after submitting: jobs removed unrun
        cols, rows = self.plot.shape
        self.tools.notifier.status(f"X/Y plot: {cols * rows} images queued")
        return self.jobs

    def _on_controller_image_finished(self, result: ImageResult) -> None:
        cell = self.cells.get(result.job_id)
        if cell is None:
            return
        self.images[cell] = qimage_to_array(result.image)
        self.results[cell] = result
        self.params[cell] = result.params

    def _on_controller_job_ended(self, job: QueuedJob, _outcome: JobOutcome) -> None:
        if job.job_id not in self.cells:
            return
        self.ended.add(job.job_id)
        if len(self.ended) == len(self.cells):
            self._finish()

    def _on_controller_queue_changed(self) -> None:
        """Jobs removed from the queue (Clear Queue) never end: count them as ended, their cells empty."""
        c = self.tools.controller
        live = {job.job_id for job in c.pending()}
        if c.current_job is not None:
            live.add(c.current_job.job_id)
        dropped = set(self.cells) - self.ended - live
        if dropped:
            self.ended |= dropped
            if len(self.ended) == len(self.cells):
                self._finish()

    def _finish(self) -> None:
        c = self.tools.controller
        c.image_finished.disconnect(self._on_controller_image_finished)
        c.job_ended.disconnect(self._on_controller_job_ended)
        c.queue_changed.disconnect(self._on_controller_queue_changed)
        if not self.images:
            self.tools.notifier.status("X/Y plot: no image finished, so no grid was saved")
            self._done()
            return
        self._task = asyncio.ensure_future(self._save())

    def sheet_path(self) -> Path:
        saved = [r.path for r in self.results.values() if r.path is not None]
        folder = saved[0].parent if saved else self.jobs[0].output.folder()
        return sheet_path(folder)

    async def _save(self) -> None:
        try:
            path = self.sheet_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self.tools.io_executor, self.plot.save, path, self.images, self.params)
        except OSError as exc:
            log.warning("could not save the X/Y plot: %s", exc)
            self.tools.notifier.error(f"Could not save the X/Y plot: {exc}. Choose another output folder.")
            self.sheet_failed.emit(str(exc))
            self._done()
            return
        image = QImage(str(path))
        if not image.isNull():
            self.tools.shown.show_picture(image)
        missing = len(self.cells) - len(self.images)
        note = f" ({missing} cell{'s' if missing != 1 else ''} left empty)" if missing else ""
        self.tools.notifier.status(f"X/Y plot saved to {path}{note}")
        self.sheet_saved.emit(path)
        self._done()

    def _done(self) -> None:
        XYRun.active.discard(self)


class _AxisRow(QWidget):
    def __init__(self, kinds: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.kind = QComboBox(self)
        for kind in kinds:
            self.kind.addItem(AXIS_TITLES.get(kind, "None"), kind)
        self.values = QLineEdit(self)
        self.values.setPlaceholderText("comma-separated values")
        self.hint = QLabel(self)
        self.hint.setWordWrap(True)
        self.hint.setMinimumHeight(2 * self.hint.fontMetrics().lineSpacing())
        self.hint.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.hint.setObjectName("hintLabel")  # muted but readable (dark.qss)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        row = QFormLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addRow("Setting", self.kind)
        row.addRow("Values", self.values)
        layout.addLayout(row)
        layout.addWidget(self.hint)

    def current_kind(self) -> str:
        return str(self.kind.currentData())

    def select(self, kind: str) -> None:
        self.kind.setCurrentIndex(max(0, self.kind.findData(kind)))


class XYPlotDialog(QDialog):
    """Choose the axes; Generate queues the cells and closes (the run goes on in `XYRun`)."""

    run_started = Signal(object)  # XYRun

    def __init__(self, parent: QWidget, tools: ToolContext, request: GenerationRequest | None) -> None:
        super().__init__(parent)
        self.setWindowTitle("X/Y plot")
        self.tools = tools
        self.request = request
        self.plot: XYPlot | None = None
        self.run: XYRun | None = None
        intro = QLabel(
            "Vary two settings over a grid of images. Everything else comes from the Settings panel; "
            "the grid is saved as one labelled PNG next to the images and shown in the canvas.",
            self,
        )
        intro.setWordWrap(True)
        self.x_row = _AxisRow(list(AXIS_KINDS), self)
        self.y_row = _AxisRow([*AXIS_KINDS, "none"], self)
        self.summary = QLabel(self)
        self.summary.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel, self)
        self.generate_button = self.buttons.addButton("Generate", QDialogButtonBox.ButtonRole.AcceptRole)
        self.generate_button.setDefault(True)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.setSpacing(10)
        layout.addWidget(intro)
        for title, row in (("X axis — columns", self.x_row), ("Y axis — rows", self.y_row)):
            heading = QLabel(f"<b>{title}</b>", self)
            layout.addWidget(heading)
            layout.addWidget(row)
        layout.addWidget(self.summary)
        layout.addStretch(1)
        layout.addWidget(self.buttons)
        self.setMinimumWidth(460)

        for row in (self.x_row, self.y_row):
            row.kind.currentIndexChanged.connect(lambda _i, r=row: self._on_kind_changed(r))
            row.values.textChanged.connect(self._validate)
        self.x_row.select("seed")
        self.y_row.select("cfg")
        self._on_kind_changed(self.x_row)
        self._on_kind_changed(self.y_row)

    def set_axes(self, x: tuple[str, str], y: tuple[str, str] | None) -> None:
        self.x_row.select(x[0])
        self.x_row.values.setText(x[1])
        self.y_row.select(y[0] if y else "none")
        self.y_row.values.setText(y[1] if y else "")

    def _on_kind_changed(self, row: _AxisRow) -> None:
        kind = row.current_kind()
        none = kind == "none"
        row.values.setEnabled(not none)
        row.hint.setText("" if none else HINTS[kind])
        if self.request is not None:
            row.values.setText("" if none else default_values(kind, self.request))
        self._validate()

    def _validate(self) -> None:
        self.plot = None
        if self.request is None:
            self.summary.setText("Choose a model and write a prompt first.")
            self.generate_button.setEnabled(False)
            return
        y_kind = self.y_row.current_kind()
        x = (self.x_row.current_kind(), self.x_row.values.text())
        y = None if y_kind == "none" else (y_kind, self.y_row.values.text())
        try:
            self.plot = build_plot(self.request, x, y)
        except ValueError as exc:
            self.summary.setText(f"<span style='color:#e06c60'>{exc}</span>")
            self.generate_button.setEnabled(False)
            self.generate_button.setText("Generate")
            return
        cols, rows = self.plot.shape
        n = cols * rows
        self.summary.setText(
            f"{cols} column{'s' if cols != 1 else ''} × {rows} row{'s' if rows != 1 else ''}: "
            f"{n} image{'s' if n != 1 else ''}, each as its own job in the queue."
        )
        self.generate_button.setEnabled(True)
        self.generate_button.setText(f"Generate {n} image{'s' if n != 1 else ''}")

    def accept(self) -> None:
        if self.plot is None:
            return
        self.run = XYRun(self.tools, self.plot)
        self.run.start()
        self.run_started.emit(self.run)
        super().accept()

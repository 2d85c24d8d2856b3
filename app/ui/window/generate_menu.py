"""Generate menu: queue the form as a job, cancel or skip, Compare Seeds, X/Y Plot, Clear Queue.

Every job comes from the one `JobFactory`; Compare Seeds and the X/Y plot queue theirs through it too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget

from app.ui.canvas.canvas import JobProgressBar
from app.ui.generation.jobs import QueuedJob
from app.ui.tools.context import ToolContext
from app.ui.tools.seed_compare import SeedComparePage

log = logging.getLogger(__name__)


class GenerateCommands:
    def __init__(
        self, parent: QWidget, tools: ToolContext, progress: JobProgressBar, seed_compare: SeedComparePage
    ) -> None:
        self._parent, self._tools, self._progress, self._seed_compare = parent, tools, progress, seed_compare
        self._controller, self._jobs, self._notifier = tools.controller, tools.jobs, tools.notifier
        self._start_when_read = False

    def handlers(self) -> dict[str, Callable[[], object]]:
        return {
            "generate": self.generate,
            "cancel": self.cancel,
            "skip_image": self._controller.skip_image,
            "compare_seeds": self._seed_compare.start,
            "xy_plot": self.xy_plot,
            "clear_queue": self.clear_queue,
        }

    def generate(self) -> QueuedJob | None:
        """Queue a job with a snapshot of the current settings; runs at once when nothing else is running.
        Pressed while the model files are still being read, the job starts once they are (`models_read`)."""
        if not self._jobs.models_read():
            self._start_when_read = True
            self._notifier.info("Reading the model files; your image starts as soon as they are read.")
            return None
        request = self._jobs.request()
        if request is None:
            return None
        job = self._jobs.job(request)
        self._notifier.clear()
        self._controller.submit(job)
        return job

    def models_read(self) -> None:
        if self._start_when_read:
            self._start_when_read = False
            self.generate()

    def cancel(self) -> None:
        if self._controller.cancel_current():
            self._progress.show_busy("Cancelling…")

    def xy_plot(self) -> None:
        request = self._jobs.request(record=False)  # opening (or cancelling) the dialog keeps the seed
        if request is not None:
            from app.ui.tools.xy_dialog import (
                XYPlotDialog,  # numpy and PIL load when a plot is first asked for
            )

            dialog = XYPlotDialog(self._parent, self._tools, request)
            dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            dialog.open()

    def clear_queue(self) -> None:
        for job in self._controller.pending():
            self._controller.remove_pending(job.job_id)

"""What the multi-image tools (Compare Seeds, X/Y plot) use of the window, handed over as one value."""

from __future__ import annotations

import logging
from concurrent.futures import Executor
from dataclasses import dataclass

from app.ui.canvas.shown_image import ShownImage
from app.ui.generation.controller import GenerationController
from app.ui.generation.job_factory import JobFactory
from app.ui.notify import Notifier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToolContext:
    controller: GenerationController  # the queue the tools submit to and listen on
    jobs: JobFactory  # form → request → job, as Generate does it
    io_executor: Executor  # the window's I/O thread (writing a sheet)
    notifier: Notifier
    shown: ShownImage  # the canvas area and the central stack the tools' pages sit in

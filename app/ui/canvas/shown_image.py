"""The canvas area as the rest of the window sees it: which picture it shows and which finished image that is.

Save Image As, Copy Image and Copy Parameters act on the shown result; the gallery, the X/Y sheet and the
seed tiles put pictures here instead of reaching into the canvas, the scrubber and the central stack.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtGui import QImage
from PySide6.QtWidgets import QStackedWidget

from app.ui.canvas.canvas import CanvasView
from app.ui.canvas.step_scrubber import StepScrubber
from app.ui.generation.jobs import ImageResult

log = logging.getLogger(__name__)


class ShownImage:
    def __init__(self, canvas: CanvasView, scrubber: StepScrubber, stack: QStackedWidget) -> None:
        self.canvas, self.scrubber, self.stack = canvas, scrubber, stack
        self.result: ImageResult | None = None  # the finished image last shown (Save As, Copy Parameters)
        self._file: tuple[QImage, Path | None] | None = None  # (picture put on the canvas, its file)

    def show_result(self, result: ImageResult, image: QImage) -> None:
        """A finished image with its step frames (the scrubber under the canvas offers them)."""
        self.result = result
        self._file = (image, result.path)
        where = result.path.name if result.path is not None else "not saved"
        source = result.params.request.init_image if result.params is not None else None
        made_from = f" · made from {source.name}" if source is not None else ""
        self.canvas.set_image(image, caption=f"seed {result.seed} · {where}{made_from}")
        self.scrubber.show_frames(result.step_frames, image)
        self.show_canvas()

    def show_picture(self, image: QImage, caption: str = "", file: Path | None = None) -> None:
        """A picture that is not this session's result (a gallery image with its `file`, an X/Y sheet)."""
        self._file = (image, file)
        self.canvas.set_image(image, caption=caption)
        self.show_canvas()

    def show_canvas(self) -> None:
        self.stack.setCurrentWidget(self.canvas)

    def canvas_in_front(self) -> bool:
        return self.stack.currentWidget() is self.canvas

    def shown_file(self) -> Path | None:
        """The file of the picture on the canvas (a saved result, a gallery image); None for a preview, a step
        frame or a picture that has no file."""
        shown = self.canvas.image()
        if shown is None or self.canvas.is_preview() or self._file is None:
            return None
        image, file = self._file
        if shown is not image or file is None or not Path(file).is_file():  # another picture came since
            return None
        return Path(file)

    def image(self) -> QImage | None:
        """The picture Save As and Copy Image take: a step frame scrubbed to stands for its finished image."""
        image = self.canvas.image()
        if image is not None and self.canvas.is_preview():
            return self.scrubber.scrubbed_image()
        return image

"""Where an input image comes from besides Open…: a drop on the window (which asks: reuse its settings, or use it
as the input image), the clipboard, and the picture on the canvas."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtGui import QCursor, QGuiApplication
from PySide6.QtWidgets import QMenu, QWidget

from app.ui.canvas.shown_image import ShownImage
from app.ui.refine.refine_controller import RefineController

log = logging.getLogger(__name__)

REUSE_SETTINGS = "Reuse its settings"
USE_AS_INPUT = "Use as input image"


def has_settings(path: Path) -> bool:
    """Whether the image file states generation settings (ours, A1111's or ComfyUI's); reads only its text
    chunks or EXIF comment, never the pixels. A file that cannot be read says no."""
    from app.metadata.exif import read_user_comment
    from app.metadata.limits import MetadataError
    from app.metadata.png_info import COMFY_PROMPT_KEY, PARAMETERS_KEY, STUDIO_KEY
    from app.metadata.png_text import read_png_chunks

    try:
        if Path(path).suffix.lower() == ".png":
            chunks = read_png_chunks(Path(path)).chunks
            return any(key in chunks for key in (STUDIO_KEY, PARAMETERS_KEY, COMFY_PROMPT_KEY))
        return bool(read_user_comment(Path(path)))
    except (MetadataError, OSError, ValueError) as exc:
        log.info("cannot read the metadata of %s: %s", path, exc)
        return False


class DropChoice:
    """A dropped image with settings asks, in a small menu at the pointer, what the drop means; one without
    settings becomes the input image straight away."""

    def __init__(self, parent: QWidget, refine: RefineController, recall: Callable[[Path], None]) -> None:
        self._parent, self._refine, self._recall = parent, refine, recall
        self.menu: QMenu | None = None  # the open question (tests click in it)

    def dropped(self, path: Path) -> None:
        if not has_settings(path):
            self._refine.use_file(path)
            return
        if self.menu is not None:
            self.menu.close()
        menu = self.menu = QMenu(self._parent)
        menu.setObjectName("dropChoiceMenu")
        menu.setToolTipsVisible(True)
        menu.addSection(path.name if len(path.name) <= 40 else path.name[:37] + "…")
        menu.addAction(REUSE_SETTINGS, lambda: self._recall(path)).setToolTip(
            "Fill the form with its settings"
        )
        menu.addAction(USE_AS_INPUT, lambda: self._refine.use_file(path)).setToolTip(
            "Refine this picture: image to image, inpaint or outpaint"
        )
        menu.popup(QCursor.pos())


def paste_input(refine: RefineController, notify: Callable[[str], None]) -> bool:
    """The clipboard's picture (or image file) as the input image."""
    mime = QGuiApplication.clipboard().mimeData()
    if mime is not None and mime.hasImage():
        image = QGuiApplication.clipboard().image()
        if not image.isNull():
            return refine.use_image(image, "pasted")
    if mime is not None and mime.hasUrls():
        local = [Path(u.toLocalFile()) for u in mime.urls() if u.isLocalFile()]
        if len(local) == 1:
            return refine.use_file(local[0])
    notify("The clipboard holds no picture to use as the input image.")
    return False


def use_shown(refine: RefineController, shown: ShownImage, notify: Callable[[str], None]) -> bool:
    """The picture on the canvas as the input: its saved file when it is a finished image, else a copy."""
    result = shown.result
    image = shown.image()
    if result is not None and result.path is not None and image is result.image and result.path.is_file():
        return refine.use_file(result.path)
    if image is None or shown.canvas.is_preview():
        notify("Nothing finished on the canvas to use as the input image yet.")
        return False
    return refine.use_image(image, "canvas")

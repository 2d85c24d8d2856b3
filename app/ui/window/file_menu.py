"""File menu: find model sets (Locate…, Download Models…), the output folder, Save Image As, Copy Image.

`ModelFinder` also serves the first-run panel, the picker's "Download models…" entry and the banner's
"Locate…" buttons; each command gets only the parts of the window it uses.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices, QImage
from PySide6.QtWidgets import QApplication, QFileDialog, QWidget

from app.metadata.params import ImageParams
from app.ui.canvas.image_arrays import qimage_to_array
from app.ui.canvas.shown_image import ShownImage
from app.ui.form.model_library import ModelSetInfo
from app.ui.form.model_picker import ModelPickerController
from app.ui.generation.output_folder import OutputFolder
from app.ui.notify import Notifier
from app.ui.window.first_run import FirstRunPanel

if TYPE_CHECKING:
    from app.ui.downloads.dialog import DownloadDialog

log = logging.getLogger(__name__)


class ModelFinder:
    """Locate… and Download Models…: a model set the user points to (or downloads) is checked, remembered
    and selected."""

    def __init__(
        self,
        parent: QWidget,
        picker: ModelPickerController,
        first_run: FirstRunPanel,
        shown: ShownImage,
        notifier: Notifier,
        *,
        validate: Callable[[Path], Awaitable[ModelSetInfo]],
        remember: Callable[[Path], None],
    ) -> None:
        self._parent, self._picker, self._first_run, self._shown = parent, picker, first_run, shown
        self._notifier, self._validate, self._remember = notifier, validate, remember
        self._tasks: set[asyncio.Task[None]] = set()
        self.download_dialog: DownloadDialog | None = None
        # told the ControlNet files a download wrote (a model set's controlnets/ folder, or the files alone)
        self.controlnet_listeners: list[Callable[[tuple[Path, ...]], None]] = []
        picker.download_requested.connect(self._on_picker_download_requested)
        first_run.model_chosen.connect(self.use_model)
        first_run.download_requested.connect(self.download_models)

    def locate(self) -> None:
        folder = QFileDialog.getExistingDirectory(self._parent, "Locate an SD3.5 model folder")
        if folder:
            self._spawn(self._locate(Path(folder)))

    async def _locate(self, path: Path) -> None:
        info = await self._validate(path)
        if info.usable:
            self.use_model(info)
        else:
            self._notifier.error(f"{path} cannot be used: {info.problem()}", action=("Locate…", self.locate))

    def download_models(self, variant: str | None = None) -> None:
        """Open the (modeless) download dialog; a finished model set is checked and selected like Locate…."""
        if self.download_dialog is None:
            from app.ui.downloads.dialog import DownloadDialog  # huggingface_hub loads only when asked for

            self.download_dialog = DownloadDialog(self._parent)
            self.download_dialog.model_downloaded.connect(lambda path: self._spawn(self._locate(path)))
            # ControlNets, alone or with their set (the dialog names them either way): listed at once
            self.download_dialog.controlnets_downloaded.connect(self._tell_controlnets)
        if variant is not None:
            self.download_dialog.set_variant(variant)
        self.download_dialog.show()
        self.download_dialog.raise_()
        self.download_dialog.activateWindow()

    def _tell_controlnets(self, files: tuple[Path, ...]) -> None:
        for listener in self.controlnet_listeners:
            listener(tuple(Path(f) for f in files))

    def _on_picker_download_requested(self, variant: str) -> None:
        self.download_models(variant or None)  # the picker's "Download models…": the File menu's dialog

    def use_model(self, info: ModelSetInfo) -> None:
        self._remember(info.path)
        self._picker.add_or_select(info)
        self._first_run.set_has_models(True)
        self._shown.show_canvas()

    def getting_models(self) -> None:
        """Help ▸ Getting Models…: the first-run page, with a way back when models exist."""
        self._first_run.set_has_models(self._picker.has_usable())
        self._shown.stack.setCurrentWidget(self._first_run)

    def close(self) -> None:
        if self.download_dialog is not None:
            self.download_dialog.shutdown()
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class FileCommands:
    def __init__(
        self,
        parent: QWidget,
        models: ModelFinder,
        output: OutputFolder,
        shown: ShownImage,
        notifier: Notifier,
        quit_app: Callable[[], object],
        io_executor: Executor,
    ) -> None:
        self._parent, self.models, self._output = parent, models, output
        self._shown, self._notifier, self._quit = shown, notifier, quit_app
        self._io = io_executor
        self._tasks: set[asyncio.Task[None]] = set()

    def handlers(self) -> dict[str, Callable[[], object]]:
        return {
            "locate": self.models.locate,
            "download_models": self.models.download_models,
            "choose_output": self.choose_output,
            "open_output": self.open_output,
            "save_image_as": self.save_image_as,
            "copy_image": self.copy_image,
            "quit": self._quit,
        }

    def choose_output(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self._parent, "Choose the output folder", str(self._output.root())
        )
        if folder:
            self._output.choose(Path(folder))

    def open_output(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(self._output.root())))

    def save_image_as(self) -> None:
        image, result = self._shown.image(), self._shown.result
        if image is None or result is None:
            return
        path, _ = QFileDialog.getSaveFileName(
            self._parent, "Save image as", str(result.path or ""), "PNG image (*.png)"
        )
        if path:
            task = asyncio.ensure_future(self._save_image_as(Path(path), QImage(image), result.params))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _save_image_as(self, path: Path, image: QImage, params: ImageParams) -> None:
        """The one image writer, on the I/O thread: atomic, with every metadata chunk the original has."""
        from app.metadata.image_file import write_image  # numpy and Pillow: loaded when first needed

        pixels = qimage_to_array(image)
        try:
            await asyncio.get_running_loop().run_in_executor(self._io, write_image, path, pixels, params)
        except OSError as exc:
            log.warning("could not save %s: %s", path, exc)
            self._notifier.error(f"Could not write {path} ({exc}); choose another folder.")
            return
        self._notifier.status(f"Saved {path}")

    def copy_image(self) -> None:
        image = self._shown.image()
        if image is not None:
            QApplication.clipboard().setImage(image)

"""What the window's actions do: generate, cancel, locate models, save and copy images, edit presets, help.

Kept apart from the layout so both stay small; it reaches the views through the window it serves.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QImage
from PySide6.QtWidgets import QApplication, QDialog, QFileDialog, QLabel, QMessageBox, QVBoxLayout

from app import __version__
from app.inference.api.request import GenerationRequest
from app.ui.form.model_library import ModelSetInfo
from app.ui.form.presets import load_style_presets, packaged_presets_text
from app.ui.form.token_counter import TokenCounter
from app.ui.generation.jobs import EngineOptions, QueuedJob
from app.ui.generation.output_files import OutputTarget, default_output_root
from app.ui.window.settings_store import log_folder, user_style_presets_file
from app.ui.window.window_actions import shortcut_table

if TYPE_CHECKING:
    from app.ui.downloads.dialog import DownloadDialog
    from app.ui.window.main_window import MainWindow

log = logging.getLogger(__name__)


class WindowCommands:
    def __init__(self, window: MainWindow) -> None:
        self.w = window
        self._job_ids = count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._styles_mtime: float | None = None
        self.download_dialog: DownloadDialog | None = None
        self.token_counter = TokenCounter(window)
        self.token_counter.counted.connect(self._on_token_counter_counted)
        window.panel.prompt.text_changed.connect(lambda text: self.token_counter.request("prompt", text))
        window.panel.negative.text_changed.connect(lambda text: self.token_counter.request("negative", text))
        window.picker.download_requested.connect(self._on_picker_download_requested)

    def handlers(self) -> dict[str, Callable[[], object]]:
        w = self.w
        return {
            "locate": self.locate,
            "download_models": self.download_models,
            "choose_output": self.choose_output,
            "open_output": self.open_output,
            "save_image_as": self.save_image_as,
            "copy_image": self.copy_image,
            "quit": w.close,
            "undo": lambda: self._on_text_editor(lambda e: e.undo()),
            "redo": lambda: self._on_text_editor(lambda e: e.redo()),
            "copy_parameters": self.copy_parameters,
            "reuse_seed": w.state.reuse_last_seed,
            "random_seed": lambda: w.state.update(random_seed=w.actions.random_seed.isChecked()),
            "edit_styles": self.edit_styles,
            "focus_prompt": lambda: w.panel.prompt.edit.setFocus(),
            "fit": w.canvas.fit,
            "actual_size": w.canvas.actual_size,
            "zoom_in": lambda: w.canvas.set_zoom(w.canvas.zoom() * 1.25),
            "zoom_out": lambda: w.canvas.set_zoom(w.canvas.zoom() / 1.25),
            "generate": self.generate,
            "cancel": self.cancel,
            "skip_image": w.controller.skip_image,
            "compare_seeds": lambda: w.seed_compare.start(),
            "xy_plot": self.xy_plot,
            "clear_queue": self.clear_queue,
            "getting_models": self.getting_models,
            "shortcuts": self.show_shortcuts,
            "open_logs": lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(log_folder()))),
            "about": self.about,
        }

    def close(self) -> None:
        self.token_counter.close()
        if self.download_dialog is not None:
            self.download_dialog.shutdown()
        for task in list(self._tasks):
            task.cancel()

    # ------------------------------------------------------------------------------------------ jobs

    def can_generate(self) -> bool:
        return self.w.picker.selected is not None

    def generate(self) -> QueuedJob | None:
        """Queue a job with a snapshot of the current settings; runs at once when nothing else is running."""
        request = self.current_request()
        if request is None:
            return None
        job = self.build_job(request)
        self.w.banner.hide()
        self.w.controller.submit(job)
        return job

    def current_request(self) -> GenerationRequest | None:
        """The request for the current settings, or None after telling the user what is missing."""
        w = self.w
        if w.picker.selected is None:
            w.banner.show_message(
                "Choose a model first: pick one above, or use Locate… to point to its folder.",
                severity="info",
                action=("Locate…", self.locate),
            )
            return None
        self._reload_styles_if_edited()
        try:
            request = w.state.build_request(w.styles_by_id())
        except ValueError as exc:
            w.banner.show_message(str(exc), severity="info")
            w.panel.prompt.edit.setFocus()
            return None
        return request

    def build_job(self, request: GenerationRequest) -> QueuedJob:
        """A job for `request` with the selected model, the engine options and the output folder (a model must
        be selected: see `can_generate`); Compare Seeds and X/Y plots queue theirs through this too."""
        w = self.w
        model = w.picker.selected
        if model is None:
            raise RuntimeError("build_job needs a selected model (check current_request first)")
        v = w.state.values
        if w.output_arg is not None:
            output = OutputTarget(w.output_arg, dated=False)
        else:
            output = OutputTarget(
                Path(str(w.settings.value("output/root") or default_output_root())), dated=True
            )
        style = w.styles_by_id().get(v.style)
        return QueuedJob(
            job_id=next(self._job_ids),
            request=request,
            model_path=model.path,
            variant=model.variant if w.picker.discovered else None,
            model_label=model.label.split(" — ")[0],
            options=EngineOptions(v.device, v.precision, v.preview, v.preview_every, v.memory_plan),
            output=output,
            style_label=style.label if style else "None",
        )

    def cancel(self) -> None:
        if self.w.controller.cancel_current():
            self.w.progress.show_busy("Cancelling…")

    def xy_plot(self) -> None:
        from app.ui.tools.xy_dialog import XYPlotDialog

        request = self.current_request()
        if request is not None:
            dialog = XYPlotDialog(self.w, request)
            dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            dialog.open()

    def clear_queue(self) -> None:
        for job in self.w.controller.pending():
            self.w.controller.remove_pending(job.job_id)

    # ------------------------------------------------------------------------------------------ models

    def on_picker_selection_changed(self, info: ModelSetInfo | None, hint: str) -> None:
        w = self.w
        if info is not None and info.variant is not None:
            if info.variant != w.state.variant:
                w.state.apply_variant(info.variant, info.max_side)
            else:
                w.state.set_max_side(info.max_side)
            if w.picker.discovered and not info.has_t5 and w.state.values.use_t5:
                w.state.update(use_t5=False)
        w.panel.model_hint.setText(hint)
        w.panel.model_hint.setVisible(bool(hint))
        self.update_token_source()
        w._update_buttons()

    def update_token_source(self) -> None:
        info = self.w.picker.selected
        folder = (
            None if info is None else (info.path if info.path.suffix != ".safetensors" else info.path.parent)
        )
        self.token_counter.set_source(folder, self.w.state.values.use_t5)
        for key, editor in (("prompt", self.w.panel.prompt), ("negative", self.w.panel.negative)):
            self.token_counter.request(key, editor.text())

    def locate(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.w, "Locate an SD3.5 model folder")
        if folder:
            self._spawn(self._locate(Path(folder)))

    async def _locate(self, path: Path) -> None:
        info = await self.w.validate_path(path)
        if info.usable:
            self.use_model(info)
        else:
            self.w.banner.show_message(
                f"{path} cannot be used: {info.problem()}", action=("Locate…", self.locate)
            )

    def download_models(self, variant: str | None = None) -> None:
        """Open the (modeless) download dialog; a finished model set is checked and selected like Locate…."""
        if self.download_dialog is None:
            from app.ui.downloads.dialog import DownloadDialog  # huggingface_hub loads only when asked for

            self.download_dialog = DownloadDialog(self.w)
            self.download_dialog.model_downloaded.connect(lambda path: self._spawn(self._locate(path)))
        if variant is not None:
            self.download_dialog.set_variant(variant)
        self.download_dialog.show()
        self.download_dialog.raise_()
        self.download_dialog.activateWindow()

    def _on_picker_download_requested(self, variant: str) -> None:
        self.download_models(variant or None)  # the picker's "Download models…": the File menu's dialog

    def use_model(self, info: ModelSetInfo) -> None:
        self.w.remember_path(info.path)
        self.w.picker.add_or_select(info)
        self.w.first_run.set_has_models(True)
        self.w.stack.setCurrentWidget(self.w.canvas)

    def show_memory_settings(self) -> None:
        """Open the Advanced section at the memory plan (after an out-of-memory failure)."""
        w = self.w
        w.settings_dock.show()
        w.panel.advanced.set_expanded(True)
        w.settings_scroll.ensureWidgetVisible(w.panel.advanced.precision_combo)
        w.panel.advanced.memory_combo.setFocus()

    def getting_models(self) -> None:
        self.w.first_run.set_has_models(self.w.picker.has_usable())
        self.w.stack.setCurrentWidget(self.w.first_run)

    # ------------------------------------------------------------------------------------------ images

    def _shown_image(self) -> QImage | None:
        image = self.w.canvas.image()
        if image is not None and self.w.canvas.is_preview():
            return self.w.scrubber.scrubbed_image()  # a step frame stands for its finished image
        return image

    def save_image_as(self) -> None:
        image, result = self._shown_image(), self.w.shown_result
        if image is None or result is None:
            return
        path, _ = QFileDialog.getSaveFileName(
            self.w, "Save image as", str(result.path or ""), "PNG image (*.png)"
        )
        if path:
            copy = QImage(image)
            copy.setText("parameters", result.infotext)
            if not copy.save(path, "PNG"):
                self.w.banner.show_message(f"Could not write {path}; choose another folder.")

    def copy_image(self) -> None:
        image = self._shown_image()
        if image is not None:
            QApplication.clipboard().setImage(image)

    def copy_parameters(self) -> None:
        if self.w.shown_result is not None:
            QApplication.clipboard().setText(self.w.shown_result.infotext)

    def choose_output(self) -> None:
        current = str(self.w.settings.value("output/root") or default_output_root())
        folder = QFileDialog.getExistingDirectory(self.w, "Choose the output folder", current)
        if folder:
            self.w.settings.setValue("output/root", folder)
            self.w.output_arg = None

    def open_output(self) -> None:
        root = self.w.output_arg or Path(str(self.w.settings.value("output/root") or default_output_root()))
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(root)))

    # ------------------------------------------------------------------------------------------ presets, help

    def edit_styles(self) -> None:
        path = user_style_presets_file()
        try:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(packaged_presets_text(), encoding="utf-8")
        except OSError as exc:
            self.w.banner.show_message(f"Could not create {path}: {exc}")
            return
        self.w.banner.show_message(
            f"Editing {path}. Changes apply to the next job you generate.", severity="info"
        )
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))

    def _reload_styles_if_edited(self) -> None:
        path = user_style_presets_file()
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return
        if mtime != self._styles_mtime:
            self._styles_mtime = mtime
            self.w.set_styles(load_style_presets(path))

    def show_shortcuts(self) -> None:
        rows = "".join(
            f"<tr><td>{name}</td><td>&nbsp;&nbsp;<b>{keys}</b></td></tr>"
            for name, keys in shortcut_table(self.w.actions)
        )
        dialog = QDialog(self.w)
        dialog.setWindowTitle("Keyboard shortcuts")
        layout = QVBoxLayout(dialog)
        layout.addWidget(QLabel(f"<table>{rows}</table>", dialog))
        dialog.show()

    def about(self) -> None:
        QMessageBox.about(
            self.w,
            "About SD3.5 Studio",
            f"<b>SD3.5 Studio {__version__}</b><br>Stable Diffusion 3.5 on your own computer.<br><br>"
            "The SD3.5 models are © Stability AI, under the Stability AI Community License.",
        )

    # ------------------------------------------------------------------------------------------ helpers

    def _on_token_counter_counted(self, key: str, view: object) -> None:
        editor = self.w.panel.prompt if key == "prompt" else self.w.panel.negative
        editor.show_count(view)  # type: ignore[arg-type]

    def _on_text_editor(self, action: Callable[[object], None]) -> None:
        focused = QApplication.focusWidget()
        editors = (self.w.panel.prompt.edit, self.w.panel.negative.edit)
        action(focused if focused in editors else self.w.panel.prompt.edit)

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

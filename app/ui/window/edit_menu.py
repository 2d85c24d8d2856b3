"""Edit menu: undo/redo in the prompt being edited, Copy Parameters, seeds, and the style presets file."""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QApplication

from app.ui.canvas.shown_image import ShownImage
from app.ui.form.form_state import GenerationFormState
from app.ui.form.generation_panel import GenerationPanel
from app.ui.form.presets import StylePreset, load_style_presets, packaged_presets_text
from app.ui.notify import Notifier
from app.ui.window.settings_store import user_style_presets_file

log = logging.getLogger(__name__)


class StylePresetsFile:
    """The user's style presets file: opened for editing on request, read again before a job when edited."""

    def __init__(self, panel: GenerationPanel, notifier: Notifier) -> None:
        self._panel, self._notifier = panel, notifier
        self._mtime: float | None = None

    def current(self) -> dict[str, StylePreset]:
        """The presets by id, re-read first when the file changed since the last look."""
        path = user_style_presets_file()
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return self._panel.styles
        if mtime != self._mtime:
            self._mtime = mtime
            self._panel.set_styles(load_style_presets(path))
        return self._panel.styles

    def edit(self) -> None:
        path = user_style_presets_file()
        try:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(packaged_presets_text(), encoding="utf-8")
        except OSError as exc:
            self._notifier.error(f"Could not create {path}: {exc}")
            return
        self._notifier.info(f"Editing {path}. Changes apply to the next job you generate.")
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))


class EditCommands:
    def __init__(
        self, panel: GenerationPanel, state: GenerationFormState, shown: ShownImage, styles: StylePresetsFile
    ) -> None:
        self._panel, self._state, self._shown, self._styles = panel, state, shown, styles

    def handlers(self) -> dict[str, Callable[[], object]]:
        return {
            "undo": lambda: self._in_text_editor(lambda e: e.undo()),
            "redo": lambda: self._in_text_editor(lambda e: e.redo()),
            "copy_parameters": self.copy_parameters,
            "reuse_seed": self._state.reuse_last_seed,
            "random_seed": self.toggle_random_seed,
            "edit_styles": self._styles.edit,
        }

    def copy_parameters(self) -> None:
        if self._shown.result is not None:
            QApplication.clipboard().setText(self._shown.result.infotext)

    def toggle_random_seed(self) -> None:
        # The checkable action follows the state (the window's state listener), so flipping the state is
        # what the click means.
        self._state.update(random_seed=not self._state.values.random_seed)

    def _in_text_editor(self, action: Callable[[object], None]) -> None:
        focused = QApplication.focusWidget()
        editors = (self._panel.prompt.edit, self._panel.negative.edit)
        action(focused if focused in editors else self._panel.prompt.edit)

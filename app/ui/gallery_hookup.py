"""Wiring the gallery into the main window: finished images are indexed, gallery actions fill the form.

The worker has already written each PNG (with every metadata chunk) before the window hears of it; the gallery
only adds the record, off the UI thread, and hashes the model file in the background for later images.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

if TYPE_CHECKING:
    from app.gallery.recall import SettingsRecall
    from app.ui.gallery_panel import GalleryPanel
    from app.ui.jobs import ImageResult
    from app.ui.main_window import MainWindow

log = logging.getLogger(__name__)


def _checkpoint_of(path: Path, name: str) -> Path | None:
    if path.is_file():
        return path
    candidate = path / f"{name}.safetensors"
    return candidate if candidate.is_file() else None


def recall_values(recall: SettingsRecall) -> dict[str, object]:
    """Form values carried by a recalled image (None fields keep the form's current value)."""
    r = recall.request
    values: dict[str, object] = {"prompt": r.prompt, "negative": r.negative, "count": 1}
    for name in ("steps", "cfg", "sampler", "scheduler", "width", "height", "shift", "slg_start", "slg_end"):
        if getattr(r, name) is not None:
            values[name] = getattr(r, name)
    if recall.seed is not None:
        values.update(seed=recall.seed, random_seed=False)
    if r.slg_layers is not None and r.slg_scale is not None:
        values.update(slg_enabled=bool(r.slg_layers) and r.slg_scale > 0, slg_scale=r.slg_scale,
                      slg_layers=",".join(map(str, r.slg_layers)))  # fmt: skip
    if r.negative_until is not None:
        values.update(negative_window=True, negative_until=r.negative_until)
    values["use_t5"] = r.use_t5
    return values


class GalleryHookup:
    """The dock exists from the start (so the saved layout restores it); the panel itself, with its SQLite
    database and image libraries, is built after the window's first paint by `attach()`."""

    def __init__(self, window: MainWindow) -> None:
        self.window = window
        self.panel: GalleryPanel | None = None
        self._pending: list[ImageResult] = []
        self._loaded_name: str | None = None  # the model set the engine last loaded
        placeholder = QLabel("Opening the gallery…")
        placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.dock = window.add_side_panel("Gallery", "galleryDock", placeholder)
        c = window.controller
        c.image_finished.connect(self._on_controller_image_finished)
        c.model_loaded.connect(self._on_controller_model_loaded)

    def attach(self, panel: GalleryPanel | None = None) -> None:
        if self.panel is not None:
            return
        from app.ui.gallery_panel import GalleryPanel

        window = self.window
        self.panel = panel or GalleryPanel()
        self.dock.setWidget(self.panel)
        self.panel.image_opened.connect(self._on_panel_image_opened)
        self.panel.settings_requested.connect(self._on_panel_settings_requested)
        self.panel.seed_requested.connect(self._on_panel_seed_requested)
        self.panel.status_changed.connect(window.statusBar().showMessage)
        self.panel.save_failed.connect(lambda text: window.banner.show_message(text))
        for result in self._pending:
            self._on_controller_image_finished(result)
        self._pending.clear()
        if self._loaded_name is not None:
            self._on_controller_model_loaded(0, self._loaded_name, 0.0, "")

    def _on_controller_image_finished(self, result: ImageResult) -> None:
        if result.path is None or result.params is None:
            return
        if self.panel is None:
            self._pending.append(result)
            return
        self.panel.add_saved_image(result.path, result.params, job_id=str(result.job_id))

    def _on_controller_model_loaded(self, _job_id: int, name: str, _seconds: float, _plan: str) -> None:
        self._loaded_name = name
        info = self.window.picker.selected
        if info is None or self.panel is None:
            return
        self.panel.set_model(_checkpoint_of(info.path, name), info.variant, t5_available=info.has_t5)

    def _on_panel_image_opened(self, path: object) -> None:
        from PySide6.QtGui import QImage

        image = QImage(str(path))
        if image.isNull():
            self.window.banner.show_message(f"Cannot open {path}")
            return
        self.window.canvas.set_image(image)
        self.window.stack.setCurrentWidget(self.window.canvas)

    def _on_panel_settings_requested(self, recall: SettingsRecall) -> None:
        self.window.state.update(**recall_values(recall))
        notes = [*recall.warnings, *(f"not applied: {u}" for u in recall.unmapped)]
        self.window.statusBar().showMessage("Settings applied" + (f" — {'; '.join(notes)}" if notes else ""))

    def _on_panel_seed_requested(self, recall: SettingsRecall) -> None:
        if recall.seed is not None:
            self.window.state.update(seed=recall.seed, random_seed=False)

    def shutdown(self) -> None:
        if self.panel is not None:
            self.panel.shutdown()

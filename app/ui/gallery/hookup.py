"""Wiring the gallery into the main window: finished images are indexed, gallery actions fill the form.

The worker has already written each PNG (with every metadata chunk) before the window hears of it; the gallery
only adds the record, off the UI thread, and hashes the model file in the background for later images. Once the
record exists, the image's step frames are written next to the gallery (also off the UI thread); opening an image
from the gallery loads its frames in the background and offers them to the scrubber under the canvas.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QDockWidget, QLabel, QWidget

from app.ui.canvas.shown_image import ShownImage
from app.ui.form.form_state import GenerationFormState
from app.ui.form.model_picker import ModelPickerController
from app.ui.generation.controller import GenerationController
from app.ui.notify import Notifier

if TYPE_CHECKING:
    from app.gallery.db import ImageRecord
    from app.gallery.step_frames import StepFrames
    from app.metadata.recall import SettingsRecall
    from app.ui.gallery.panel import GalleryPanel
    from app.ui.generation.jobs import ImageResult

log = logging.getLogger(__name__)

# Step frames of finished images whose gallery record or frame file is still on its way (a failed save's stay).
FRESH_FRAMES_KEPT = 16


def _checkpoint_of(path: Path, name: str) -> Path | None:
    if path.is_file():
        return path
    candidate = path / f"{name}.safetensors"
    return candidate if candidate.is_file() else None


def _remembered_output_root() -> Path:
    from app.ui.generation.output_folder import OutputFolder
    from app.ui.window.settings_store import open_settings

    return OutputFolder(open_settings()).root()


class GalleryHookup:
    """The dock exists from the start (so the saved layout restores it); the panel itself, with its SQLite
    database and image libraries, is built after the window's first paint by `attach()`. `add_dock` puts a
    widget into a new dock of the window; the hookup reaches the rest only through what it is given."""

    def __init__(
        self,
        add_dock: Callable[[QWidget], QDockWidget],
        controller: GenerationController,
        picker: ModelPickerController,
        state: GenerationFormState,
        shown: ShownImage,
        notifier: Notifier,
        output_root: Callable[[], Path] | None = None,
    ) -> None:
        self._picker, self._state, self._shown, self._notifier = picker, state, shown, notifier
        self._output_root = output_root or _remembered_output_root
        self.panel: GalleryPanel | None = None
        self._pending: list[ImageResult] = []
        self._loaded_name: str | None = None  # the model set the engine last loaded
        self._fresh_frames: dict[str, StepFrames] = {}  # by image path, until their file is written
        self._controlnet_files: tuple[Path, ...] = ()  # the ControlNets found here, for recall (by name)
        self._closed = False
        self.trashed_listeners: list[Callable[[list[Path]], None]] = []  # told which images went to the trash
        self.input_listeners: list[Callable[[Path], object]] = []  # "Use as Input Image" on a gallery image
        self.control_listeners: list[Callable[[Path], object]] = []  # "Use as Control Image"
        self.upscale_listeners: list[
            Callable[[Path], object]
        ] = []  # "Upscale" (after its settings are applied)
        placeholder = QLabel("Opening the gallery…")
        placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.dock = add_dock(placeholder)
        c = controller
        c.image_finished.connect(self._on_controller_image_finished)
        c.model_loaded.connect(self._on_controller_model_loaded)

    def attach(self, panel: GalleryPanel | None = None) -> bool:
        """Open the gallery in the dock; False (and the dock says why, offering a way out) when its database
        cannot be opened."""
        if self.panel is not None:
            return True
        from app.gallery.errors import GalleryOpenError
        from app.ui.gallery.panel import GalleryPanel

        try:
            self.panel = panel or GalleryPanel()
        except GalleryOpenError as exc:
            self._offer_repair(exc)
            return False
        self.dock.setWidget(self.panel)
        self.panel.image_opened.connect(self._on_panel_image_opened)
        self.panel.input_requested.connect(self._on_panel_input_requested)
        self.panel.control_requested.connect(self._on_panel_control_requested)
        self.panel.upscale_requested.connect(self._on_panel_upscale_requested)
        self.panel.settings_requested.connect(self._on_panel_settings_requested)
        self.panel.seed_requested.connect(self._on_panel_seed_requested)
        self.panel.status_changed.connect(self._notifier.status)
        self.panel.save_failed.connect(lambda text: self._notifier.error(text))
        self.panel.image_saved.connect(self._on_panel_image_saved)
        for listener in self.trashed_listeners:
            self.panel.images_trashed.connect(listener)
        # Compare belongs in the large centre (a page next to the canvas), not in the narrow dock.
        stack = self._shown.stack
        compare = self.panel.show_compare_elsewhere(lambda: stack.setCurrentWidget(compare))
        compare.back.setText("← Back")
        compare.back.setToolTip("Close the comparison and go back to the canvas (Esc)")
        stack.addWidget(compare)
        compare.closed.connect(self._shown.show_canvas)
        self._sweep_step_frames()
        self.panel.loaded.controlnet_files = self._controlnet_files
        self.panel.output_root = self._output_root
        for result in self._pending:
            self._on_controller_image_finished(result)
        self._pending.clear()
        if self._loaded_name is not None:
            self._on_controller_model_loaded(0, self._loaded_name, 0.0, "")
        return True

    def _offer_repair(self, error: Exception) -> None:
        """The damaged-database panel in the dock (app.ui.gallery.db_problem), brought to the front; a
        rebuild imports the window's output folder."""
        from app.ui.gallery.db_problem import offer_repair

        output = self._output_root()
        offer_repair(error, output, self.dock.setWidget, self.attach, lambda f: self.panel.import_folder(f))
        self.dock.show()
        self.dock.raise_()

    def _on_controller_image_finished(self, result: ImageResult) -> None:
        if result.path is None or result.params is None:
            return
        if result.step_frames is not None:
            self._fresh_frames[str(result.path)] = result.step_frames
            while len(self._fresh_frames) > FRESH_FRAMES_KEPT:  # their records never came (a failed save)
                self._fresh_frames.pop(next(iter(self._fresh_frames)))
        if self.panel is None:
            self._pending.append(result)
            return
        self.panel.add_saved_image(result.path, result.params, job_id=str(result.job_id))

    def _on_controller_model_loaded(self, _job_id: int, name: str, _seconds: float, _plan: str) -> None:
        self._loaded_name = name
        info = self._picker.selected
        if info is None or self.panel is None:
            return
        self.panel.set_model(_checkpoint_of(info.path, name), info.variant, t5_available=info.has_t5)

    def _on_panel_image_opened(self, path: object) -> None:
        image = QImage(str(path))
        if image.isNull():
            self._notifier.error(f"Cannot open {path}")
            return
        self._shown.show_picture(image, caption=Path(str(path)).name, file=Path(str(path)))
        self._offer_step_frames(Path(str(path)), image)

    def _on_panel_input_requested(self, path: object) -> None:
        for listener in list(self.input_listeners):
            listener(Path(str(path)))

    def _on_panel_control_requested(self, path: object) -> None:
        for listener in list(self.control_listeners):
            listener(Path(str(path)))

    def _on_panel_upscale_requested(self, path: object, recall: SettingsRecall) -> None:
        self._on_panel_settings_requested(recall)
        for listener in list(self.upscale_listeners):
            listener(Path(str(path)))

    # -- step frames ---------------------------------------------------------------------------------------

    def _on_panel_image_saved(self, record: ImageRecord) -> None:
        """The record of a finished image exists: write its step frames under the record's id."""
        key = str(record.path)
        frames = self._fresh_frames.get(key)
        if frames is None or self.panel is None or self.panel.db.read_only or self._closed:
            return
        from app.gallery.store import save_step_frames
        from app.ui.gallery.tasks import run_task

        db, image_id = self.panel.db, record.id

        def written(_result: object) -> None:
            self._fresh_frames.pop(key, None)

        run_task(lambda: save_step_frames(db, image_id, frames), written, written, pool=self.panel.tasks)

    def _offer_step_frames(self, path: Path, image: QImage) -> None:
        """Hand the scrubber the step frames of the image just opened, once loaded (if it still shows)."""
        frames = self._fresh_frames.get(str(path))
        if frames is not None:
            self._shown.scrubber.show_frames(frames, image)
            return
        panel = self.panel
        if panel is None or self._closed:
            return
        image_id = panel.db.ids_for_paths([path]).get(str(path))
        if image_id is None:
            return
        from app.gallery.store import load_step_frames
        from app.ui.gallery.tasks import run_task

        db, canvas = panel.db, self._shown.canvas

        def loaded(frames: object) -> None:
            if frames is not None and not self._closed and canvas.image() is image:
                self._shown.scrubber.show_frames(frames, image)  # type: ignore[arg-type]

        run_task(lambda: load_step_frames(db, image_id), loaded, pool=panel.tasks)

    def _sweep_step_frames(self) -> None:
        """Frame files of a crashed session that no record refers to go, in the background."""
        if self.panel is None or self.panel.db.read_only:
            return
        from app.gallery.store import remove_orphan_step_frames
        from app.ui.gallery.tasks import run_task

        db = self.panel.db
        run_task(lambda: remove_orphan_step_frames(db), pool=self.panel.tasks)

    def _on_panel_settings_requested(self, recall: SettingsRecall) -> None:
        self._state.apply_request(recall.request, seed=recall.seed)
        notes = [*recall.warnings, *(f"not applied: {u}" for u in recall.unmapped)]
        self._notifier.status("Settings applied" + (f" — {'; '.join(notes)}" if notes else ""))

    def share_controlnet_files(self, files: tuple[Path, ...]) -> None:
        """The ControlNet scan's usable files: recall swaps an image's ControlNet names (A1111, ComfyUI) for
        them. Kept until the panel opens (the scan may end first)."""
        self._controlnet_files = tuple(files)
        if self.panel is not None:
            self.panel.loaded.controlnet_files = self._controlnet_files

    def recall_dropped_file(self, path: Path) -> None:
        """An image dropped on the window: its settings fill the form (or the status bar says why not)."""
        if self.panel is None:
            self._notifier.status("The gallery is still opening; drop the image again in a moment")
            return
        self.panel.recall_file(path)

    def _on_panel_seed_requested(self, recall: SettingsRecall) -> None:
        if recall.seed is not None:
            self._state.update(seed=recall.seed, random_seed=False)

    def open_compare(self, paths: list[Path]) -> list[ImageRecord]:
        """Open these saved images in the gallery's compare view (they must be indexed by now); [] after
        telling the user why not."""
        panel = self.panel
        if panel is None or len(paths) < 2:
            self._notifier.status("Compare needs at least two finished, saved seeds")
            return []
        ids = panel.db.ids_for_paths(paths)
        by_id = {rec.id: rec for rec in panel.db.get(list(ids.values()))}
        records = [by_id[ids[str(p)]] for p in paths if str(p) in ids and ids[str(p)] in by_id]
        if len(records) < len(paths):
            self._notifier.status("The gallery is still indexing these images; try again in a moment")
            return []
        panel.open_compare(records)
        return records

    def compare_with_source(self, result: ImageResult | None) -> bool:
        """Before / after: a refined image next to its input in the compare view. The input is its gallery
        record when it has one, else the file as it is (labelled by what the refine changed)."""
        panel = self.panel
        source = (
            result.params.request.init_image if result is not None and result.params is not None else None
        )
        if panel is None or result is None or result.path is None or source is None:
            self._notifier.status("Compare before/after needs a finished, saved refine result on the canvas")
            return False
        if not source.is_file():
            self._notifier.status(f"The input image {source.name} no longer exists")
            return False
        from app.gallery.db import ImageRecord

        ids = panel.db.ids_for_paths([result.path, source])
        after = panel.db.get([ids[str(result.path)]]) if str(result.path) in ids else []
        if not after:
            self._notifier.status("The gallery is still indexing this image; try again in a moment")
            return False
        before = panel.db.get([ids[str(source)]]) if str(source) in ids else []
        if not before:  # a file from outside the gallery: the result's settings without the refine
            params = result.params.updated(
                init_image=None, mask_image=None, outpaint=(0, 0, 0, 0), denoise=1.0, source_sha256=None
            )
            before = [ImageRecord(-1, source, 0.0, None, 0, "input", params)]
        panel.open_compare([before[0], after[0]])
        return True

    def shutdown(self) -> None:
        self._closed = True
        if self.panel is not None:
            self.panel.shutdown()

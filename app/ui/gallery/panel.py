"""GalleryPanel: the gallery as one widget for the main window: browse, search, rate, compare, reuse, export.

The main window embeds it, connects its signals (`image_opened`, `settings_requested`, `seed_requested`,
`image_saved`, `save_failed`, `status_changed`) and hands it every finished image with `add_finished_image`.
Files are written and thumbnails made on pool threads; the database is only queried briefly on this thread.
The data side (database, hashing, trash, background jobs) is `GalleryLibrary`; this module is the widget.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.gallery.db import ImageRecord
from app.gallery.export import DEFAULT_QUALITY
from app.metadata.control_image_search import kept_image_folders
from app.metadata.file_names import OutputTarget
from app.metadata.limits import MetadataError
from app.metadata.params import ImageParams
from app.metadata.recall import CurrentSetup, Recalled, SettingsRecall, read_metadata, settings_for
from app.ui.gallery.actions import copy_image, copy_parameters, reveal_in_file_manager
from app.ui.gallery.compare_view import CompareView
from app.ui.gallery.filter_bar import GalleryFilterBar
from app.ui.gallery.library import GalleryLibrary
from app.ui.gallery.list_model import GalleryListModel, Grouping
from app.ui.gallery.menu import ask_filter_name, build_context_menu, build_more_menu
from app.ui.gallery.notice import NoticeBar
from app.ui.gallery.paths import default_data_dir, default_output_dir
from app.ui.gallery.tasks import ThumbnailLoader
from app.ui.gallery.view import GalleryView

if TYPE_CHECKING:
    import numpy as np

    from app.inference.api.request import GenerationRequest

log = logging.getLogger(__name__)

__all__ = ["GalleryPanel", "default_data_dir", "default_output_dir"]  # the folders moved to gallery_paths


class GalleryPanel(QWidget):
    image_opened = Signal(object)  # Path: open this image in the canvas
    input_requested = Signal(object)  # Path: refine this image (it becomes the input image)
    control_requested = Signal(object)  # Path: the active ControlNet's control image
    upscale_requested = Signal(object, object)  # Path, SettingsRecall: upscale this image with its settings
    settings_requested = Signal(object)  # SettingsRecall: fill the controls with these settings
    seed_requested = Signal(object)  # SettingsRecall: reuse only its seed (`.seed`)
    image_saved = Signal(object)  # ImageRecord of a finished image, once its file and record exist
    save_failed = Signal(str)  # a finished image could not be saved; the text says what to do
    status_changed = Signal(str)  # short messages for the status bar
    images_trashed = Signal(list)  # [Path]: these images went to the trash (the Recent strip drops them)

    def __init__(
        self,
        data_dir: Path | None = None,
        output: OutputTarget | None = None,
        parent: QWidget | None = None,
        *,
        settings: QSettings | None = None,
    ) -> None:
        super().__init__(parent)
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        self.output = output or OutputTarget(default_output_dir())
        # the window's output folder (its kept control images are looked for there on recall)
        self.output_root: Callable[[], Path] = lambda: self.output.root
        self._settings = settings  # remembered choices (export format); opened on first use
        lib = self.library = GalleryLibrary(self.data_dir, self)
        # the data side under its usual names: the window's hookup and tests use panel.db, .loaded, .tasks
        self.db, self.loaded, self.trash = lib.db, lib.loaded, lib.trash
        self.tasks, self.hasher = lib.tasks, lib.hasher
        self.thumbnails = ThumbnailLoader(self.data_dir / "thumbnails", self)
        self.model = GalleryListModel(self.db, self.thumbnails, self)
        self._build()
        self.model.reload()
        self._update_count()
        self.filter_bar.set_saved_filters(self.db.saved_filters())
        self.filter_bar.set_lora_names(self.db.lora_names())
        if self.db.notice:
            self.notice_bar.sticky = self.db.notice if self.db.read_only else ""
            self.show_notice(self.db.notice)
        self.library.clean_output_folder(self.output.root)

    def _build(self) -> None:
        self.filter_bar = GalleryFilterBar()
        self.view = GalleryView()
        self.view.setModel(self.model)
        self.compare = CompareView()
        self._show_compare: Callable[[], None] | None = None  # set when the window hosts the compare view
        self.pages = QStackedWidget()
        self.pages.addWidget(self.view)
        self.pages.addWidget(self.compare)
        self.notice_bar = NoticeBar()
        self.notice, self.undo_button = self.notice_bar.label, self.notice_bar.undo_button
        self.count_label = QLabel()

        self.compare_button = QPushButton("Compare")
        self.compare_button.setToolTip("Compare 2–16 selected images side by side")
        self.more_button = QToolButton(text="More ▾")
        self.more_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.more_button.setMenu(build_more_menu(self, self))
        footer = QHBoxLayout()
        footer.addWidget(self.count_label, 1)
        footer.addWidget(self.compare_button)
        footer.addWidget(self.more_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.filter_bar)
        layout.addWidget(self.notice_bar)
        layout.addWidget(self.pages, 1)
        layout.addLayout(footer)
        self.filter_bar.filter_changed.connect(self._on_filter_bar_filter_changed)
        self.filter_bar.grouping_changed.connect(self._on_filter_bar_grouping_changed)
        self.filter_bar.save_requested.connect(self._on_filter_bar_save_requested)
        self.view.rating_pressed.connect(self._on_view_rating_pressed)
        self.view.delete_pressed.connect(self.delete_selected)
        self.view.copy_pressed.connect(self._on_view_copy_pressed)
        self.view.activated.connect(self._on_view_activated)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._on_view_custom_context_menu_requested)
        self.view.selectionModel().selectionChanged.connect(self._on_selection_changed)
        self.notice_bar.undo_clicked.connect(self.undo_delete)
        self.compare_button.clicked.connect(lambda: self.open_compare(self.selected_records()))
        self.compare.closed.connect(self._on_compare_closed)
        self.compare.rating_changed.connect(lambda image_id, stars: self.rate([image_id], stars))
        self.compare.seed_requested.connect(self.request_seed)
        self.compare.image_opened.connect(self.image_opened)
        self._on_selection_changed()

    # -- what the main window calls ------------------------------------------------------------------------

    def set_model(self, checkpoint: Path | None, variant: str | None, *, t5_available: bool = True) -> None:
        """The loaded model set (for metadata and reproduction warnings); starts hashing it in the background."""
        self.loaded.set(checkpoint, variant, t5_available)

    def set_output_settings(self, output: OutputTarget) -> None:
        self.output = output

    def current_setup(self, image: Path | None = None) -> CurrentSetup:
        """What recall compares with; for `image`, also where its moved control images may be now."""
        setup = self.loaded.setup()
        folders = kept_image_folders(image, self.output_root())
        return replace(setup, control_image_folders=folders)

    def add_finished_image(
        self, pixels: np.ndarray, request: GenerationRequest, seed: int, *, job_id: str
    ) -> None:
        """Save a finished image (PNG with all metadata, then its record) on a pool thread; `image_saved` or
        `save_failed` follows. `request` is the resolved request of the job (ImageFinished.request)."""
        self.library.save_finished(self.output, pixels, request, seed, job_id=job_id,
                                   on_done=self._on_save_finished, on_failed=self._on_save_failed)  # fmt: skip

    def add_saved_image(self, path: Path, params: ImageParams, *, job_id: str | None) -> None:
        """Index an image already written elsewhere (`app.gallery.store.write_image(path, pixels,
        panel.loaded.image_params(request, seed))`, off the UI thread); `image_saved` follows."""
        self.library.add_saved(path, params, job_id, self._on_save_finished, self._on_save_failed)

    def recall_file(self, path: Path) -> None:
        """Read an image dropped on the window, on a pool thread (a file can be big or crafted): then emits
        `settings_requested`, or says on the status bar why it cannot."""
        path = Path(path)
        self.library.run(lambda: read_metadata(path), lambda r: self._on_file_recalled(path, r),
                         lambda exc: self._on_file_not_recalled(path, exc))  # fmt: skip

    def _on_file_recalled(self, path: Path, recalled: object) -> None:
        if not isinstance(recalled, Recalled):
            self.status_changed.emit(f"{path.name} carries no generation settings")
            return
        self.settings_requested.emit(settings_for(recalled, self.current_setup(path)))

    def _on_file_not_recalled(self, path: Path, exc: BaseException) -> None:
        reason = str(exc) if isinstance(exc, MetadataError) else f"it cannot be read ({exc})"
        self.status_changed.emit(f"{path.name}: {reason}")

    def shutdown(self) -> None:
        """Let database writes in flight finish (bounded), then close; late results are dropped."""
        self.library.stop()
        self.thumbnails.shutdown()
        self.library.close()

    # -- selection and actions -----------------------------------------------------------------------------

    def shown_records(self) -> list[ImageRecord]:
        return self.db.get([k.id for k in self.db.row_keys(self.model.filter)])

    def selected_records(self) -> list[ImageRecord]:
        rows = sorted(i.row() for i in self.view.selectionModel().selectedIndexes())
        return [r for r in (self.model.record(row) for row in rows) if r is not None]

    def settings_of(self, record: ImageRecord) -> SettingsRecall:
        return settings_for(Recalled(record.params, record.source), self.current_setup(record.path))

    def open_in_canvas(self, record: ImageRecord) -> None:
        self.image_opened.emit(record.path)

    def use_as_input(self, record: ImageRecord) -> None:
        self.input_requested.emit(record.path)

    def use_as_control(self, record: ImageRecord) -> None:
        self.control_requested.emit(record.path)

    def upscale(self, record: ImageRecord) -> None:
        self.upscale_requested.emit(record.path, self.settings_of(record))

    def show_status(self, text: str) -> None:
        self.status_changed.emit(text)

    def request_settings(self, record: ImageRecord) -> None:
        self.settings_requested.emit(self.settings_of(record))

    def request_seed(self, record: ImageRecord) -> None:
        self.seed_requested.emit(self.settings_of(record))

    def rate(self, ids: list[int], stars: int) -> None:
        if self.db.read_only:
            self.show_notice(self.db.notice or "The gallery is read-only.")
            return
        self.db.set_rating(ids, stars)
        self.model.refresh_records(ids)
        self.status_changed.emit(
            f"Rated {len(ids)} image{'s' if len(ids) != 1 else ''} {'★' * stars or 'no stars'}"
        )

    def copy_image(self, record: ImageRecord) -> None:
        self.status_changed.emit("Image copied" if copy_image(record) else f"Cannot read {record.path.name}")

    def copy_parameters(self, record: ImageRecord) -> None:
        copy_parameters(record)
        self.status_changed.emit("Parameters copied")

    def reveal(self, record: ImageRecord) -> None:
        reveal_in_file_manager(record.path)

    def delete_selected(self) -> None:
        records = self.selected_records()
        if not records or self.db.read_only:
            return
        outcome = self.trash.delete(records)
        self.model.remove_ids(list(outcome.ids))
        self.images_trashed.emit([r.path for r in records if r.id in outcome.ids])
        self.show_notice(outcome.message(), undo=bool(outcome.ids))
        self._update_count()

    def undo_delete(self) -> None:
        restored, errors = self.trash.undo()
        self.model.reload()
        self._update_count()
        n = restored
        self.show_notice(
            " ".join([f"Restored {n} image{'s' if n != 1 else ''}.", *errors]), undo=self.trash.can_undo
        )

    def remove_missing(self) -> None:
        """Drop the records whose files were deleted outside the app (checked on a pool thread)."""
        self.library.find_missing(self.shown_records(), self._on_missing_checked)

    def _on_missing_checked(self, ids: object) -> None:
        ids = list(ids)
        if ids and not self.db.read_only:
            self.db.remove(ids)
            self.model.remove_ids(ids)
        self._update_count()
        self.show_notice(
            f"Removed {len(ids)} missing image{'s' if len(ids) != 1 else ''} from the gallery."
            if ids
            else "No missing images."
        )

    def show_compare_elsewhere(self, show: Callable[[], None]) -> CompareView:
        """The window shows the compare view in its large centre (`show` brings it to the front) instead of in
        this narrow panel; returns the view for the window to host."""
        self.pages.removeWidget(self.compare)
        self._show_compare = show
        return self.compare

    def open_compare(self, records: list[ImageRecord]) -> None:
        if not 2 <= len(records) <= 16:
            self.status_changed.emit("Select 2 to 16 images to compare")
            return
        self.compare.set_records(records)
        if self._show_compare is not None:
            self._show_compare()
            self.compare.setFocus()
            return
        self.pages.setCurrentWidget(self.compare)
        self._set_comparing(True)
        if not self.undo_button.isVisible():
            self.hide_notice()
        self.compare.setFocus()

    def _set_comparing(self, comparing: bool) -> None:
        """The compare view takes the whole panel: search and gallery buttons would only distract."""
        self.filter_bar.setVisible(not comparing)
        for widget in (self.count_label, self.compare_button, self.more_button):
            widget.setVisible(not comparing)

    def import_folder(self, folder: Path) -> None:
        self.status_changed.emit(f"Importing {folder}…")
        self.library.import_folder(folder, self._on_import_finished, self._on_task_failed)

    def export_records(
        self,
        records: list[ImageRecord],
        destination: Path,
        *,
        as_zip: bool = False,
        fmt: str = "original",
        quality: int = DEFAULT_QUALITY,
    ) -> None:
        self.status_changed.emit(f"Exporting {len(records)} images…")
        self.library.export(
            records, destination, as_zip=as_zip, fmt=fmt, quality=quality,
            on_done=self._on_export_done, on_failed=self._on_export_failed,
        )  # fmt: skip

    def _on_export_done(self, report: object) -> None:
        text = f"Exported {report.exported} images to {report.destination}."  # type: ignore[attr-defined]
        self.show_notice(text)
        self.status_changed.emit(text)  # replaces "Exporting N images…"

    def _on_export_failed(self, exc: BaseException) -> None:
        self._on_task_failed(exc)
        self.status_changed.emit(f"Export failed: {exc}")

    # -- notices -------------------------------------------------------------------------------------------

    def show_notice(self, text: str, undo: bool = False, details: str = "") -> None:
        """A message above the gallery; one without an Undo button or details goes away by itself after a
        while. `details` (e.g. why files were skipped) show in its tooltip and a Details… dialog."""
        self.notice_bar.show_notice(text, undo, details)

    def hide_notice(self) -> None:
        self.notice_bar.hide_notice()

    def settings(self) -> QSettings:
        if self._settings is None:
            from app.ui.window.settings_store import open_settings

            self._settings = open_settings()
        return self._settings

    def _update_count(self) -> None:
        n = self.model.image_count
        spec = self.model.filter
        scope = "" if spec.is_empty else f" matching {spec.describe()}"
        self.count_label.setText(f"{n:,} image{'s' if n != 1 else ''}{scope}")

    # -- slots ---------------------------------------------------------------------------------------------

    def _on_filter_bar_filter_changed(self, spec: object) -> None:
        self.model.reload(spec)
        self._update_count()

    def _on_filter_bar_grouping_changed(self, grouping: object) -> None:
        self.model.reload(grouping=grouping if isinstance(grouping, Grouping) else Grouping.JOB)

    def _on_filter_bar_save_requested(self) -> None:
        name = ask_filter_name(self)
        if name:
            self.save_filter(name)

    def save_filter(self, name: str) -> None:
        self.db.save_filter(name, self.filter_bar.current())
        self.filter_bar.set_saved_filters(self.db.saved_filters())
        self.status_changed.emit(f"Saved filter “{name}”")

    def _on_view_rating_pressed(self, stars: int) -> None:
        ids = [r.id for r in self.selected_records()]
        if ids:
            self.rate(ids, stars)

    def _on_view_copy_pressed(self) -> None:
        records = self.selected_records()
        if records:
            self.copy_image(records[0])

    def _on_view_activated(self, index: object) -> None:
        record = self.model.record(index.row())
        if record is not None:
            self.image_opened.emit(record.path)

    def _on_view_custom_context_menu_requested(self, pos: object) -> None:
        index = self.view.indexAt(pos)
        if index.isValid() and not self.view.selectionModel().isSelected(index):
            self.view.setCurrentIndex(index)
        records = self.selected_records()
        if records:
            build_context_menu(self, self, records).exec(self.view.viewport().mapToGlobal(pos))

    def _on_selection_changed(self, *_args: object) -> None:
        n = len(self.view.selectionModel().selectedIndexes())
        self.compare_button.setEnabled(2 <= n <= 16)
        self.compare_button.setText(f"Compare {n}" if n >= 2 else "Compare")

    def _on_compare_closed(self) -> None:
        self._set_comparing(False)
        self.pages.setCurrentWidget(self.view)
        self.view.setFocus()

    def _on_save_finished(self, record: object) -> None:
        self.model.add_record(record)
        if record.params.request.loras:  # type: ignore[attr-defined]
            self.filter_bar.set_lora_names(self.db.lora_names())
        self._update_count()
        self.image_saved.emit(record)

    def _on_save_failed(self, exc: BaseException) -> None:
        message = str(exc) if isinstance(exc, OSError) else f"The image could not be saved: {exc}"
        self.show_notice(message)
        self.save_failed.emit(message)

    def _on_import_finished(self, report: object) -> None:
        self.model.reload()
        self.filter_bar.set_lora_names(self.db.lora_names())
        self._update_count()
        self.show_notice(report.message(), details=report.details())

    def _on_task_failed(self, exc: BaseException) -> None:
        self.show_notice(str(exc))

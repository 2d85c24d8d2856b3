"""The gallery's menus: the context menu of selected images and the panel's "More" menu.

The menus act on a `GalleryMenuHost` (the panel satisfies it) and open their dialogs over `parent`, so this
module needs nothing from the panel's module.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from PySide6.QtCore import QSettings
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QDialog, QFileDialog, QInputDialog, QMenu, QWidget

from app.gallery.db import ImageRecord
from app.gallery.export import DEFAULT_QUALITY
from app.ui.gallery.export import ExportDialog, load_export_choice, save_export_choice

log = logging.getLogger(__name__)


class GalleryMenuHost(Protocol):
    """What the menus' entries do; `GalleryPanel` implements each."""

    def open_in_canvas(self, record: ImageRecord) -> None: ...
    def use_as_input(self, record: ImageRecord) -> None: ...
    def use_as_control(self, record: ImageRecord) -> None: ...
    def upscale(self, record: ImageRecord) -> None: ...
    def request_settings(self, record: ImageRecord) -> None: ...
    def request_seed(self, record: ImageRecord) -> None: ...
    def copy_image(self, record: ImageRecord) -> None: ...
    def copy_parameters(self, record: ImageRecord) -> None: ...
    def rate(self, ids: list[int], stars: int) -> None: ...
    def open_compare(self, records: list[ImageRecord]) -> None: ...
    def reveal(self, record: ImageRecord) -> None: ...
    def delete_selected(self) -> None: ...
    def shown_records(self) -> list[ImageRecord]: ...
    def remove_missing(self) -> None: ...
    def import_folder(self, folder: Path) -> None: ...
    def show_status(self, text: str) -> None: ...
    def settings(self) -> QSettings: ...
    def export_records(
        self,
        records: list[ImageRecord],
        destination: Path,
        *,
        as_zip: bool = False,
        fmt: str = "original",
        quality: int = DEFAULT_QUALITY,
    ) -> None: ...


def build_context_menu(parent: QWidget, panel: GalleryMenuHost, records: list[ImageRecord]) -> QMenu:
    first, n = records[0], len(records)
    menu = QMenu(parent)
    menu.addAction("Open in Canvas", lambda: panel.open_in_canvas(first)).setShortcut(QKeySequence("Return"))
    menu.addAction("Use as Input Image", lambda: panel.use_as_input(first))  # refine it (img2img, inpaint…)
    menu.addAction(
        "Use as Control Image", lambda: panel.use_as_control(first)
    )  # the active ControlNet's image
    menu.addAction("Upscale ×1.5", lambda: panel.upscale(first))  # its settings, then image to image, larger
    menu.addAction("Use These Settings", lambda: panel.request_settings(first))
    menu.addAction("Reuse Seed", lambda: panel.request_seed(first))
    menu.addSeparator()
    menu.addAction("Copy Image", lambda: panel.copy_image(first)).setShortcut(QKeySequence.StandardKey.Copy)
    menu.addAction("Copy Parameters", lambda: panel.copy_parameters(first))
    rate = menu.addMenu("Rate")
    ids = [r.id for r in records]
    for stars in range(6):
        label = "★" * stars if stars else "No stars"
        rate.addAction(label, lambda s=stars: panel.rate(ids, s)).setShortcut(QKeySequence(str(stars)))
    compare_label = f"Compare {n} Images" if n >= 2 else "Compare (select 2–16 images)"
    compare = menu.addAction(compare_label, lambda: panel.open_compare(records))
    compare.setEnabled(2 <= n <= 16)
    menu.addSeparator()
    menu.addAction("Reveal in File Manager", lambda: panel.reveal(first))
    menu.addAction(f"Export {n} Image{'s' if n != 1 else ''}…", lambda: ask_export(parent, panel, records))
    menu.addSeparator()
    menu.addAction("Move to Trash", panel.delete_selected).setShortcut(QKeySequence.StandardKey.Delete)
    return menu


def build_more_menu(parent: QWidget, panel: GalleryMenuHost) -> QMenu:
    menu = QMenu(parent)
    menu.addAction("Import Folder…", lambda: ask_import(parent, panel))
    menu.addAction("Export Everything Shown…", lambda: ask_export(parent, panel, panel.shown_records()))
    menu.addAction("Remove Missing Images", panel.remove_missing)
    return menu


def ask_import(parent: QWidget, panel: GalleryMenuHost) -> None:
    folder = QFileDialog.getExistingDirectory(parent, "Import images from a folder")
    if folder:
        panel.import_folder(Path(folder))


def ask_export(parent: QWidget, panel: GalleryMenuHost, records: list[ImageRecord]) -> None:
    """Ask where and in which format (starting from last time's choice), remember it, then export."""
    if not records:
        panel.show_status("Nothing to export")
        return
    settings = panel.settings()
    dialog = ExportDialog(len(records), load_export_choice(settings), parent)
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return
    choice = dialog.choice()
    save_export_choice(settings, choice)
    panel.export_records(
        records, choice.target(), as_zip=choice.as_zip, fmt=choice.fmt, quality=choice.quality
    )


def ask_filter_name(parent: QWidget) -> str:
    """The name for a new saved filter, or "" when the user cancels."""
    name, ok = QInputDialog.getText(parent, "Save filter", "Name for this filter:")
    return name.strip() if ok else ""

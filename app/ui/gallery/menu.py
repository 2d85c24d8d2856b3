"""The gallery's menus: the context menu of selected images and the panel's "More" menu."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QDialog, QFileDialog, QInputDialog, QMenu

from app.gallery.db import ImageRecord
from app.ui.gallery.export import ExportDialog, load_export_choice, save_export_choice

if TYPE_CHECKING:
    from app.ui.gallery.panel import GalleryPanel

log = logging.getLogger(__name__)


def build_context_menu(panel: GalleryPanel, records: list[ImageRecord]) -> QMenu:
    first, n = records[0], len(records)
    menu = QMenu(panel)
    menu.addAction("Open in Canvas", lambda: panel.image_opened.emit(first.path)).setShortcut(
        QKeySequence("Return")
    )
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
    menu.addAction(f"Export {n} Image{'s' if n != 1 else ''}…", lambda: ask_export(panel, records))
    menu.addSeparator()
    menu.addAction("Move to Trash", panel.delete_selected).setShortcut(QKeySequence.StandardKey.Delete)
    return menu


def build_more_menu(panel: GalleryPanel) -> QMenu:
    menu = QMenu(panel)
    menu.addAction("Import Folder…", lambda: ask_import(panel))
    menu.addAction("Export Everything Shown…", lambda: ask_export(panel, panel.shown_records()))
    menu.addAction("Remove Missing Images", panel.remove_missing)
    return menu


def ask_import(panel: GalleryPanel) -> None:
    folder = QFileDialog.getExistingDirectory(panel, "Import images from a folder")
    if folder:
        panel.import_folder(Path(folder))


def ask_export(panel: GalleryPanel, records: list[ImageRecord]) -> None:
    """Ask where and in which format (starting from last time's choice), remember it, then export."""
    if not records:
        panel.status_changed.emit("Nothing to export")
        return
    settings = panel.settings()
    dialog = ExportDialog(len(records), load_export_choice(settings), panel)
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return
    choice = dialog.choice()
    save_export_choice(settings, choice)
    panel.export_records(
        records, choice.target(), as_zip=choice.as_zip, fmt=choice.fmt, quality=choice.quality
    )


def ask_filter_name(panel: GalleryPanel) -> str:
    """The name for a new saved filter, or "" when the user cancels."""
    name, ok = QInputDialog.getText(panel, "Save filter", "Name for this filter:")
    return name.strip() if ok else ""

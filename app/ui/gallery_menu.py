"""The gallery's menus: the context menu of selected images and the panel's "More" menu."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QFileDialog, QMenu

from app.gallery.db import ImageRecord

if TYPE_CHECKING:
    from app.ui.gallery_panel import GalleryPanel

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
    compare = menu.addAction(f"Compare {n} Images", lambda: panel.open_compare(records))
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
    path, chosen = QFileDialog.getSaveFileName(
        panel,
        f"Export {len(records)} images",
        str(Path.home() / "SD3.5 export"),
        "Folder (images, contact sheet, manifest) (*);;Zip archive (*.zip)",
    )
    if path:
        as_zip = chosen.startswith("Zip") or path.endswith(".zip")
        panel.export_records(
            records, Path(path if not as_zip or path.endswith(".zip") else f"{path}.zip"), as_zip=as_zip
        )

"""A damaged gallery database: the window says what happened in the gallery dock, keeps the file, and starts a
new gallery (or rebuilds it from the output folder) when the user clicks the button."""

from __future__ import annotations

import random

from PySide6.QtCore import Qt

from app.gallery.db import DB_NAME
from app.ui.gallery.db_problem import DatabaseProblemPanel
from app.ui.gallery.panel import GalleryPanel
from app.ui.gallery.paths import default_data_dir
from tests.gallery.helpers import params, write_a1111_png
from tests.ui.conftest import wait_until_ready


def _problem_panel(qtbot, window) -> DatabaseProblemPanel:
    wait_until_ready(qtbot, window)
    qtbot.waitUntil(lambda: isinstance(window.gallery.dock.widget(), DatabaseProblemPanel), timeout=10000)
    return window.gallery.dock.widget()


def test_a_damaged_database_is_explained_kept_and_a_new_gallery_starts(qtbot, make_window, tmp_path):
    path = default_data_dir() / DB_NAME
    path.parent.mkdir(parents=True)
    damaged = random.Random(3).randbytes(48 * 1024)
    path.write_bytes(damaged)
    window = make_window()
    problem = _problem_panel(qtbot, window)

    assert problem.message.text() == (
        f"The gallery database {path} is damaged and cannot be read (it is not an SQLite database)."
    )
    assert problem.new_button.isVisible() and problem.rebuild_button.isVisible()
    assert not problem.retry_button.isVisible() and window.gallery.panel is None
    assert path.read_bytes() == damaged  # nothing touched before the user chooses
    window.gallery.dock.grab().save(str(tmp_path / "dock.png"))

    qtbot.mouseClick(problem.new_button, Qt.MouseButton.LeftButton)

    qtbot.waitUntil(lambda: isinstance(window.gallery.dock.widget(), GalleryPanel), timeout=10000)
    panel = window.gallery.panel
    kept = list(path.parent.glob(f"{DB_NAME}.damaged-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == damaged
    assert panel.db.count() == 0 and not panel.db.read_only
    with qtbot.waitSignal(panel.image_saved, timeout=10000):
        panel.add_saved_image(write_a1111_png(tmp_path / "new.png"), params(seed=42), job_id="1")
    assert panel.db.count() == 1


def test_rebuild_imports_the_output_folder_into_a_new_gallery(qtbot, make_window, tmp_path):
    output = tmp_path / "out"
    (output / "2026-12-01").mkdir(parents=True)
    images = [write_a1111_png(output / "a.png"), write_a1111_png(output / "2026-12-01" / "b.png")]
    before = [p.read_bytes() for p in images]
    path = default_data_dir() / DB_NAME
    path.mkdir(parents=True)  # a folder where the database file should be
    window = make_window(output_dir=output)
    problem = _problem_panel(qtbot, window)
    assert "is a folder (or something else), not a database file" in problem.message.text()

    qtbot.mouseClick(problem.rebuild_button, Qt.MouseButton.LeftButton)

    qtbot.waitUntil(
        lambda: window.gallery.panel is not None and window.gallery.panel.db.count() == 2, timeout=15000
    )
    assert [p.read_bytes() for p in images] == before  # images on disk are never touched
    assert len(list(path.parent.glob(f"{DB_NAME}.damaged-*"))) == 1 and path.is_file()
    qtbot.waitUntil(lambda: window.gallery.panel.notice_bar.label.text().startswith("Imported 2 images"))

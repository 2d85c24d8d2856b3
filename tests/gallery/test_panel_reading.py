"""The gallery panel reads image files off the UI thread and shows what an import skipped, and why."""

from __future__ import annotations

import threading

from PySide6.QtCore import Qt

import app.ui.gallery.panel as panel_module
from tests.gallery.helpers import write_a1111_png
from tests.gallery.test_metadata_limits import DEEP, itxt, write_png


def test_a_dropped_file_is_read_off_the_ui_thread_and_a_bad_one_says_why(qtbot, panel, tmp_path, monkeypatch):
    threads = []
    real = panel_module.read_metadata

    def recording(path):
        threads.append(threading.current_thread())
        return real(path)

    monkeypatch.setattr(panel_module, "read_metadata", recording)
    with qtbot.waitSignal(panel.settings_requested) as got:
        panel.recall_file(write_a1111_png(tmp_path / "a1111.png"))
    assert got.args[0].source == "a1111"
    assert threads and threading.main_thread() not in threads
    with qtbot.waitSignal(panel.status_changed) as status:
        panel.recall_file(write_png(tmp_path / "deep.png", itxt("sd35-studio", DEEP)))
    assert status.args[0] == "deep.png: The sd35-studio text is nested more than 64 levels deep."


def test_an_import_with_a_bad_file_names_it_under_details(qtbot, panel, tmp_path):
    folder = tmp_path / "incoming"
    folder.mkdir()
    write_a1111_png(folder / "good.png")
    write_png(folder / "bad.png", itxt("sd35-studio", DEEP))
    bar = panel.notice_bar
    panel.import_folder(folder)
    qtbot.waitUntil(lambda: bar.label.isVisible() and "skipped" in bar.label.text(), timeout=10000)
    assert bar.label.text() == "Imported 1 image (1 from a1111); 1 skipped."
    assert bar.details_button.isVisible() and not bar.details.isVisible()
    qtbot.mouseClick(bar.details_button, Qt.MouseButton.LeftButton)
    assert bar.details.isVisible()
    assert bar.details.toPlainText() == "bad.png: The sd35-studio text is nested more than 64 levels deep."
    panel.grab().save(str(tmp_path / "import-notice.png"))

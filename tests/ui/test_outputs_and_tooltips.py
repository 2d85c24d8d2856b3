"""Where images are written, and the rule that every control explains itself."""

import datetime as dt

from PySide6.QtWidgets import QAbstractButton, QAbstractSpinBox, QComboBox, QLineEdit, QPlainTextEdit

from app.metadata.file_names import APP_FOLDER, ImageNamer, OutputTarget
from app.ui.gallery.paths import default_output_dir


def test_default_output_is_the_pictures_folder_with_a_dated_subfolder(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    root = default_output_dir()
    assert root.name == APP_FOLDER and root.parent.name == "Pictures"
    target = OutputTarget(root)
    assert target.folder(dt.date(2026, 3, 4)) == root / "2026-03-04"
    assert OutputTarget(tmp_path / "given", dated=False).folder() == tmp_path / "given"  # --output-dir


def test_names_continue_after_existing_files_and_never_overwrite(tmp_path):
    (tmp_path / "00007-123.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    namer = ImageNamer()
    first = namer.path_for(tmp_path, 5)
    assert first.name == "00008-5.png"
    first.write_bytes(b"")
    (tmp_path / "00009-6.png").write_bytes(b"")  # written by someone else meanwhile
    assert namer.path_for(tmp_path, 6).name == "00010-6.png"
    assert namer.path_for(tmp_path / "new", 1).name == "00001-1.png"


def test_every_control_of_the_settings_panel_has_a_tooltip(make_window):
    window = make_window()
    kinds = (QAbstractSpinBox, QComboBox, QAbstractButton, QLineEdit, QPlainTextEdit)
    missing = []
    widgets = [w for kind in kinds for w in window.panel.findChildren(kind)]
    assert len(widgets) > 30
    for widget in widgets:
        if isinstance(widget, QLineEdit) and isinstance(widget.parent(), (QAbstractSpinBox, QComboBox)):
            continue  # the editor inside a spin box or combo box
        if isinstance(widget.parent(), QLineEdit):
            continue  # a line edit's own clear button
        if widget.objectName() == "sectionToggle":
            continue  # a section header ("Advanced", "LoRAs", "ControlNet") says what it opens
        if not widget.toolTip():
            missing.append(f"{type(widget).__name__} {widget.accessibleName() or widget.objectName()}")
    for button in (window.generate_button, window.cancel_button, window.queue_panel.remove_button):
        if not button.toolTip():
            missing.append(button.text())
    assert not missing, missing

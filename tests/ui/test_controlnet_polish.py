"""Small things an artist sees in the ControlNet section: the image row's text fits the dock's default width (the
full sentence is in the tooltip), and "Add folder…" adds a folder of ControlNets, rescans and remembers it."""

from PySide6.QtCore import Qt

from app.ui.form.control_unit import NO_IMAGE
from app.ui.window.addon_hookup import CONTROLNET_FOLDERS_KEY
from app.ui.window.settings_store import load_json
from tests.factory.controlnet_model import write_controlnet
from tests.ui.conftest import wait_until_ready
from tests.ui.test_dark_theme import dark  # noqa: F401  (fixture)


def open_section(qtbot, window):
    section = window.panel.controlnet
    qtbot.mouseClick(section.toggle, Qt.MouseButton.LeftButton)
    qtbot.wait(50)  # posted layout requests
    (unit,) = section.units
    window.settings_scroll.ensureWidgetVisible(section.overlay_check)
    qtbot.wait(50)
    return section, unit


def check_image_row_fits(qtbot, window, shot):
    section, unit = open_section(qtbot, window)
    label = unit.image_label
    assert label.full_text() == NO_IMAGE
    assert label.text() == NO_IMAGE  # shown whole, not elided, at the dock's default width
    assert "open, paste or drop" in label.toolTip()  # the full sentence
    assert section.folders_button.isVisible()
    assert section.folders_button.geometry().right() <= section.content.width()  # the new row fits too
    window.grab().save(shot)


def test_the_image_row_fits_at_the_default_width(qtbot, make_window, large_model):
    window = make_window(model_path=large_model)
    wait_until_ready(qtbot, window)
    check_image_row_fits(qtbot, window, "/tmp/polish-cn-light.png")
    window.close()


def test_the_image_row_fits_at_the_default_width_in_the_dark_theme(qtbot, make_window, large_model, dark):  # noqa: F811
    window = make_window(model_path=large_model)
    wait_until_ready(qtbot, window)
    check_image_row_fits(qtbot, window, "/tmp/polish-cn-dark.png")
    window.close()


def test_add_folder_lists_its_controlnets_and_is_remembered(
    qtbot, make_window, large_model, tmp_path, monkeypatch
):
    folder = tmp_path / "my controlnets"
    canny = write_controlnet(folder / "sd3.5_large_controlnet_canny.safetensors", control_type="canny")
    asked = []

    def choose(parent, caption, *args, **kwargs):
        asked.append(caption)
        return answers.pop(0)

    answers = ["", str(folder)]  # first the user cancels the dialog, then chooses the folder
    monkeypatch.setattr("app.ui.window.addon_hookup.QFileDialog.getExistingDirectory", choose)
    window = make_window(model_path=large_model)
    wait_until_ready(qtbot, window)
    section, unit = open_section(qtbot, window)
    assert unit.file_combo.findData(str(canny)) < 0  # not searched yet

    qtbot.mouseClick(section.folders_button, Qt.MouseButton.LeftButton)  # cancelled: nothing changes
    assert asked == ["Choose a folder of ControlNet files"]
    assert window.addons.controlnet_folders() == []

    qtbot.mouseClick(section.folders_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: unit.file_combo.findData(str(canny)) >= 0, timeout=15_000)  # rescanned
    assert window.addons.controlnet_folders() == [folder]
    assert load_json(window.addons._settings, CONTROLNET_FOLDERS_KEY, []) == [str(folder)]  # saved
    window.close()

"""ControlNets downloaded in the window's own download dialog are listed in the ControlNet section at once — no
restart — even when saved in a folder outside the default places (the window here searches none)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt

from app.downloads.catalog import CONTROLNET_FOLDER
from tests.downloads.conftest import GOOD_TOKEN, large_hub_state
from tests.ui.conftest import wait_until_ready

TIMEOUT_MS = 60_000
BLUR = "sd3.5_large_controlnet_blur.safetensors"


@pytest.fixture
def hub_state(served_large_repos):  # the Large repositories instead of Medium's
    return large_hub_state(served_large_repos)


def _click_box(qtbot, box) -> None:
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton, pos=QPoint(8, box.height() // 2))  # on the indicator


def _listed(window) -> list[str]:
    combo = window.panel.controlnet.units[0].file_combo
    return [combo.itemText(i) for i in range(combo.count())]


def _window_with_one_unit(qtbot, make_window, model: Path):
    """A ready window on `model` with its ControlNet section switched on (one unit); returns (window, section)."""
    window = make_window(model_path=model)
    wait_until_ready(qtbot, window)
    section = window.panel.controlnet
    qtbot.mouseClick(section.toggle, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(section.units) == 1, timeout=5000)
    return window, section


def _large_download_dialog(window, save_in: Path):
    """The window's own download dialog, opened from its menu action, set to Large saved in `save_in`."""
    window.actions.download_models.trigger()
    dialog = window.models.download_dialog
    dialog.set_save_in(save_in)
    dialog.set_variant("large")
    return dialog


def test_controlnets_from_the_download_dialog_are_listed_at_once(
    qtbot, make_window, large_model, fake_hub, tmp_path
):
    window, section = _window_with_one_unit(qtbot, make_window, large_model)
    assert not any("blur" in text for text in _listed(window))  # nothing found before the download

    elsewhere = (
        tmp_path / "my-disk"
    )  # not a default place: the window must learn the folder from the download
    dialog = _large_download_dialog(window, elsewhere)
    assert dialog is not None and dialog.isVisible()
    _click_box(qtbot, dialog.controlnets_only_check)
    _click_box(qtbot, dialog.controlnet_boxes["blur"])
    dialog.token_edit.setText(GOOD_TOKEN)
    with qtbot.waitSignal(dialog.controlnets_downloaded, timeout=TIMEOUT_MS) as arrived:
        qtbot.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)
    (written,) = arrived.args[0]
    assert (
        written == elsewhere / "stable-diffusion-3.5-large" / CONTROLNET_FOLDER / BLUR and written.is_file()
    )

    combo = section.units[0].file_combo
    qtbot.waitUntil(lambda: combo.findData(str(written)) >= 0, timeout=TIMEOUT_MS)
    section.grab().save("/tmp/cnfollow-shot-download.png")
    # a unit added later offers it too, and the folder is remembered for the next start
    qtbot.mouseClick(section.add_button, Qt.MouseButton.LeftButton)
    assert section.units[1].file_combo.findData(str(written)) >= 0
    assert Path(written).parent in window.addons.controlnet_folders()
    dialog.close()


def test_a_large_set_downloaded_with_a_controlnet_lists_it_at_once(
    qtbot, make_window, large_model, fake_hub, tmp_path
):
    window, section = _window_with_one_unit(qtbot, make_window, large_model)

    elsewhere = tmp_path / "big-disk"
    dialog = _large_download_dialog(window, elsewhere)
    _click_box(qtbot, dialog.controlnet_boxes["canny"])
    dialog.token_edit.setText(GOOD_TOKEN)
    with qtbot.waitSignal(dialog.model_downloaded, timeout=TIMEOUT_MS) as arrived:
        qtbot.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)
    dest = elsewhere / "stable-diffusion-3.5-large"
    assert arrived.args == [dest]
    canny = dest / CONTROLNET_FOLDER / "sd3.5_large_controlnet_canny.safetensors"
    combo = section.units[0].file_combo
    qtbot.waitUntil(lambda: combo.findData(str(canny)) >= 0, timeout=TIMEOUT_MS)
    picker = window.picker
    qtbot.waitUntil(lambda: picker.selected is not None and picker.selected.path == dest, timeout=TIMEOUT_MS)
    dialog.close()
    qtbot.waitUntil(lambda: not window.token_counter.is_loading(), timeout=60000)

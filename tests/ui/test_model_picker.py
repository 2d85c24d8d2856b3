"""The model picker's last entry, "Download models…": it asks for the download dialog and never changes the model."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QComboBox

from app.ui.form.model_library import ModelSetInfo
from app.ui.form.model_picker import DOWNLOAD_DATA, DOWNLOAD_LABEL, ModelPickerController
from tests.downloads.conftest import hf_home  # noqa: F401  (a private Hugging Face home for the dialog)
from tests.ui.conftest import wait_until_ready


@pytest.fixture
def picker(qtbot, tmp_path):
    combo = QComboBox()
    qtbot.addWidget(combo)
    controller = ModelPickerController(combo)
    for name in ("medium", "turbo"):
        (tmp_path / name).mkdir()
    medium = ModelSetInfo(tmp_path / "medium", "medium", "medium", 1024, has_t5=True)
    turbo = ModelSetInfo(tmp_path / "turbo", "large-turbo", "turbo", 1024, has_t5=True)
    controller.set_sets([medium, turbo], medium.path)
    combo.show()
    return controller


def _labels(combo: QComboBox) -> list[str]:
    return [combo.itemText(i) for i in range(combo.count())]


def _download_index(combo: QComboBox) -> int:
    return combo.findData(DOWNLOAD_DATA)


def test_download_models_is_the_last_entry_below_a_separator(picker):
    combo = picker.combo
    labels = _labels(combo)
    assert labels[-1] == DOWNLOAD_LABEL and combo.itemData(combo.count() - 1) == DOWNLOAD_DATA
    assert labels[-2] == ""  # the separator
    assert labels[:3] == [
        "SD3.5 Medium — medium",
        "SD3.5 Large Turbo — turbo",
        "SD3.5 Large — not found (Locate…)",
    ]
    assert combo.itemData(combo.count() - 1, Qt.ItemDataRole.ToolTipRole)


def test_choosing_download_models_asks_for_the_dialog_and_keeps_the_selection(qtbot, picker):
    combo = picker.combo
    combo.setCurrentIndex(1)
    turbo = picker.selected
    assert turbo is not None and turbo.variant == "large-turbo"
    changes: list[object] = []
    picker.selection_changed.connect(lambda info, _hint: changes.append(info))

    with qtbot.waitSignal(picker.download_requested) as requested:
        combo.setCurrentIndex(_download_index(combo))

    assert requested.args == [""]  # a found model is shown: no variant preferred
    assert combo.currentIndex() == 1 and combo.currentText() == "SD3.5 Large Turbo — turbo"
    assert picker.selected is turbo and changes == []
    combo.setCurrentIndex(0)  # the picker still works as before afterwards
    assert picker.selected is not None and picker.selected.variant == "medium"


def test_download_models_from_a_missing_variant_offers_that_variant(qtbot, picker):
    combo = picker.combo
    combo.setCurrentIndex(combo.findData("missing:large"))
    with qtbot.waitSignal(picker.download_requested) as requested:
        combo.setCurrentIndex(_download_index(combo))
    assert requested.args == ["large"]
    assert combo.currentData() == "missing:large" and picker.selected is None


def test_the_pending_picker_offers_download_too(qtbot, tmp_path):
    combo = QComboBox()
    qtbot.addWidget(combo)
    controller = ModelPickerController(combo)
    info = controller.show_pending(tmp_path / "sd3.5-medium")
    assert _labels(combo)[-1] == DOWNLOAD_LABEL and combo.currentIndex() == 0
    with qtbot.waitSignal(controller.download_requested):
        combo.setCurrentIndex(_download_index(combo))
    assert combo.currentIndex() == 0 and controller.selected is info


def test_the_wheel_and_arrow_keys_stop_at_the_last_model(qtbot, picker):
    combo = picker.combo
    last_model = _download_index(combo) - 2
    requested: list[str] = []
    picker.download_requested.connect(requested.append)

    qtbot.keyClick(combo, Qt.Key.Key_End)
    assert combo.currentIndex() == last_model
    qtbot.keyClick(combo, Qt.Key.Key_Down)
    qtbot.keyClick(combo, Qt.Key.Key_PageDown)
    _wheel_down(combo)
    assert combo.currentIndex() == last_model and requested == []

    qtbot.keyClick(combo, Qt.Key.Key_Up)
    assert combo.currentIndex() == last_model - 1  # other keys still move through the models
    _wheel_down(combo)
    assert combo.currentIndex() == last_model


def _wheel_down(combo: QComboBox) -> None:
    centre = QPointF(combo.rect().center())
    event = QWheelEvent(
        centre,
        QPointF(combo.mapToGlobal(QPoint(int(centre.x()), int(centre.y())))),
        QPoint(0, 0),
        QPoint(0, -120),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(combo, event)


def test_the_pickers_download_entry_opens_the_file_menus_dialog(qtbot, make_window, hf_home):  # noqa: F811
    window = make_window()
    wait_until_ready(qtbot, window)
    combo = window.panel.model_combo
    chosen = window.picker.selected
    assert chosen is not None and window.models.download_dialog is None

    combo.setCurrentIndex(_download_index(combo))

    dialog = window.models.download_dialog
    assert dialog is not None and dialog.isVisible()
    assert window.picker.selected is chosen and combo.currentData() == str(chosen.path)
    dialog.hide()
    window.actions.download_models.trigger()  # File ▸ Download Models… shows the very same dialog
    assert window.models.download_dialog is dialog and dialog.isVisible()
    dialog.hide()
    combo.setCurrentIndex(combo.findData("missing:large"))
    combo.setCurrentIndex(_download_index(combo))
    assert dialog.isVisible() and dialog.variant_combo.currentData() == "large"
    dialog.shutdown()

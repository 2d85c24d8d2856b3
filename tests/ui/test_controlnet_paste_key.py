"""Ctrl+V in the ControlNet section pastes the clipboard's picture into the unit being worked in — and never takes
a text or number field's own paste."""

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QImage
from PySide6.QtWidgets import QApplication

from app.ui.form.control_images import is_scratch
from app.ui.form.controlnet_section import ControlNetSection
from app.ui.form.form_state import GenerationFormState

CTRL = Qt.KeyboardModifier.ControlModifier


def _picture(colour: tuple[int, int, int]) -> QImage:
    image = QImage(20, 12, QImage.Format.Format_RGB32)
    image.fill(QColor(*colour))
    return image


def _focus(qtbot, widget) -> None:
    widget.setFocus(Qt.FocusReason.OtherFocusReason)
    qtbot.waitUntil(lambda: QApplication.focusWidget() is widget, timeout=2000)


def test_ctrl_v_pastes_into_the_unit_with_the_focus_and_leaves_field_pasting_alone(qtbot):
    section = ControlNetSection(GenerationFormState(variant="large"))
    qtbot.addWidget(section)
    section.set_expanded(True)
    section.show()
    section.activateWindow()
    qtbot.waitActive(section)  # shortcuts go to the active window
    (first,) = section.units

    QGuiApplication.clipboard().setImage(_picture((200, 30, 30)))
    _focus(qtbot, first.enabled_check)  # a check box: not a text field
    qtbot.keyClick(first.enabled_check, Qt.Key.Key_V, CTRL)
    red = first.image
    assert red is not None and is_scratch(red)
    assert QImage(str(red)).pixelColor(0, 0) == QColor(200, 30, 30)

    # the second unit's file list has the focus: the picture goes there, the first keeps its own
    qtbot.mouseClick(section.add_button, Qt.MouseButton.LeftButton)
    second = section.units[1]
    QGuiApplication.clipboard().setImage(_picture((30, 30, 200)))
    _focus(qtbot, second.file_combo)
    qtbot.keyClick(second.file_combo, Qt.Key.Key_V, CTRL)
    assert second.image is not None and second.image != red and first.image == red

    # in a number field Ctrl+V is the field's paste: the text lands there, the control image stays
    QGuiApplication.clipboard().setText("0.25")
    spin = second.strength_spin
    _focus(qtbot, spin)
    spin.selectAll()
    qtbot.keyClick(spin, Qt.Key.Key_V, CTRL)
    qtbot.keyClick(spin, Qt.Key.Key_Return)
    assert spin.value() == 0.25
    assert second.image is not None and second.image != red and first.image == red

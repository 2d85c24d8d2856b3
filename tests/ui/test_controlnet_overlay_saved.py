"""The control map overlay's switch (View ▸ Control Map on Canvas) and its opacity are kept between sessions:
set with real input, the window closed, and a new window opens with both as they were."""

import pytest
from PySide6.QtCore import QPoint, Qt

from app.ui.form.controlnet_section import DEFAULT_OVERLAY_OPACITY
from tests.ui.conftest import wait_until_ready
from tests.ui.test_controlnet_overlay import _view_action


def test_overlay_switch_and_opacity_are_kept_when_the_window_reopens(qtbot, make_window, large_model):
    window = make_window(model_path=large_model)
    wait_until_ready(qtbot, window)
    section = window.panel.controlnet
    assert not section.overlay_check.isChecked() and section.overlay_slider.value() == DEFAULT_OVERLAY_OPACITY
    qtbot.mouseClick(section.toggle, Qt.MouseButton.LeftButton)
    window.settings_scroll.ensureWidgetVisible(section.overlay_slider)
    qtbot.wait(50)
    check = section.overlay_check
    qtbot.mouseClick(check, Qt.MouseButton.LeftButton, pos=QPoint(8, check.height() // 2))  # on the indicator
    assert check.isChecked() and _view_action(window, "Control Map on Canvas").isChecked()
    section.overlay_slider.setFocus()
    for _ in range(3):
        qtbot.keyClick(section.overlay_slider, Qt.Key.Key_PageDown)  # 10 % a page
    assert section.overlay_slider.value() == DEFAULT_OVERLAY_OPACITY - 30
    window.close()

    again = make_window(model_path=large_model)
    wait_until_ready(qtbot, again)
    section = again.panel.controlnet
    assert (
        section.overlay_check.isChecked() and section.overlay_slider.value() == DEFAULT_OVERLAY_OPACITY - 30
    )
    assert _view_action(again, "Control Map on Canvas").isChecked()  # the menu's switch agrees
    assert section.overlay()[1] == pytest.approx((DEFAULT_OVERLAY_OPACITY - 30) / 100)

    # switched off from the View menu: off next time too
    _view_action(again, "Control Map on Canvas").trigger()
    assert not section.overlay_check.isChecked()
    again.close()
    third = make_window(model_path=large_model)
    wait_until_ready(qtbot, third)
    assert not third.panel.controlnet.overlay_check.isChecked()
    assert third.panel.controlnet.overlay_slider.value() == DEFAULT_OVERLAY_OPACITY - 30

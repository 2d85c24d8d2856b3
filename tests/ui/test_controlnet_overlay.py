"""The active ControlNet's preprocessed map drawn over the canvas: switched on from the View menu, at the opacity
the section's slider sets, lying on the generation's frame, and gone again when switched off (grabbed pixels)."""

import pytest
from PySide6.QtCore import Qt

from tests.factory.controlnet_model import write_controlnet
from tests.ui.conftest import wait_until_ready, write_square_picture


def _canvas_pixels(window):
    """(centre, corner) colours of the picture on the canvas: the map's white square and its black border."""
    canvas = window.canvas
    shot = canvas.grab().toImage()
    zoom, size = canvas.zoom(), canvas.logical_size()
    w, h = size.width() * zoom, size.height() * zoom
    left, top = (canvas.width() - w) / 2, (canvas.height() - h) / 2
    centre = shot.pixelColor(round(left + w / 2), round(top + h / 2))
    corner = shot.pixelColor(round(left + w * 0.08), round(top + h * 0.08))
    return centre.getRgb()[:3], corner.getRgb()[:3]


def _view_action(window, text):
    (view,) = [a.menu() for a in window.menuBar().actions() if a.text().replace("&", "") == "View"]
    (action,) = [a for a in view.actions() if a.text() == text]
    return action


def test_control_map_overlay_appears_at_its_opacity_and_goes_away(qtbot, make_window, large_model, tmp_path):
    cn = write_controlnet(tmp_path / "sd3.5_large_controlnet_canny.safetensors")
    square = write_square_picture(tmp_path / "square.png")
    window = make_window(model_path=large_model)
    wait_until_ready(qtbot, window)
    window.state.update(steps=2, width=64, height=64, seed=0, random_seed=False)
    qtbot.keyClicks(window.panel.prompt.edit, "a house")
    with qtbot.waitSignal(window.controller.job_ended, timeout=15000):
        qtbot.mouseClick(window.generate_button, Qt.MouseButton.LeftButton)
    qtbot.wait(50)
    plain = _canvas_pixels(window)
    assert plain == ((0, 128, 0), (0, 128, 0))  # the fake engine's image: seed 0 in red, 128 in green

    section = window.panel.controlnet
    qtbot.mouseClick(section.toggle, Qt.MouseButton.LeftButton)
    (unit,) = section.units
    unit.choose_file(cn)
    unit.set_image(square)  # preprocessing "none": the map is the picture itself, at 64×64
    qtbot.waitUntil(lambda: unit.map_image is not None, timeout=15000)
    assert _canvas_pixels(window) == plain  # nothing drawn until it is switched on

    action = _view_action(window, "Control Map on Canvas")
    action.trigger()  # as the View menu's entry does
    assert section.overlay_check.isChecked()
    qtbot.wait(20)
    (centre, corner) = _canvas_pixels(window)
    assert centre[0] == pytest.approx(128, abs=3) and centre[1] == pytest.approx(191, abs=3)  # white at 50 %
    assert corner[0] == 0 and corner[1] == pytest.approx(64, abs=3)  # black at 50 %
    window.grab().save("/tmp/cnui-overlay.png")

    section.overlay_slider.setFocus()
    qtbot.keyClick(section.overlay_slider, Qt.Key.Key_End)  # fully opaque
    qtbot.wait(20)
    assert _canvas_pixels(window) == ((255, 255, 255), (0, 0, 0))

    qtbot.mouseClick(section.overlay_check, Qt.MouseButton.LeftButton)  # off again, from the section
    assert not action.isChecked()
    qtbot.wait(20)
    assert _canvas_pixels(window) == plain
    qtbot.waitUntil(lambda: not window.token_counter.is_loading(), timeout=60000)

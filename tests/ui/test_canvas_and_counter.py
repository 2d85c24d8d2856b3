"""The canvas (zoom, fit, 100 %, pan, preview at the final size) and the live token counter."""

from PySide6.QtCore import QPoint, QPointF, QSize, Qt
from PySide6.QtGui import QImage

from app.ui.canvas.canvas import CanvasView, format_seconds
from app.ui.form.token_counter import describe_count
from tests.ui.conftest import wait_until_ready


def image(w, h, color=Qt.GlobalColor.red):
    img = QImage(w, h, QImage.Format.Format_RGB888)
    img.fill(color)
    return img


def test_canvas_fits_zooms_around_the_cursor_and_pans(qtbot):
    canvas = CanvasView()
    qtbot.addWidget(canvas)
    canvas.resize(400, 300)
    canvas.show()
    canvas.set_image(image(800, 600))
    assert canvas.is_fit() and abs(canvas.zoom() - 0.5) < 1e-6
    canvas.actual_size()
    assert canvas.zoom() == 1.0 and not canvas.is_fit()
    before = canvas._image_point_at(QPointF(100, 100))
    canvas.set_zoom(2.0, QPointF(100, 100))
    after = canvas._image_point_at(QPointF(100, 100))
    assert abs(before.x() - after.x()) < 1e-6 and abs(before.y() - after.y()) < 1e-6  # the point stays put
    rect = canvas._target_rect()
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=QPoint(200, 150))
    qtbot.mouseMove(canvas, QPoint(240, 170))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=QPoint(240, 170))
    moved = canvas._target_rect()
    assert (moved.left() - rect.left(), moved.top() - rect.top()) == (40, 20)
    canvas.fit()
    assert canvas.is_fit() and abs(canvas.zoom() - 0.5) < 1e-6


def test_a_small_preview_is_drawn_at_the_final_images_size(qtbot):
    canvas = CanvasView()
    qtbot.addWidget(canvas)
    canvas.resize(400, 300)
    with qtbot.waitExposed(canvas):
        canvas.show()
    canvas.set_image(image(1024, 1024))
    canvas.actual_size()
    full = canvas._target_rect()
    canvas.set_image(image(128, 128), preview=True, logical_size=QSize(1024, 1024))
    assert canvas._target_rect() == full and canvas.is_preview()
    painted = canvas.frames_painted
    canvas.repaint()
    assert canvas.frames_painted == painted + 1


def test_canvas_shortcuts_fit_and_100_percent(qtbot, make_window):
    window = make_window()
    wait_until_ready(qtbot, window)
    window.canvas.set_image(image(2000, 1500))
    window.actions.actual_size.trigger()
    assert window.canvas.zoom() == 1.0
    window.actions.fit.trigger()
    assert window.canvas.is_fit()
    assert "Fit" in window.progress.zoom_label.text()


def test_counter_text_and_spill_warnings():
    short = describe_count(12, 1, 14, use_t5=True)
    assert short.text == "CLIP 12/75  ·  T5 14" and not short.spills
    long = describe_count(90, 2, 300, use_t5=True)
    assert long.spills and "2 windows" in long.text and "300/256" in long.text
    assert "weaker" in long.tooltip and "256 tokens" in long.tooltip
    assert describe_count(5, 1, 0, use_t5=False).text.endswith("T5 off")
    assert format_seconds(75) == "1:15" and format_seconds(9.4) == "9 s"


def test_the_prompt_counter_counts_live_and_warns_when_text_spills(qtbot, make_window):
    window = make_window()
    wait_until_ready(qtbot, window)
    window.panel.prompt.edit.setPlainText("a red fox")
    qtbot.waitUntil(lambda: window.panel.prompt.counter.text().startswith("CLIP "), timeout=20000)
    assert window.panel.prompt.counter.property("spill") is False
    window.panel.prompt.edit.setPlainText(" ".join(["cat"] * 100))
    qtbot.waitUntil(lambda: "2 windows" in window.panel.prompt.counter.text(), timeout=20000)
    assert window.panel.prompt.counter.property("spill") is True
    window.panel.advanced.t5_check.setChecked(False)
    qtbot.waitUntil(lambda: window.panel.prompt.counter.text().endswith("T5 off"), timeout=20000)

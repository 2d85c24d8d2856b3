"""Dropping an image on the window recalls its settings, wherever it lands (a PNG dropped on the prompt used to
paste its path); drags that are not one image file keep their usual meaning. An image with settings asks first
(reuse them, or refine the picture): these tests choose "Reuse its settings" with a click."""

from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from tests.gallery.helpers import write_a1111_png
from tests.ui.conftest import wait_until_ready

TEXT = (
    "a red fox in fresh snow, watercolour\nNegative prompt: blurry\n"
    "Steps: 23, Sampler: Euler, CFG scale: 3.5, Seed: 4242, Size: 256x256, Model: sd3.5_medium"
)


def drop_on(widget, mime: QMimeData) -> bool:
    """Deliver a drag-enter and a drop at the widget's centre, as a drag from the file manager does;
    returns whether the drag was accepted."""
    centre = widget.rect().center()
    actions = Qt.DropAction.CopyAction
    enter = QDragEnterEvent(centre, actions, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    if not enter.isAccepted():
        return False
    drop = QDropEvent(
        QPoint(centre), actions, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(widget, drop)
    return drop.isAccepted()


def file_mime(path) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    return mime


def choose(qtbot, window, text="Reuse its settings"):
    """Click an entry of the menu a drop of an image with settings opens."""
    menu = window.drop_choice.menu
    qtbot.waitUntil(menu.isVisible, timeout=3000)
    (action,) = [a for a in menu.actions() if a.text() == text]
    qtbot.mouseClick(menu, Qt.MouseButton.LeftButton, pos=menu.actionGeometry(action).center())


def test_dropping_a_png_on_the_prompt_recalls_its_settings(qtbot, make_window, tmp_path):
    window = make_window()
    wait_until_ready(qtbot, window)
    qtbot.waitUntil(lambda: window.gallery.panel is not None, timeout=5000)
    png = write_a1111_png(tmp_path / "fox.png", TEXT)

    assert drop_on(window.panel.prompt.edit.viewport(), file_mime(png))
    choose(qtbot, window)

    qtbot.waitUntil(
        lambda: window.state.values.prompt == "a red fox in fresh snow, watercolour", timeout=5000
    )
    values = window.state.values
    assert (values.negative, values.steps, values.seed) == ("blurry", 23, 4242)
    assert window.panel.prompt.edit.toPlainText() == "a red fox in fresh snow, watercolour"  # no path pasted
    assert str(png) not in window.panel.negative.edit.toPlainText()


def test_dropping_a_png_on_the_canvas_recalls_its_settings(qtbot, make_window, tmp_path):
    window = make_window()
    wait_until_ready(qtbot, window)
    qtbot.waitUntil(lambda: window.gallery.panel is not None, timeout=5000)
    png = write_a1111_png(tmp_path / "fox.png", TEXT)

    assert drop_on(window.canvas, file_mime(png))
    choose(qtbot, window)
    qtbot.waitUntil(lambda: window.state.values.seed == 4242, timeout=5000)


def test_dropped_text_still_goes_into_the_prompt(qtbot, make_window):
    window = make_window()
    wait_until_ready(qtbot, window)
    mime = QMimeData()
    mime.setText("misty mountains")
    drop_on(window.panel.prompt.edit.viewport(), mime)
    assert "misty mountains" in window.panel.prompt.edit.toPlainText()

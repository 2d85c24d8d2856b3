"""Where a control image comes from besides Open…: the clipboard (Paste), the gallery's and the canvas's menus —
and a pasted picture is kept in the output folder at Generate, so the image's metadata points to a file that
stays and recall finds it again."""

from PIL import Image
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QColor, QContextMenuEvent, QGuiApplication, QImage
from PySide6.QtWidgets import QApplication

from app.metadata.recall import read_metadata
from app.ui.form.control_images import KEPT_FOLDER_NAME, is_scratch
from app.ui.gallery.menu import build_context_menu
from tests.factory.controlnet_model import write_controlnet
from tests.ui.conftest import controlnet_window
from tests.ui.test_image_drop import choose, drop_on, file_mime
from tests.ui.test_refine_window import click_menu_entry


def _picture(corner=(200, 40, 90)) -> QImage:
    """White left half, black right half, one coloured corner pixel: a picture with a recognisable content."""
    image = QImage(32, 24, QImage.Format.Format_RGB32)
    image.fill(QColor("black"))
    for x in range(16):
        for y in range(24):
            image.setPixelColor(x, y, QColor("white"))
    image.setPixelColor(0, 0, QColor(*corner))
    return image


def _same_pixels(path, image: QImage) -> bool:
    return QImage(str(path)).convertToFormat(QImage.Format.Format_RGB32) == image


def test_pasted_control_image_is_kept_next_to_the_output_and_recalled(
    qtbot, make_window, large_model, tmp_path, fake_sessions
):
    cn = write_controlnet(tmp_path / "sd3.5_large_controlnet_blur.safetensors", control_type="blur")
    window, section = controlnet_window(qtbot, make_window, large_model)
    (unit,) = section.units
    unit.choose_file(cn)

    QGuiApplication.clipboard().setText("not a picture")
    qtbot.mouseClick(unit.paste_button, Qt.MouseButton.LeftButton)
    assert unit.image is None and "holds no picture" in window.statusBar().currentMessage()

    pasted = _picture()
    QGuiApplication.clipboard().setImage(pasted)
    qtbot.mouseClick(unit.paste_button, Qt.MouseButton.LeftButton)
    scratch = unit.image
    assert scratch is not None and is_scratch(scratch) and _same_pixels(scratch, pasted)
    assert window.state.problems() == {}

    qtbot.keyClicks(window.panel.prompt.edit, "a kept picture")
    with qtbot.waitSignal(window.controller.job_ended, timeout=15000):
        qtbot.mouseClick(window.generate_button, Qt.MouseButton.LeftButton)
    (spec,) = fake_sessions.instances[0].runs[-1][1].controlnets
    (kept,) = (tmp_path / "out" / KEPT_FOLDER_NAME).glob("*.png")
    assert spec.image == kept and _same_pixels(kept, pasted)  # the engine reads the kept copy
    assert unit.image == kept and window.state.controlnets[0].image == kept  # the form uses it from now on

    (output,) = (tmp_path / "out").glob("*.png")
    (recorded,) = read_metadata(output).params.request.controlnets
    assert recorded.image == kept and recorded.image_hash is not None

    # the scratch file goes (a reboot); recall of the output restores the ControlNet with the kept image
    scratch.unlink()
    window.state.set_controlnets(())
    assert drop_on(window.canvas, file_mime(output))
    choose(qtbot, window, "Reuse its settings")
    qtbot.waitUntil(lambda: len(window.state.controlnets) == 1, timeout=5000)
    assert (section.units[0].file(), section.units[0].image) == (cn, kept)
    assert window.state.problems() == {}
    qtbot.waitUntil(lambda: not window.token_counter.is_loading(), timeout=60000)


def test_control_image_from_the_gallery_menu_the_canvas_menu_and_a_copied_file(
    qtbot, make_window, large_model, tmp_path
):
    window, section = controlnet_window(qtbot, make_window, large_model)
    photo = tmp_path / "photo.png"
    Image.new("RGB", (40, 40), (10, 120, 200)).save(photo)

    class Record:
        path, id = photo, 1

    menu = build_context_menu(window, window.gallery.panel, [Record()])
    menu.popup(window.mapToGlobal(QPoint(100, 100)))
    click_menu_entry(qtbot, menu, "Use as Control Image")
    (unit,) = section.units
    assert unit.image == photo and unit.enabled_check.isChecked()

    # a second unit is the active one: the canvas picture's menu fills that one
    qtbot.mouseClick(section.add_button, Qt.MouseButton.LeftButton)
    second = section.units[1]
    shown = _picture((1, 2, 3))
    window.shown.show_picture(shown, caption="not saved")
    centre = window.canvas.rect().center()
    event = QContextMenuEvent(QContextMenuEvent.Reason.Mouse, centre, window.canvas.mapToGlobal(centre))
    QApplication.sendEvent(window.canvas, event)
    click_menu_entry(qtbot, window.addons.canvas_menu, "Use as Control Image")
    assert unit.image == photo and second.image is not None and is_scratch(second.image)
    assert _same_pixels(second.image, shown)

    # a gallery picture opened on the canvas is used as its own file, not a copy
    drawing = tmp_path / "drawing.png"
    Image.new("RGB", (40, 40), (250, 250, 0)).save(drawing)

    class Drawing:
        path, id = drawing, 2

    window.gallery.panel.open_in_canvas(Drawing())
    QApplication.sendEvent(window.canvas, QContextMenuEvent(QContextMenuEvent.Reason.Mouse, centre,
                                                            window.canvas.mapToGlobal(centre)))  # fmt: skip
    click_menu_entry(qtbot, window.addons.canvas_menu, "Use as Control Image")
    assert second.image == drawing

    # a file copied in the file manager (a URL on the clipboard) is used as it is
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(photo))])
    QGuiApplication.clipboard().setMimeData(mime)
    qtbot.mouseClick(second.paste_button, Qt.MouseButton.LeftButton)
    assert second.image == photo

    notes = tmp_path / "notes.txt"  # a copied file that is no picture is not taken
    notes.write_text("x")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(notes))])
    QGuiApplication.clipboard().setMimeData(mime)
    qtbot.mouseClick(second.paste_button, Qt.MouseButton.LeftButton)
    assert second.image == photo and "holds no picture" in window.statusBar().currentMessage()
    qtbot.waitUntil(lambda: not window.token_counter.is_loading(), timeout=60000)

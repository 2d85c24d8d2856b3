"""In the dark theme a check box must be seen whether it is on or off (the ControlNet unit's switch, "Map on
canvas", T5…): Fusion drew an unchecked box's frame darker than the window, an unseen black square. Measured on
grabbed pixels: the indicator's frame against the window (WCAG non-text contrast ≥ 3), and the accent when on."""

from pathlib import Path

from PySide6.QtGui import QColor, QImage, QPalette
from PySide6.QtWidgets import QCheckBox, QStyle, QStyleOptionButton, QVBoxLayout, QWidget

from app.ui.window.theme import load_stylesheet
from tests.ui.test_dark_theme import contrast, dark  # noqa: F401  (fixture)


def indicator_pixels(box: QCheckBox) -> list[QColor]:
    option = QStyleOptionButton()
    box.initStyleOption(option)
    rect = box.style().subElementRect(QStyle.SubElement.SE_CheckBoxIndicator, option, box)
    image = box.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    return [image.pixelColor(x, y) for y in range(rect.top(), rect.bottom() + 1)
            for x in range(rect.left(), rect.right() + 1)]  # fmt: skip


def test_check_boxes_are_seen_on_and_off_in_the_dark_theme(qtbot, dark):  # noqa: F811
    holder = QWidget()
    column = QVBoxLayout(holder)
    off, on = QCheckBox("off", holder), QCheckBox("on", holder)
    on.setChecked(True)
    column.addWidget(off)
    column.addWidget(on)
    qtbot.addWidget(holder)
    holder.show()
    qtbot.waitExposed(holder)
    window = holder.palette().color(QPalette.ColorRole.Window)
    assert max(contrast(c, window) for c in indicator_pixels(off)) >= 3.0  # the frame of an unchecked box
    accent = [c for c in indicator_pixels(on) if c.blue() > c.red() + 60]
    assert len(accent) >= 20  # a checked box is filled with the accent
    holder.grab().save("/tmp/polish-dark-checkboxes.png")


def test_the_stylesheet_names_icon_files_that_exist():
    text = load_stylesheet()
    assert "@ICONS@" not in text and "check.svg" in text
    for line in text.splitlines():
        if "url(" in line:
            path = line.split("url(", 1)[1].split(")", 1)[0]
            assert Path(path).is_file(), path

"""The gallery's group headers ("prompt · n images · date") are painted on the view's own background, so they
must take the theme's text colour: readable (WCAG contrast ≥ 4.5) in the light theme and in the dark one."""

import pytest
from PySide6.QtGui import QImage, QPalette

from tests.ui.test_dark_theme import contrast, dark  # noqa: F401  (fixture)


def header_contrast(qtbot, panel) -> float:
    model, view = panel.model, panel.view
    qtbot.wait(50)
    row = next(r for r in range(model.rowCount()) if model.image_id(r) is None)
    rect = view.visualRect(model.index(row))
    image = view.viewport().grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    background = view.palette().color(QPalette.ColorRole.Base)
    colors = [image.pixelColor(x, y) for y in range(rect.top(), rect.bottom() - 3)
              for x in range(rect.left(), min(rect.right(), rect.left() + 200))]  # fmt: skip
    return max(contrast(c, background) for c in colors)  # the text's strokes against the background


def test_group_headers_are_readable_in_the_light_theme(qtbot, panel):
    assert header_contrast(qtbot, panel) >= 4.5
    panel.grab().save("/tmp/polish-gallery-light.png")


@pytest.mark.usefixtures("dark")
def test_group_headers_are_readable_in_the_dark_theme(qtbot, panel):
    assert header_contrast(qtbot, panel) >= 4.5
    panel.grab().save("/tmp/polish-gallery-dark.png")

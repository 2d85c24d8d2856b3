"""In the dark theme, states an artist must read at a glance stand out: the active compare mode, the chosen
export option, hint texts and each Compare Seeds tile's status. Measured on grabbed pixels (WCAG contrast)."""

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QImage
from PySide6.QtWidgets import QApplication, QWidget

from app.ui.window.theme import apply_dark_theme


@pytest.fixture
def dark(qapp):
    before_style, before_sheet, before_palette = qapp.style().name(), qapp.styleSheet(), qapp.palette()
    apply_dark_theme(qapp)
    yield
    qapp.setStyleSheet(before_sheet)
    qapp.setPalette(before_palette)
    qapp.setStyle(before_style)


def luminance(color: QColor) -> float:
    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(color.redF()) + 0.7152 * channel(color.greenF()) + 0.0722 * channel(color.blueF())


def contrast(a: QColor, b: QColor) -> float:
    hi, lo = sorted((luminance(a), luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def pixels(widget: QWidget, width: int | None = None) -> list[QColor]:
    image = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    return [image.pixelColor(x, y) for y in range(image.height()) for x in range(width or image.width())]


def mean(colors: list[QColor]) -> QColor:
    n = len(colors)
    return QColor(*(round(sum(getattr(c, ch)() for c in colors) / n) for ch in ("red", "green", "blue")))


def text_contrast(widget: QWidget, background: QColor) -> float:
    """The contrast of the label's strongest text pixel against the background it is drawn on."""
    return max(contrast(c, background) for c in pixels(widget))


def window_colour() -> QColor:
    return QApplication.palette().window().color()


def test_the_active_compare_mode_stands_out(qtbot, dark):
    from app.ui.gallery.compare_view import CompareView

    view = CompareView()
    qtbot.addWidget(view)
    view.show()
    view.wipe_button.setChecked(True)
    qtbot.wait(20)
    active, inactive = mean(pixels(view.wipe_button)), mean(pixels(view.grid_button))
    assert contrast(active, inactive) > 1.3, (active.name(), inactive.name())
    assert text_contrast(view.hint, window_colour()) >= 4.5


def test_the_chosen_export_option_is_visible(qtbot, dark):
    from app.ui.gallery.export import ExportDialog, default_choice

    dialog = ExportDialog(3, default_choice())
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.wait(20)
    checked, unchecked = dialog.folder_button, dialog.zip_button
    assert checked.isChecked() and not unchecked.isChecked()
    side = checked.height()  # the indicator sits in the button's left square
    marked = [
        c for c in pixels(checked, side) if contrast(c, window_colour()) >= 3 and c.blue() > c.red() + 40
    ]
    assert len(marked) >= 12, "the chosen option's indicator shows no clear accent-coloured mark"
    assert not [c for c in pixels(unchecked, side) if c.blue() > c.red() + 40]


def test_x_y_hints_are_readable(qtbot, dark, make_window):
    from app.ui.tools.xy_dialog import XYPlotDialog

    window = make_window()
    dialog = XYPlotDialog(window, window.tools, window.jobs.request())
    qtbot.addWidget(dialog)
    dialog.set_axes(("seed", "5, 6"), ("cfg", "3, 5"))
    dialog.show()
    qtbot.wait(20)
    hints = [row.hint for row in dialog.findChildren(QWidget) if hasattr(row, "hint") and row.hint.text()]
    assert hints
    for hint in hints:
        assert text_contrast(hint, window_colour()) >= 4.5, hint.text()


def test_seed_tile_status_is_coloured_by_state(qtbot, dark):
    from app.ui.tools.seed_compare import SeedTile

    colours = {}
    for state in ("waiting", "running", "done", "stopped"):
        tile = SeedTile(0, 7, 1.0)
        qtbot.addWidget(tile)
        tile.resize(300, 200)
        tile.show()
        tile.state = state
        tile.status.setText(state)
        qtbot.wait(20)
        background = mean(pixels(tile.status, 2))
        colours[state] = max(pixels(tile.status), key=lambda c: contrast(c, background))
        assert contrast(colours[state], background) >= 4.5, state
    assert len({c.name() for c in colours.values()}) == 4, {k: c.name() for k, c in colours.items()}


def test_the_active_refine_mode_and_mask_tool_stand_out(qtbot, dark, make_window):
    window = make_window()
    bar = window.refine_bar
    window.show()
    qtbot.mouseClick(bar.mode_buttons["inpaint"], Qt.MouseButton.LeftButton)
    qtbot.wait(20)
    active, inactive = mean(pixels(bar.mode_buttons["inpaint"])), mean(pixels(bar.mode_buttons["img2img"]))
    assert contrast(active, inactive) > 1.3, (active.name(), inactive.name())
    brush, eraser = mean(pixels(bar.brush_button)), mean(pixels(bar.eraser_button))
    assert bar.brush_button.isChecked() and contrast(brush, eraser) > 1.3

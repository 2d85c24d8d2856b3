"""The A/B wipe and difference views zoom about the cursor, pan by dragging, fit on a double-click, and stay in
step with the grid tiles and the compare view's Fit / 100% controls."""

import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication

from app.ui.gallery.compare_tile import WHEEL_STEP
from tests.gallery.test_gallery_panel import image_rows

LEFT, NO_BUTTON = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton


def wheel(widget, x, y, notches=1):
    pos = QPointF(x, y)
    event = QWheelEvent(pos, widget.mapToGlobal(pos), QPoint(), QPoint(0, 120 * notches), NO_BUTTON,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)  # fmt: skip
    QApplication.sendEvent(widget, event)


def mouse(widget, kind, x, y, button=NO_BUTTON, buttons=NO_BUTTON):
    pos = QPointF(x, y)
    event = QMouseEvent(kind, pos, widget.mapToGlobal(pos), button, buttons, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)


def drag(widget, start, end):
    mouse(widget, QEvent.Type.MouseButtonPress, *start, LEFT, LEFT)
    mouse(widget, QEvent.Type.MouseMove, *end, NO_BUTTON, LEFT)
    mouse(widget, QEvent.Type.MouseButtonRelease, *end, LEFT, NO_BUTTON)


@pytest.fixture
def compare(qtbot, panel):
    panel.open_compare([panel.model.record(r) for r in image_rows(panel)[1:3]])
    compare = panel.compare
    compare.wipe_button.click()
    qtbot.waitUntil(lambda: compare.wipe.isVisible() and compare.wipe.width() > 300)
    return compare


def test_wheel_zooms_the_wipe_about_the_cursor_and_the_tiles_follow(compare):
    wipe = compare.wipe
    assert wipe.view.fitted and wipe.zoom() == pytest.approx(wipe.view.fit_zoom())
    assert not wipe.view.pannable  # fitted: nothing to drag, the divider has the mouse to itself
    x, y = wipe.width() * 0.6, wipe.height() * 0.45
    under = wipe.view.to_image(x, y)
    fitted = wipe.zoom()
    wheel(wipe, x, y, notches=4)  # enough to be larger than the view both ways: nothing is clamped
    assert wipe.zoom() == pytest.approx(fitted * WHEEL_STEP**4)
    assert wipe.view.to_image(x, y) == pytest.approx(under)
    assert not compare._fit_mode
    for tile in compare.tiles:  # the grid is in step, ready for when the user switches back
        assert tile.zoom() == pytest.approx(wipe.zoom())
        assert tile.centre().x() == pytest.approx(wipe.centre().x(), abs=0.02)
        assert tile.centre().y() == pytest.approx(wipe.centre().y(), abs=0.02)
    assert wipe.split == pytest.approx(under[0])  # the divider stays under the cursor


def test_drag_pans_when_zoomed_and_the_divider_follows_the_mouse_otherwise(compare):
    wipe = compare.wipe
    w, h = wipe.width(), wipe.height()
    mouse(wipe, QEvent.Type.MouseMove, w * 0.25, h / 2)  # no button: the divider follows
    assert wipe.split == pytest.approx(wipe.view.to_image(w * 0.25, h / 2)[0])
    drag(wipe, (w * 0.25, h / 2), (w * 0.75, h / 2))  # fitted: a drag cannot pan, the divider follows it
    assert wipe.view.fitted and wipe.split == pytest.approx(wipe.view.to_image(w * 0.75, h / 2)[0])

    wipe.set_zoom(wipe.zoom() * 3)
    assert wipe.view.pannable
    before, split = wipe.view.image_rect(), wipe.split
    drag(wipe, (w / 2, h / 2), (w / 2 - 60, h / 2 - 40))
    after = wipe.view.image_rect()
    assert (after.x - before.x, after.y - before.y) == pytest.approx((-60, -40))
    assert wipe.split == split  # panning does not move the divider across the image
    assert compare.tiles[0].centre().x() == pytest.approx(wipe.centre().x(), abs=0.02)
    mouse(wipe, QEvent.Type.MouseMove, w * 0.3, h / 2)
    assert wipe.split == pytest.approx(wipe.view.to_image(w * 0.3, h / 2)[0])


def test_double_click_fit_and_the_compare_views_zoom_controls(qtbot, compare):
    wipe = compare.wipe
    wheel(wipe, wipe.width() / 2, wipe.height() / 2, notches=3)
    mouse(wipe, QEvent.Type.MouseButtonDblClick, 10, 10, LEFT, LEFT)
    assert wipe.view.fitted and wipe.zoom() == pytest.approx(wipe.view.fit_zoom())
    assert compare._fit_mode
    fit_tile = min(t.fit_zoom() for t in compare.tiles)
    assert all(t.zoom() == pytest.approx(fit_tile) for t in compare.tiles)

    qtbot.keyClick(compare, Qt.Key.Key_Z)  # actual pixels, on the page on show
    assert wipe.zoom() == pytest.approx(1.0)
    assert all(t.zoom() == pytest.approx(1.0) for t in compare.tiles)
    wipe.set_zoom(20.0)
    qtbot.keyClick(compare, Qt.Key.Key_F)
    assert wipe.view.fitted and wipe.zoom() == pytest.approx(wipe.view.fit_zoom())

    compare.grid_button.click()  # zooming a tile moves the wipe too
    compare.tiles[0].set_zoom(20.0)
    compare.tiles[0].horizontalScrollBar().setValue(0)
    assert wipe.zoom() == pytest.approx(20.0) and wipe.centre().x() < 0.5
    compare.diff_button.click()
    assert compare.wipe is wipe and wipe.zoom() == pytest.approx(20.0)
    compare.grid_button.click()
    mouse(compare.tiles[1].viewport(), QEvent.Type.MouseButtonDblClick, 10, 10, LEFT, LEFT)  # a tile fits too
    assert compare._fit_mode and wipe.view.fitted
    assert all(t.zoom() == pytest.approx(fit_tile) for t in compare.tiles)


def test_difference_view_zooms_the_same_way(qtbot, compare):
    compare.diff_button.click()
    wipe = compare.wipe
    qtbot.waitUntil(lambda: wipe.stats is not None, timeout=5000)
    x, y = wipe.width() * 0.3, wipe.height() * 0.3
    under = wipe.view.to_image(x, y)
    wheel(wipe, x, y, notches=4)
    assert wipe.zoom() > 2 * wipe.view.fit_zoom() and wipe.view.to_image(x, y) == pytest.approx(under)
    wipe.apply_view(wipe.zoom(), QPointF(0.5, 0.5))  # away from the edges, so the drag is not clamped
    before = wipe.view.image_rect()
    drag(wipe, (200, 200), (260, 230))
    after = wipe.view.image_rect()
    assert (after.x - before.x, after.y - before.y) == pytest.approx((60, 30))


def test_a_new_pair_gets_a_new_wipe(qtbot, panel, compare):
    old = compare.wipe
    rows = image_rows(panel)[3:5]
    panel.open_compare([panel.model.record(r) for r in rows])
    assert compare.wipe is None
    compare.wipe_button.click()
    assert compare.wipe is not old and compare.wipe.labels == tuple(t.label for t in compare.tiles)

"""Window polish: long texts elide instead of widening the window, compare in the centre, fresh messages."""

from PySide6.QtCore import QItemSelectionModel, Qt

from tests.ui.conftest import wait_until_ready

LONG_PROMPT = ("a very long prompt about a red fox in a snowy forest at dawn with mist " * 5)[:300]


def ready_window(qtbot, make_window, **values):
    window = make_window()
    wait_until_ready(qtbot, window)
    values = {"prompt": "a red fox", "steps": 2, "count": 2, "width": 64, "height": 64, "random_seed": False,
              "seed": 10, **values}  # fmt: skip
    window.state.update(**values)
    return window


def test_compare_seeds_with_a_300_character_prompt_does_not_widen_the_window(qtbot, make_window):
    window = ready_window(qtbot, make_window, prompt=LONG_PROMPT)
    window.resize(1200, 800)
    qtbot.wait(50)
    width = window.width()
    for _ in range(2):
        with qtbot.waitSignal(window.controller.job_ended, timeout=10000):
            window.actions.compare_seeds.trigger()
        qtbot.wait(50)
        assert window.width() == width
    title = window.seed_compare.title
    assert title.toolTip() == LONG_PROMPT  # the whole prompt is one hover away
    assert 0 < title.width() <= window.centralWidget().width()
    assert title.text().endswith("…") and title.text()[:20] == LONG_PROMPT[:20]
    window.grab().save("/tmp/winpolish/long-prompt.png")
    settle(qtbot, window)


def settle(qtbot, window):
    """Let the token counter finish its first count (its thread must be idle when the test ends)."""
    qtbot.waitUntil(lambda: "CLIP" in window.panel.prompt.counter.text(), timeout=30000)


def test_an_oversized_saved_geometry_comes_back_fitted_to_the_screen(qtbot, make_window):
    window = ready_window(qtbot, make_window)
    window.resize(2600, 1900)  # what a widened window used to save
    window.move(500, 300)
    settle(qtbot, window)
    window.close()
    again = make_window()
    wait_until_ready(qtbot, again)
    room = again.screen().availableGeometry()
    assert again.width() <= max(room.width(), again.minimumSizeHint().width()) < 2600
    assert again.height() <= max(room.height(), again.minimumSizeHint().height()) < 1900
    assert again.x() >= room.left() and again.y() >= room.top()
    settle(qtbot, again)


def test_gallery_compare_opens_in_the_centre_and_back_returns_to_the_canvas(qtbot, make_window):

    window = ready_window(qtbot, make_window)
    with qtbot.waitSignal(window.controller.job_ended, timeout=10000):
        window.actions.compare_seeds.trigger()
    qtbot.waitUntil(lambda: window.gallery.panel is not None, timeout=5000)
    panel = window.gallery.panel
    rows = lambda: [r for r in range(panel.model.rowCount()) if panel.model.image_id(r) is not None]  # noqa: E731
    qtbot.waitUntil(lambda: len(rows()) == 2, timeout=5000)
    window.gallery.dock.raise_()
    selection = panel.view.selectionModel()
    for row in rows():
        selection.select(panel.model.index(row), QItemSelectionModel.SelectionFlag.Select)
    qtbot.mouseClick(panel.compare_button, Qt.MouseButton.LeftButton)
    compare = panel.compare
    assert window.stack.currentWidget() is compare and compare.isVisible()
    assert compare.width() > window.gallery.dock.width()  # the large centre, not the narrow dock
    qtbot.mouseClick(compare.diff_button, Qt.MouseButton.LeftButton)
    qtbot.wait(50)
    window.grab().save("/tmp/winpolish/compare-centre.png")
    qtbot.mouseClick(compare.back, Qt.MouseButton.LeftButton)
    assert window.stack.currentWidget() is window.canvas
    assert panel.pages.currentWidget() is panel.view and panel.filter_bar.isVisible()
    settle(qtbot, window)

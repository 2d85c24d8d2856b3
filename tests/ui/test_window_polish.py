"""Window polish: long texts elide instead of widening the window, compare in the centre, fresh messages."""

from PySide6.QtCore import QItemSelectionModel, Qt

from tests.ui.conftest import click_in_message_box, wait_until_ready

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
    settle(qtbot, window)


def two_seeds_in_the_gallery(qtbot, window):
    """Compare Seeds' two images, once the gallery lists them: (the gallery panel, a function of their rows)."""
    with qtbot.waitSignal(window.controller.job_ended, timeout=10000):
        window.actions.compare_seeds.trigger()
    qtbot.waitUntil(lambda: window.gallery.panel is not None, timeout=5000)
    panel = window.gallery.panel

    def rows():
        return [r for r in range(panel.model.rowCount()) if panel.model.image_id(r) is not None]

    qtbot.waitUntil(lambda: len(rows()) == 2, timeout=5000)
    return panel, rows


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
    panel, rows = two_seeds_in_the_gallery(qtbot, window)
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
    qtbot.mouseClick(compare.back, Qt.MouseButton.LeftButton)
    assert window.stack.currentWidget() is window.canvas
    assert panel.pages.currentWidget() is panel.view and panel.filter_bar.isVisible()
    settle(qtbot, window)


def test_write_a_prompt_first_goes_away_once_a_prompt_is_typed(qtbot, make_window):
    window = ready_window(qtbot, make_window, prompt="")
    assert window.canvas.placeholder.startswith("Write a prompt")
    window.panel.prompt.edit.setFocus()
    qtbot.keyClick(window.panel.prompt.edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert window.banner.message().startswith("Write a prompt first")
    qtbot.keyClicks(window.panel.prompt.edit, "a red fox")
    qtbot.waitUntil(lambda: window.state.values.prompt == "a red fox", timeout=3000)
    assert window.banner.message() == ""
    assert not window.canvas.placeholder.startswith("Write a prompt")  # the canvas no longer asks for one
    settle(qtbot, window)


def test_the_cannot_be_used_banner_goes_away_when_a_usable_model_is_chosen(
    qtbot, make_window, tmp_path, tiny_model
):
    window = ready_window(qtbot, make_window)
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    window.models._spawn(
        window.models._locate(empty)
    )  # what Locate… does with the folder the dialog returned
    qtbot.waitUntil(lambda: "cannot be used" in window.banner.message(), timeout=5000)
    window.models._spawn(window.models._locate(tiny_model))
    qtbot.waitUntil(lambda: window.banner.message() == "", timeout=5000)
    settle(qtbot, window)


def test_images_moved_to_the_trash_leave_the_recent_strip(qtbot, make_window):
    window = ready_window(qtbot, make_window)
    panel, rows = two_seeds_in_the_gallery(qtbot, window)
    assert window.recent.results.rowCount() == 2
    window.gallery.dock.raise_()
    first = rows()[0]
    trashed = panel.model.record(first).path
    panel.view.setCurrentIndex(panel.model.index(first))
    panel.view.setFocus()
    qtbot.keyClick(panel.view, Qt.Key.Key_Delete)
    assert not trashed.exists()
    left = [window.recent.results.result(r).path for r in range(window.recent.results.rowCount())]
    assert trashed not in left and len(left) == 1
    settle(qtbot, window)


def test_the_status_bar_says_when_an_export_finished(qtbot, make_window, tmp_path):
    window = ready_window(qtbot, make_window)
    panel, rows = two_seeds_in_the_gallery(qtbot, window)
    panel.export_records([panel.model.record(r) for r in rows()], tmp_path / "exported")
    assert window.statusBar().currentMessage() == "Exporting 2 images…"
    qtbot.waitUntil(
        lambda: window.statusBar().currentMessage().startswith("Exported 2 images"), timeout=10000
    )
    settle(qtbot, window)


def test_ctrl_q_with_a_running_and_a_queued_job_asks_first(qtbot, make_window, fake_sessions):
    fake_sessions.step_seconds = 0.1
    window = ready_window(qtbot, make_window, steps=40, count=1)
    window.activateWindow()
    window.commands.generate.generate()
    window.commands.generate.generate()
    qtbot.waitUntil(
        lambda: window.controller.current_job is not None and window.controller.queue.rowCount() == 1
    )
    seen = []
    click_in_message_box(qtbot, "keepWorkingButton", seen)
    window.actions.quit.trigger()  # what Ctrl+Q does
    assert seen == ["Quit and cancel 1 running and 1 queued job?"]
    assert window.isVisible() and window.controller.current_job is not None  # Cancel: nothing stopped
    assert window.controller.queue.rowCount() == 1
    click_in_message_box(qtbot, "quitButton", seen)
    window.actions.quit.trigger()
    assert len(seen) == 2 and not window.isVisible()


def test_quit_with_nothing_running_does_not_ask(qtbot, make_window):
    window = ready_window(qtbot, make_window)
    settle(qtbot, window)
    window.actions.quit.trigger()
    assert not window.isVisible()


def test_done_names_the_saved_file_with_show_in_folder_and_the_canvas_says_what_it_shows(
    qtbot, make_window, monkeypatch
):
    import app.ui.gallery.actions as actions

    revealed = []
    monkeypatch.setattr(actions, "reveal_in_file_manager", revealed.append)
    window = ready_window(qtbot, make_window, count=1, seed=42)
    window.panel.prompt.edit.setFocus()
    with qtbot.waitSignal(window.controller.job_ended, timeout=10000):
        qtbot.keyClick(window.panel.prompt.edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    (saved,) = window.output_arg.glob("*.png")
    assert window.progress.label.full_text().startswith("Done: 1 image in ")
    assert f"saved {saved.name}" in window.progress.label.full_text()
    assert window.progress.reveal_button.isVisible()
    qtbot.mouseClick(window.progress.reveal_button, Qt.MouseButton.LeftButton)
    assert revealed == [saved]
    assert window.canvas.caption() == f"seed 42 · {saved.name}"
    settle(qtbot, window)


def test_the_queue_length_shows_next_to_generate(qtbot, make_window, fake_sessions):
    fake_sessions.step_seconds = 0.05
    window = ready_window(qtbot, make_window, steps=20, count=1)
    assert not window.queued_label.isVisible()
    for _ in range(3):
        qtbot.mouseClick(window.generate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.controller.current_job is not None)
    assert window.queued_label.isVisible() and window.queued_label.text() == "2 queued"
    window.controller.cancel_all()
    qtbot.waitUntil(lambda: not window.controller.is_busy, timeout=10000)
    assert not window.queued_label.isVisible()
    settle(qtbot, window)


def test_a_cancelled_job_reports_the_time_it_ran(qtbot, make_window, fake_sessions, caplog):
    fake_sessions.step_seconds = 0.05
    window = ready_window(qtbot, make_window, steps=60, count=1)
    ended = []
    window.controller.job_ended.connect(lambda job, outcome: ended.append(outcome))
    qtbot.mouseClick(window.generate_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.cancel_button.isEnabled(), timeout=5000)
    qtbot.wait(600)  # some steps' worth of work
    with caplog.at_level("INFO", logger="app.ui.generation.controller"):
        qtbot.mouseClick(window.cancel_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: bool(ended), timeout=10000)
    (outcome,) = ended
    assert outcome.status.value == "cancelled" and outcome.seconds >= 0.5
    assert f"{outcome.seconds:.1f} s" in caplog.text and " 0.0 s" not in caplog.text
    assert window.progress.label.full_text().startswith(f"Cancelled after {outcome.seconds:.1f} s")
    settle(qtbot, window)


def test_the_memory_entry_names_the_plan_and_words_its_number_as_an_estimate(qtbot, make_window, monkeypatch):
    from app.inference.api.events import ModelLoaded
    from app.inference.memory.plan import MemoryPlan
    from tests.ui import fake_session

    plan = MemoryPlan(
        "cpu", "cpu", "float32", "float32", False, False, True, False, False, False, 0, int(2.1e9), True
    ).describe()  # the engine's own words: "… — expects 2.1 GB RAM"
    monkeypatch.setattr(fake_session, "ModelLoaded", lambda *a: ModelLoaded(*a, plan=plan))
    window = ready_window(qtbot, make_window)
    with qtbot.waitSignal(window.controller.job_ended, timeout=10000):
        qtbot.mouseClick(window.generate_button, Qt.MouseButton.LeftButton)
    label = window.memory_label
    assert label.text() == "Memory: cpu plan, float32"
    assert "expects" not in label.text() and "GB" not in label.text()
    assert "estimate for the model weights and their working memory: 2.1 GB RAM" in label.toolTip()
    settle(qtbot, window)


def test_ctrl_return_while_the_model_is_still_being_read_starts_once_it_is_read(
    qtbot, make_window, monkeypatch, request, fake_sessions
):
    """With --model the form shows guessed defaults until the model's header is read: the job waits for it."""
    import threading

    import app.ui.window.main_window as main_window

    release = threading.Event()
    request.addfinalizer(release.set)  # a failing assertion must not leave the I/O thread waiting
    real_scan = main_window.scan

    def slow_scan(*args):
        release.wait(10)
        return real_scan(*args)

    monkeypatch.setattr(main_window, "scan", slow_scan)
    window = make_window()
    window.state.update(prompt="a red fox", steps=2, count=1, width=64, height=64, random_seed=False, seed=3)
    window.show()
    qtbot.waitUntil(lambda: window._startup_task is not None)
    window.panel.prompt.edit.setFocus()
    qtbot.keyClick(window.panel.prompt.edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    qtbot.wait(200)
    assert window.controller.current_job is None and not window.controller.pending()
    assert window.banner.message() == "Reading the model files; your image starts as soon as they are read."
    with qtbot.waitSignal(window.controller.job_ended, timeout=15000):
        release.set()
    assert not window.banner.isVisible()
    (job_request,) = [r for s in fake_sessions.instances for _, r in s.runs]
    assert (job_request.prompt, job_request.seed, job_request.steps) == ("a red fox", 3, 2)
    settle(qtbot, window)


def test_the_window_is_never_larger_than_the_screen(qtbot, make_window):
    from PySide6.QtCore import QRect

    window = ready_window(qtbot, make_window)  # the default size, on the offscreen 800 × 800 screen
    room = window.screen().availableGeometry()
    assert window.height() <= room.height()
    window.setGeometry(QRect(-500, -300, 4000, 2500))  # as saved on a much larger monitor
    settle(qtbot, window)
    window.close()
    again = make_window()
    wait_until_ready(qtbot, again)
    assert again.height() <= room.height() and room.intersects(again.frameGeometry())
    assert again.width() <= max(room.width(), again.minimumSizeHint().width())
    settle(qtbot, again)


def test_a_model_set_with_a_long_name_elides_in_the_picker_without_widening_the_window(
    qtbot, make_window, tiny_model, tmp_path
):
    long_name = "sd3.5-medium-" + "finetuned-for-watercolour-landscapes-" * 4 + "v2"
    folder = tmp_path / long_name
    folder.symlink_to(tiny_model, target_is_directory=True)
    short = make_window()
    wait_until_ready(qtbot, short)
    short.resize(1250, 800)
    qtbot.wait(50)
    short_dock = short.panel.width()
    settle(qtbot, short)
    short.close()

    window = make_window(model_path=folder)
    wait_until_ready(qtbot, window)
    window.resize(1250, 800)
    qtbot.wait(50)
    combo = window.panel.model_combo
    assert long_name in combo.currentText()
    assert window.width() == 1250 and window.panel.width() == short_dock  # the name did not widen the dock
    shown = combo.shown_text()
    full = combo.currentText()  # e.g. "SD3.5 Medium · sd3.5-medium-finetuned-…-v2": both ends stay readable
    assert "…" in shown and shown[:8] == full[:8] and shown[-6:] == full[-6:]
    assert combo.fontMetrics().horizontalAdvance(shown) < combo.width()
    window.grab().save(str(tmp_path / "long-model-name.png"))
    settle(qtbot, window)

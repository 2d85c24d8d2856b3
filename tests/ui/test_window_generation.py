"""Prompt to picture through the window, on the fake session: previews, final image, PNG, variants, errors."""

import itertools
import shutil

import pytest
from PIL import Image
from PySide6.QtCore import Qt

from app.inference.api.errors import FailureKind
from app.ui.generation.jobs import JobStatus
from tests.factory.snapshot import write_snapshot
from tests.ui.conftest import wait_until_ready
from tests.ui.fake_session import EngineBackend, FakeSession


@pytest.fixture(scope="session")
def tiny_turbo(tmp_path_factory):
    return write_snapshot(tmp_path_factory.mktemp("models") / "sd3.5-large-turbo-tiny", "large-turbo")


def count_canvas_images(window):
    """Record what reaches the canvas: ('preview'|'final', width, height)."""
    seen = []
    original = window.canvas.set_image

    def spy(image, *, preview=False, logical_size=None, caption=None):
        seen.append(("preview" if preview else "final", image.width(), image.height()))
        original(image, preview=preview, logical_size=logical_size, caption=caption)

    window.canvas.set_image = spy
    return seen


def test_type_and_generate_shows_each_step_then_the_image_and_saves_the_png(qtbot, make_window, tmp_path):
    window = make_window()
    wait_until_ready(qtbot, window)
    window.state.update(steps=5, count=1, width=128, height=64, random_seed=False, seed=77)
    qtbot.keyClicks(window.panel.prompt.edit, "a (red:1.2) fox")
    seen = count_canvas_images(window)
    with qtbot.waitSignal(window.controller.job_ended, timeout=10000) as ended:
        qtbot.mouseClick(window.generate_button, Qt.MouseButton.LeftButton)
    assert ended.args[1].status is JobStatus.FINISHED
    assert [kind for kind, *_ in seen].count("preview") == 5
    assert seen[-1] == ("final", 128, 64)
    assert not window.canvas.is_preview() and window.canvas.image().size().width() == 128
    assert window.recent.results.rowCount() == 1
    (png,) = (tmp_path / "out").glob("*.png")
    assert png.name == "00001-77.png"
    with Image.open(png) as im:
        assert im.size == (128, 64)
        assert im.text["parameters"].startswith("a (red:1.2) fox\n")
        assert "Seed: 77" in im.text["parameters"] and "Steps: 5" in im.text["parameters"]
    assert "Done: 1 image" in window.progress.label.text()


def test_the_job_is_a_snapshot_with_the_style_shown(qtbot, make_window):
    window = make_window()
    wait_until_ready(qtbot, window)
    window.state.update(prompt="a lighthouse", style="watercolour", steps=2)
    assert "Adds: watercolour painting of <i>your prompt</i>" in window.panel.style_hint.text()
    assert window.panel.style_hint.toolTip().startswith("Sent as: watercolour painting of a lighthouse")
    job = window.commands.generate.generate()
    window.state.update(prompt="something else", steps=9)
    assert job.request.prompt.startswith("watercolour painting of a lighthouse")
    assert job.request.steps == 2 and job.style_label == "Watercolour"
    qtbot.waitUntil(lambda: not window.controller.is_busy, timeout=10000)


def test_variant_switch_applies_defaults_turbo_disables_negative_pins_survive(
    qtbot, make_window, tiny_model, tiny_turbo
):
    window = make_window()
    window.remember_path(tiny_turbo)
    wait_until_ready(qtbot, window)
    labels = [window.panel.model_combo.itemText(i) for i in range(window.panel.model_combo.count())]
    medium = next(i for i, t in enumerate(labels) if t.startswith("SD3.5 Medium"))
    turbo = next(i for i, t in enumerate(labels) if t.startswith("SD3.5 Large Turbo"))
    window.panel.model_combo.setCurrentIndex(medium)
    assert window.state.variant == "medium" and window.panel.steps_spin.value() == 40
    assert window.panel.negative.is_active()
    window.panel.cfg_spin.setValue(6.0)
    window.panel.pins["cfg"].click()
    window.panel.scheduler_combo.setCurrentIndex(window.panel.scheduler_combo.findData("beta"))
    window.panel.model_combo.setCurrentIndex(turbo)
    assert window.state.variant == "large-turbo"
    assert window.panel.steps_spin.value() == 4 and window.panel.sampler_combo.currentData() == "euler"
    assert window.panel.cfg_spin.value() == 6.0  # pinned
    assert window.panel.scheduler_combo.currentData() == "normal"  # not pinned: back to the default
    assert "Large Turbo" in window.panel.steps_spin.toolTip()
    window.panel.pins["cfg"].click()
    window.panel.model_combo.setCurrentIndex(medium)
    window.panel.model_combo.setCurrentIndex(turbo)
    assert window.panel.cfg_spin.value() == 1.0
    assert not window.panel.negative.is_active()
    assert window.panel.negative.notice.isVisibleTo(window) and "CFG 1" in window.panel.negative.notice.text()
    assert not window.panel.advanced.slg_check.isEnabled()


def test_three_queued_jobs_complete_in_order(qtbot, make_window, fake_sessions):
    fake_sessions.step_seconds = 0.02
    window = make_window()
    wait_until_ready(qtbot, window)
    window.state.update(steps=4, random_seed=False)
    jobs = []
    for seed in (1, 2, 3):
        window.state.update(prompt=f"job {seed}", seed=seed)
        jobs.append(window.commands.generate.generate())
    assert window.generate_button.text() == "Add to queue"
    qtbot.waitUntil(lambda: window.controller.queue.rowCount() == 2)  # the first one starts running
    ended = []
    window.controller.job_ended.connect(lambda job, outcome: ended.append((job.job_id, outcome.status)))
    qtbot.waitUntil(lambda: len(ended) == 3, timeout=15000)
    assert ended == [(j.job_id, JobStatus.FINISHED) for j in jobs]
    assert [r.prompt for _, r in fake_sessions.instances[0].runs] == ["job 1", "job 2", "job 3"]
    assert window.recent.results.rowCount() == 3 and window.generate_button.text() == "Generate"


def test_a_queued_job_can_be_removed(qtbot, make_window, fake_sessions):
    fake_sessions.step_seconds = 0.05
    window = make_window()
    wait_until_ready(qtbot, window)
    window.state.update(steps=5, prompt="x")
    window.commands.generate.generate()
    second, third = window.commands.generate.generate(), window.commands.generate.generate()
    assert window.controller.remove_pending(second.job_id)
    qtbot.waitUntil(lambda: not window.controller.is_busy, timeout=15000)
    assert len(fake_sessions.instances[0].runs) == 2
    assert fake_sessions.instances[0].runs[1][1] is third.request


def test_cancel_mid_run_stops_within_one_step_and_the_next_job_runs(qtbot, make_window, fake_sessions):
    fake_sessions.step_seconds = 0.03
    window = make_window()
    wait_until_ready(qtbot, window)
    window.state.update(steps=40, prompt="long one")
    first = window.commands.generate.generate()
    window.state.update(steps=3, prompt="next one")
    second = window.commands.generate.generate()
    steps_of_first = []
    window.controller.step_completed.connect(
        lambda s: steps_of_first.append(s.step) if s.job_id == first.job_id else None
    )
    outcomes = {}
    window.controller.job_ended.connect(lambda job, outcome: outcomes.__setitem__(job.job_id, outcome))
    qtbot.waitUntil(lambda: len(steps_of_first) >= 3, timeout=10000)
    qtbot.keyClick(window, Qt.Key.Key_Escape)  # Cancel (Esc)
    steps_when_cancelled = len(steps_of_first)
    qtbot.waitUntil(lambda: second.job_id in outcomes, timeout=10000)
    assert outcomes[first.job_id].status is JobStatus.CANCELLED
    assert outcomes[second.job_id].status is JobStatus.FINISHED
    assert len(steps_of_first) <= steps_when_cancelled + 1
    assert "Cancelled" not in window.progress.label.text()  # the next job's result replaced it


def test_closing_mid_run_exits_within_two_seconds_with_no_thread_left(
    qtbot, make_window, fake_sessions, tmp_path
):
    import time

    fake_sessions.step_seconds = 0.05
    window = make_window()
    wait_until_ready(qtbot, window)
    window.state.update(steps=3, count=3, prompt="keep me", random_seed=False, seed=10)
    window.commands.generate.generate()
    qtbot.waitUntil(lambda: window.recent.results.rowCount() >= 1, timeout=10000)  # one image finished
    started = time.perf_counter()
    window.close()
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0
    assert window.closed_cleanly and window.controller.thread.isFinished()
    assert (tmp_path / "out" / "00001-10.png").is_file()  # the finished image was kept


def test_a_job_that_fails_shows_an_actionable_error_and_the_app_keeps_working(
    qtbot, make_window, tiny_model, tmp_path
):
    broken_named = shutil.copytree(
        tiny_model, tmp_path / "broken-set"
    )  # valid headers; the fake fails its jobs
    window = make_window(model_path=broken_named)
    window.remember_path(tiny_model)
    wait_until_ready(qtbot, window)
    window.state.update(prompt="x", steps=2)
    with qtbot.waitSignal(window.controller.job_ended, timeout=10000) as ended:
        window.commands.generate.generate()
    assert ended.args[1].status is JobStatus.FAILED and ended.args[1].kind is FailureKind.MODEL
    assert (
        window.banner.message().startswith("The job failed — ")
        and "download it again" in window.banner.message()
    )
    assert window.banner.action_button.text() == "Locate…"
    good = next(
        i
        for i in range(window.panel.model_combo.count())
        if window.panel.model_combo.itemData(i) == str(tiny_model)
    )
    window.panel.model_combo.setCurrentIndex(good)
    with qtbot.waitSignal(window.controller.job_ended, timeout=10000) as ended:
        window.commands.generate.generate()
    assert ended.args[1].status is JobStatus.FINISHED


def test_a_corrupt_checkpoint_is_reported_and_a_good_one_can_be_chosen(
    qtbot, make_window, tiny_model, tmp_path
):
    corrupt = tmp_path / "corrupt" / "sd3.5_medium.safetensors"
    corrupt.parent.mkdir()
    corrupt.write_bytes((tiny_model / "sd3.5_medium.safetensors").read_bytes()[:5000])
    window = make_window(model_path=corrupt.parent)
    wait_until_ready(qtbot, window)
    assert window.stack.currentWidget() is window.first_run
    assert window.first_run.status.text().startswith("✗")
    assert not window.generate_button.isEnabled()
    window.first_run.path_edit.setText(str(tiny_model))
    qtbot.waitUntil(window.first_run.use_button.isEnabled, timeout=15000)
    assert "SD3.5 Medium" in window.first_run.status.text()
    window.first_run.use_button.click()
    assert window.stack.currentWidget() is window.canvas and window.generate_button.isEnabled()
    window.state.update(prompt="x", steps=2)
    with qtbot.waitSignal(window.controller.job_ended, timeout=10000) as ended:
        window.commands.generate.generate()
    assert ended.args[1].status is JobStatus.FINISHED


class FlakySession(FakeSession):
    """Breaks the session contract once (raises mid-job), then behaves."""

    crashed = False

    def run(self, model, request, cancel=None, variant=None):
        if not FlakySession.crashed:
            FlakySession.crashed = True
            raise RuntimeError("simulated engine crash")
        yield from super().run(model, request, cancel, variant)


def test_an_engine_crash_becomes_a_message_and_the_next_job_runs(qtbot, make_window):
    from app.metadata.png_info import save_png

    window = make_window(backend_loader=lambda: EngineBackend(FlakySession, save_png))
    wait_until_ready(qtbot, window)
    window.state.update(prompt="x", steps=2)
    with qtbot.waitSignal(window.controller.job_ended, timeout=10000) as ended:
        window.commands.generate.generate()
    assert ended.args[1].status is JobStatus.FAILED and "simulated engine crash" in window.banner.message()
    with qtbot.waitSignal(window.controller.job_ended, timeout=10000) as ended:
        window.commands.generate.generate()
    assert ended.args[1].status is JobStatus.FINISHED


def test_the_ui_keeps_processing_events_while_a_job_runs(qtbot, make_window, fake_sessions):
    import time

    from PySide6.QtCore import QTimer

    fake_sessions.step_seconds = 0.02
    window = make_window()
    wait_until_ready(qtbot, window)
    window.state.update(prompt="x", steps=40, count=2, width=512, height=512)
    ticks = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    with qtbot.waitSignal(window.controller.job_ended, timeout=20000):
        window.commands.generate.generate()
    timer.stop()
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    duration = ticks[-1] - ticks[0]
    assert duration > 1.0 and len(ticks) > duration / 0.010 * 0.5  # the timer kept firing through the job
    assert max(gaps) < 0.25, f"the UI thread stalled {max(gaps) * 1000:.0f} ms"


def test_skip_image_drops_only_the_current_image(qtbot, make_window, fake_sessions, tmp_path):
    fake_sessions.step_seconds = 0.03
    window = make_window()
    wait_until_ready(qtbot, window)
    window.state.update(prompt="x", steps=20, count=2, random_seed=False, seed=3)
    window.commands.generate.generate()
    cancelled = []
    window.controller.image_cancelled.connect(lambda _job, index: cancelled.append(index))
    qtbot.waitUntil(lambda: window.controller.current_job is not None and window.progress.bar.value() >= 2)
    with qtbot.waitSignal(window.controller.job_ended, timeout=10000) as ended:
        window.actions.skip_image.trigger()
    assert cancelled == [0]
    assert ended.args[1].status is JobStatus.FINISHED and ended.args[1].images == 1
    assert [p.name for p in (tmp_path / "out").glob("*.png")] == ["00001-4.png"]


def test_no_model_anywhere_opens_the_first_run_panel(qtbot, make_window):
    window = make_window(model_path=None)
    wait_until_ready(qtbot, window)
    assert window.stack.currentWidget() is window.first_run
    assert not window.generate_button.isEnabled()
    assert "not on this computer" in window.panel.model_hint.text()
    assert window.commands.generate.generate() is None and "Choose a model first" in window.banner.message()


def test_an_image_that_cannot_be_saved_is_still_shown_and_kept(qtbot, make_window, tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the output folder should be")
    window = make_window(output_dir=blocked)
    wait_until_ready(qtbot, window)
    window.state.update(prompt="x", steps=2, width=64, height=64)
    with qtbot.waitSignal(window.controller.image_finished, timeout=10000) as finished:
        window.commands.generate.generate()
    result = finished.args[0]
    assert result.path is None and "Could not save" in result.save_error
    qtbot.waitUntil(lambda: "Could not save" in window.banner.message())
    assert window.recent.results.rowCount() == 1 and not window.recent.results.full_image(0).isNull()
    assert window.canvas.image().width() == 64 and not window.canvas.is_preview()

"""Step frames in the window: a finished image carries them, the gallery stores them, opening it from the gallery
offers the scrubber under the canvas, and the slider (mouse or keys) walks the canvas through the steps."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QImage

from app.gallery.step_frames import StepFrames, StepFramesError
from app.ui.canvas.step_scrubber import ScrubState
from tests.ui.conftest import wait_until_ready

STEPS = 6


def fake_frames(steps: tuple[int, ...], total: int) -> StepFrames:
    return StepFrames(steps, total, tuple(f"frame {s}".encode() for s in steps))


def test_positions_map_to_frames_then_the_final_image():
    decoded = []

    def decode(data: bytes) -> np.ndarray:
        decoded.append(data)
        if data == b"frame 9":
            raise StepFramesError("broken")
        return np.full((4, 4, 3), int(data.split()[1]), np.uint8)

    state = ScrubState(fake_frames((3, 6, 9, 12), 12), decode)
    assert state.final_position == 4
    assert [state.label(p) for p in range(5)] == ["Step 3 / 12", "Step 6 / 12", "Step 9 / 12", "Step 12 / 12",
                                                  "Final"]  # fmt: skip
    assert state.pixels(1)[0, 0, 0] == 6 and state.pixels(1) is state.pixels(1)
    assert decoded == [b"frame 6"]  # decoded once, on demand
    assert state.pixels(4) is None and state.is_final(4)  # the final image is the window's, not a frame
    assert state.pixels(2) is None  # a frame that does not decode: the final image stands in


def generate(qtbot, window, seed: int = 7) -> object:
    window.state.update(
        prompt="a fox", steps=STEPS, count=1, width=128, height=64, random_seed=False, seed=seed
    )
    with qtbot.waitSignal(window.controller.job_ended, timeout=10000):
        window.commands.generate.generate()
    qtbot.waitUntil(lambda: not window.controller.is_busy, timeout=5000)
    return window.shown_result


@pytest.fixture
def indexed(qtbot, make_window):
    """A window whose one finished image is in the gallery with its step frames written."""
    window = make_window()
    wait_until_ready(qtbot, window)
    result = generate(qtbot, window)
    qtbot.waitUntil(lambda: window.gallery.panel is not None, timeout=5000)
    panel = window.gallery.panel
    key = str(result.path)
    qtbot.waitUntil(lambda: key in panel.db.ids_for_paths([result.path]), timeout=5000)
    image_id = panel.db.ids_for_paths([result.path])[key]
    qtbot.waitUntil(lambda: key not in window.gallery._fresh_frames, timeout=5000)  # written
    return window, panel, result, image_id


def gray(image: QImage) -> int:
    return image.pixelColor(image.width() // 2, image.height() // 2).red()


def test_a_finished_image_carries_its_frames_and_offers_the_scrubber(qtbot, make_window):
    window = make_window()
    wait_until_ready(qtbot, window)
    assert window.scrubber.isHidden()  # nothing to scrub yet
    result = generate(qtbot, window)
    frames = result.step_frames
    assert frames is not None and frames.steps == tuple(range(1, STEPS + 1)) and frames.total_steps == STEPS
    scrubber = window.scrubber
    assert scrubber.isVisible() and scrubber.slider.maximum() == STEPS and scrubber.slider.value() == STEPS
    assert scrubber.label.text() == "Final"
    scrubber.slider.setValue(1)
    assert window.canvas.is_preview()
    # Copy Image / Save Image As, while a step frame is shown, take the finished image it belongs to
    assert window.shown.image() is result.image


def test_the_gallery_stores_the_frames_and_opening_the_image_offers_them(qtbot, indexed):
    window, panel, _result, image_id = indexed
    sidecar = panel.data_dir / "step_frames" / f"{image_id}.webp"
    assert sidecar.is_file()
    entry = panel.db.step_frames(image_id)
    assert entry is not None and entry.steps == tuple(range(1, STEPS + 1))

    window.canvas.set_image(QImage(32, 32, QImage.Format.Format_RGB888))  # something else on the canvas
    assert window.scrubber.isHidden()
    records = [panel.model.record(r) for r in range(panel.model.rowCount())]  # group headers are None
    (row,) = [r for r, rec in enumerate(records) if rec is not None and rec.id == image_id]
    panel.view.activated.emit(panel.model.index(row, 0))  # what a double click does
    scrubber = window.scrubber
    qtbot.waitUntil(scrubber.isVisible, timeout=5000)
    final = window.canvas.image()
    assert final.size() == QSize(128, 64) and not window.canvas.is_preview()

    scrubber.slider.setValue(0)  # dragging to the start
    assert window.canvas.is_preview() and scrubber.label.text() == f"Step 1 / {STEPS}"
    assert window.canvas.logical_size() == QSize(128, 64)  # drawn at the image's size: zoom stays put
    first = gray(window.canvas.image())
    scrubber.slider.setValue(3)
    assert scrubber.label.text() == f"Step 4 / {STEPS}"
    assert abs(first - 0) <= 3 and abs(gray(window.canvas.image()) - 120) <= 3  # the fake's step levels

    scrubber.slider.setFocus()
    qtbot.keyClick(scrubber.slider, Qt.Key.Key_Right)
    assert scrubber.slider.value() == 4 and scrubber.label.text() == f"Step 5 / {STEPS}"
    qtbot.keyClick(scrubber.slider, Qt.Key.Key_End)
    assert scrubber.label.text() == "Final"
    assert window.canvas.image() is final and not window.canvas.is_preview()  # back to full resolution
    assert scrubber.isVisible()


def test_a_damaged_frame_file_means_no_scrubber_and_no_crash(qtbot, indexed):
    window, panel, result, image_id = indexed
    (panel.data_dir / "step_frames" / f"{image_id}.webp").write_bytes(b"RIFF\x10\x00\x00\x00WEBPgarbage!")
    window.canvas.set_image(None)
    panel.image_opened.emit(result.path)
    assert panel.tasks.waitForDone(5000)
    qtbot.wait(50)  # the task's result arrives through the event loop
    assert window.scrubber.isHidden()
    assert window.canvas.image().size() == QSize(128, 64)  # the image itself opened all the same


def test_the_scrubber_hides_while_generating_and_returns_to_the_final_image(
    qtbot, make_window, fake_sessions
):
    window = make_window()
    wait_until_ready(qtbot, window)
    generate(qtbot, window)
    scrubber = window.scrubber
    scrubber.slider.setValue(2)
    assert window.canvas.is_preview()
    fake_sessions.step_seconds = 0.05
    with qtbot.waitSignal(window.controller.busy_changed, timeout=5000):
        window.commands.generate.generate()
    assert scrubber.isHidden()
    qtbot.waitUntil(lambda: not window.controller.is_busy, timeout=10000)
    assert scrubber.isVisible() and scrubber.slider.value() == STEPS  # the new image's frames


def test_removing_the_record_removes_its_frames(qtbot, indexed):
    _window, panel, result, image_id = indexed
    sidecar = panel.data_dir / "step_frames" / f"{image_id}.webp"
    assert sidecar.is_file()
    result.path.unlink()  # deleted outside the app
    panel.remove_missing()
    qtbot.waitUntil(lambda: not sidecar.exists(), timeout=5000)
    assert panel.db.step_frames(image_id) is None


def test_the_real_engine_s_previews_become_step_frames_for_each_image_of_a_batch(qtbot, make_window):
    from app.gallery.step_frames import decode_frame
    from app.ui.generation.worker import load_engine_backend

    window = make_window(backend_loader=load_engine_backend)
    wait_until_ready(qtbot, window)
    window.state.update(prompt="a tiny red square", width=64, height=64, steps=2, count=2, random_seed=False, seed=5,
                        preview="linear")  # fmt: skip
    finished = []
    window.controller.image_finished.connect(finished.append)
    with qtbot.waitSignal(window.controller.job_ended, timeout=180_000):
        window.commands.generate.generate()
    assert [r.seed for r in finished] == [5, 6]
    for result in finished:
        frames = result.step_frames
        assert frames is not None and frames.steps == (1, 2) and frames.total_steps == 2
        assert decode_frame(frames.frames[-1]).shape[2] == 3
    assert finished[0].step_frames.frames != finished[1].step_frames.frames  # each image its own frames

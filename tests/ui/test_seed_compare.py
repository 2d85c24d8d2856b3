"""Compare Seeds on the fake session: one job of N seeds, one live tile per seed, per-tile stop, compare view."""

from PySide6.QtCore import Qt

from app.ui.generation.jobs import JobStatus
from app.ui.tools.seed_compare import _columns
from tests.ui.conftest import wait_until_ready


def record_tile_steps(page):
    """For every tile, the image indexes of the step events it painted."""
    seen = {tile.index: [] for tile in page.tiles}
    for tile in page.tiles:
        original = tile.show_step

        def spy(info, tile=tile, original=original):
            seen[tile.index].append(info.image_index)
            original(info)

        tile.show_step = spy
    return seen


def ready_window(qtbot, make_window, **values):
    window = make_window()
    wait_until_ready(qtbot, window)
    values = {"prompt": "a red fox", "steps": 4, "count": 3, "width": 64, "height": 64, "random_seed": False,
              "seed": 10, **values}  # fmt: skip
    window.state.update(**values)
    return window


def test_each_tile_shows_its_own_previews_then_its_final_image(qtbot, make_window, fake_sessions):
    window = ready_window(qtbot, make_window)
    page = window.seed_compare
    with qtbot.waitSignal(window.controller.job_ended, timeout=10000) as ended:
        window.actions.compare_seeds.trigger()  # Generate ▸ Compare Seeds…
        assert window.stack.currentWidget() is page
        seen = record_tile_steps(page)
    assert ended.args[1].status is JobStatus.FINISHED
    (job,) = [run[1] for s in fake_sessions.instances for run in s.runs]
    assert job.count == 3 and job.seed == 10  # one job of three seeds
    assert [t.seed for t in page.tiles] == [10, 11, 12]
    for tile in page.tiles:
        assert seen[tile.index] == [tile.index] * 4  # four previews, all of this tile's own image
        assert tile.state == "done" and tile.result.seed == tile.seed
        assert tile.picture.has_image() and not tile.stop_button.isVisible()
    assert window.stack.currentWidget() is page  # the finished images did not pull the canvas to the front
    assert "3 of 3 seeds finished" in page.summary.text()


def test_at_least_two_seeds_even_when_images_is_one(qtbot, make_window):
    window = ready_window(qtbot, make_window, count=1)
    with qtbot.waitSignal(window.controller.job_ended, timeout=10000):
        job = window.seed_compare.start()
    assert job.request.count == 2 and len(window.seed_compare.tiles) == 2


def test_stopping_one_tile_cancels_only_that_image(qtbot, make_window, fake_sessions):
    fake_sessions.step_seconds = 0.05
    window = ready_window(qtbot, make_window, steps=6)
    page = window.seed_compare
    with qtbot.waitSignal(window.controller.job_ended, timeout=15000) as ended:
        page.start()
        qtbot.waitUntil(lambda: page.tiles[0].previews >= 2, timeout=5000)
        qtbot.mouseClick(page.tiles[0].stop_button, Qt.MouseButton.LeftButton)
    outcome = ended.args[1]
    assert outcome.status is JobStatus.FINISHED and outcome.images == 2
    first, second, third = page.tiles
    assert first.state == "stopped" and first.result is None and first.previews < 6
    assert first.picture.dimmed
    assert second.state == third.state == "done" and second.previews == third.previews == 6
    assert sorted(p.name for p in window.output_arg.glob("*.png")) == ["00001-11.png", "00002-12.png"]


def test_finished_seeds_open_in_the_gallery_compare_view(qtbot, make_window):
    window = ready_window(qtbot, make_window)
    page = window.seed_compare
    with qtbot.waitSignal(window.controller.job_ended, timeout=10000):
        page.start()
    qtbot.waitUntil(lambda: window.gallery.panel is not None, timeout=5000)
    panel = window.gallery.panel
    paths = [r.path for r in page.finished_results()]
    qtbot.waitUntil(lambda: len(panel.db.ids_for_paths(paths)) == 3, timeout=5000)
    assert page.compare_button.isEnabled()
    qtbot.mouseClick(page.compare_button, Qt.MouseButton.LeftButton)
    assert window.stack.currentWidget() is panel.compare  # in the window's centre, not the narrow dock
    assert [r.path for r in panel.compare.records] == paths


def test_columns_follow_the_image_shape():
    assert _columns(4, 1.0) == 2
    assert _columns(2, 1.0) == 2
    assert _columns(3, 16 / 9) == 2  # wide images: two columns, two rows
    assert _columns(6, 9 / 16) == 3  # tall images: one row would make them tiny


def test_a_second_sweep_replaces_the_tiles_and_double_click_opens_a_seed(qtbot, make_window):
    window = ready_window(qtbot, make_window, count=4)
    page = window.seed_compare
    with qtbot.waitSignal(window.controller.job_ended, timeout=10000):
        page.start()
    window.state.update(count=2, seed=50)
    with qtbot.waitSignal(window.controller.job_ended, timeout=10000):
        page.start()
    assert [t.seed for t in page.tiles] == [50, 51]
    assert len(page.grid_host.findChildren(type(page.tiles[0]))) == 2
    qtbot.mouseDClick(page.tiles[1], Qt.MouseButton.LeftButton)
    assert window.stack.currentWidget() is window.canvas
    assert window.shown_result is page.tiles[1].result


def test_tiles_name_the_server_that_made_each_image(qtbot, make_window, monkeypatch):
    """Images made by ComfyUI servers (ImageFinished.engine) say which one on their tile; this machine's do not."""
    import dataclasses

    from app.inference.api.events import ImageFinished
    from app.remote.engine_list import EngineList
    from app.ui.generation.worker import EngineBackend
    from tests.ui.fake_session import FakeSession, save_png

    makers = [
        "http://gpu-box:8188",
        "http://10.0.0.5:8188",
        "",
    ]  # a listed server, an unlisted one, this machine

    class ServerTagged(FakeSession):
        def run(self, model, request, cancel=None, variant=None):
            for event in super().run(model, request, cancel, variant):
                if isinstance(event, ImageFinished):
                    event = dataclasses.replace(event, engine=makers[event.image_index])
                yield event

    monkeypatch.setattr("app.remote.engine_list._usable_keyring", lambda: None)
    engines = EngineList()
    engines.add("http://gpu-box:8188", "gpu-box")
    engines.update("http://gpu-box:8188", enabled=False)  # named, not contacted
    window = ready_window(
        qtbot, lambda: make_window(backend_loader=lambda: EngineBackend(ServerTagged, save_png))
    )
    with qtbot.waitSignal(window.controller.job_ended, timeout=10000):
        window.actions.compare_seeds.trigger()
    page = window.seed_compare
    assert [t.status.full_text() for t in page.tiles] == ["done · gpu-box", "done · 10.0.0.5:8188", "done"]
    assert [t.result.engine for t in page.tiles] == makers
    assert page.tiles[0].status.toolTip() == "made by gpu-box (http://gpu-box:8188)"
    page.grab().save("/tmp/engineui-seed-tiles.png")

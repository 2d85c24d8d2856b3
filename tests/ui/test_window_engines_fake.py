"""Settings ▸ Engines from the window's Edit menu and several servers as one engine, on in-process fake
ComfyUI servers (fast): a server added in the dialog lists its model set in the picker; a set two servers list
runs its seeds on both (ServerPool) and each Compare Seeds tile names its server."""

import pytest
from PySide6.QtCore import Qt

from app.remote.engine_list import EngineList
from app.ui.generation.jobs import JobStatus
from tests.comfyui.fake_server import FakeComfy
from tests.ui.conftest import wait_until_ready
from tests.ui.test_window_remote_engine import remote_index


@pytest.fixture(autouse=True)
def token_file(monkeypatch):
    monkeypatch.setattr("app.remote.engine_list._usable_keyring", lambda: None)


def test_a_server_added_in_the_dialog_lists_its_model_set_in_the_picker(qtbot, make_window):
    with FakeComfy() as fake:
        window = make_window()
        wait_until_ready(qtbot, window)
        edit = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Edit")
        assert window.engine_hookup.action in edit.actions()
        window.engine_hookup.action.trigger()  # Edit ▸ Engines (ComfyUI Servers)…
        dialog = window.engine_hookup._dialog
        assert dialog is not None and dialog.isVisible()
        qtbot.keyClicks(dialog.url_edit, fake.url)
        qtbot.keyClicks(dialog.name_edit, "desk gpu")
        qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: remote_index(window, "sd3.5_medium · desk gpu · no T5") >= 0, timeout=10_000)
        assert (
            window.picker.selected is not None and not window.picker.selected.is_remote
        )  # still this machine
        assert [e.name for e in EngineList().entries] == ["desk gpu"]  # saved for the next start and the CLI

        qtbot.mouseClick(dialog.remove_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: remote_index(window, "sd3.5_medium · desk gpu · no T5") < 0, timeout=10_000)
        dialog.close()
        window.close()


def test_a_set_two_servers_list_spreads_its_seeds_and_each_tile_names_its_server(qtbot, make_window):
    with FakeComfy() as first, FakeComfy() as second:
        engines = EngineList()
        engines.add(first.url, "left")
        engines.add(second.url, "right")
        window = make_window()
        wait_until_ready(qtbot, window)
        label = "sd3.5_medium · left +1 · no T5"
        qtbot.waitUntil(lambda: remote_index(window, label) >= 0, timeout=10_000)
        window.panel.model_combo.setCurrentIndex(remote_index(window, label))
        assert window.picker.selected.engine == (first.url, second.url)
        assert window.engine_hookup.label.full_text() == "Engine: left, right · online"
        first.delay["/prompt"] = second.delay["/prompt"] = 0.3  # both busy at once: the pool uses both
        window.state.update(prompt="a harbour", steps=2, count=4, width=64, height=64, cfg=2.0, sampler="euler",
                            random_seed=False, seed=100)  # fmt: skip
        with qtbot.waitSignal(window.controller.job_ended, timeout=60_000) as ended:
            window.actions.compare_seeds.trigger()
        assert ended.args[1].status is JobStatus.FINISHED, ended.args[1].message
        tiles = window.seed_compare.tiles
        assert {t.result.engine for t in tiles} == {first.url, second.url}  # both servers made images
        for tile in tiles:
            name = "left" if tile.result.engine == first.url else "right"
            assert tile.status.full_text() == f"done · {name}"
        window.seed_compare.grab().save("/tmp/engineui-two-servers.png")
        window.close()

"""A model file copied onto a ComfyUI server while the window is open joins the picker (issue 17 follow-up): every
RELIST_S the window re-reads each online server's /object_info; the user's chosen set stays chosen, and a re-read
that lists the same sets leaves the picker alone."""

import json

import pytest

from tests.comfyui.fake_server import OBJECT_INFO, FakeComfy
from tests.ui.conftest import wait_until_ready
from tests.ui.test_window_remote_engine import remote_index, window_on_server_set

MEDIUM = "sd3.5_medium · gpu-box · no T5"
LARGE = "sd3.5_large · gpu-box · no T5"


@pytest.fixture(autouse=True)
def quick_rereads(monkeypatch):
    monkeypatch.setattr("app.remote.engine_list._usable_keyring", lambda: None)
    monkeypatch.setattr("app.ui.window.engine_watch.RELIST_S", 0.3)


def with_checkpoints(fake, *names, without: str = ""):
    """`fake`'s /object_info from now on lists these checkpoints (a file copied into its models/checkpoints), and
    lacks the node `without` (a custom node removed)."""
    loader = {"input": {"required": {"ckpt_name": [list(names), {}]}}}
    info = {**OBJECT_INFO, "CheckpointLoaderSimple": loader}
    info.pop(without, None)
    fake.body["/object_info"] = json.dumps(info).encode()


def object_info_reads(fake) -> int:
    return fake.requests.count(("GET", "/object_info"))


def test_a_checkpoint_copied_onto_a_server_while_idle_appears_and_the_chosen_set_stays(qtbot, make_window):
    with FakeComfy() as fake:
        window = window_on_server_set(qtbot, make_window, fake.url, "gpu-box", MEDIUM)
        assert window.picker.selected.label == MEDIUM
        listed = []
        window.engine_hookup.servers_listed.connect(lambda: listed.append(1))
        reads = object_info_reads(fake)
        qtbot.waitUntil(lambda: object_info_reads(fake) >= reads + 3, timeout=10_000)  # re-read while idle
        assert listed == []  # the same lists: the picker is not touched
        assert remote_index(window, LARGE) < 0

        with_checkpoints(fake, "sd3.5_medium.safetensors", "sd3.5_large.safetensors")
        qtbot.waitUntil(lambda: remote_index(window, LARGE) >= 0, timeout=10_000)
        assert window.picker.selected.label == MEDIUM  # the user's choice is untouched
        assert window.state.values.remote_model == "sd3.5_medium.safetensors"
        assert window.engine_hookup.label.full_text() == "Engine: gpu-box · online"
        combo = window.panel.model_combo
        combo.showPopup()
        combo.view().window().grab().save("/tmp/poolfix-shot.png")  # the open list, with both server sets
        combo.hidePopup()

        assert "slg_enabled" not in window.state.unavailable
        with_checkpoints(
            fake, "sd3.5_medium.safetensors", "sd3.5_large.safetensors", without="SkipLayerGuidanceSD3"
        )
        qtbot.waitUntil(
            lambda: "slg_enabled" in window.state.unavailable, timeout=10_000
        )  # same sets, a node gone
        assert "no SkipLayerGuidanceSD3 node" in window.state.unavailable["slg_enabled"]
        assert window.picker.selected.label == MEDIUM

        with_checkpoints(fake, "sd3.5_large.safetensors")  # a file removed from the server goes too
        qtbot.waitUntil(lambda: remote_index(window, MEDIUM) < 0, timeout=10_000)
        assert remote_index(window, LARGE) >= 0
        window.close()


def test_files_copied_onto_a_server_appear_while_this_machines_set_is_chosen(qtbot, make_window):
    from app.remote.engine_list import EngineList

    with FakeComfy() as fake:
        EngineList().add(fake.url, "gpu-box")
        window = make_window()
        wait_until_ready(qtbot, window)
        qtbot.waitUntil(lambda: remote_index(window, MEDIUM) >= 0, timeout=10_000)
        chosen = window.picker.selected
        assert chosen is not None and not chosen.is_remote  # the heartbeat has no server to ping here
        with_checkpoints(fake, "sd3.5_medium.safetensors", "sd3.5_large.safetensors")
        qtbot.waitUntil(lambda: remote_index(window, LARGE) >= 0, timeout=10_000)
        assert window.picker.selected.key == chosen.key
        window.close()

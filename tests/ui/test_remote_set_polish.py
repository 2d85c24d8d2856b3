"""What the window shows around a server's model set, on the in-process fake ComfyUI server (fast): the prompt's
token counter counts with this machine's tokenizers (every SD3.5 variant has the same ones), or says plainly
that a server's model is not counted when this machine has none."""

import pytest

from app.remote.engine_list import EngineList
from tests.comfyui.fake_server import FakeComfy
from tests.ui.conftest import wait_until_ready
from tests.ui.test_window_remote_engine import remote_index

LABEL = "sd3.5_medium · desk gpu · no T5"


@pytest.fixture(autouse=True)
def token_file(monkeypatch):
    monkeypatch.setattr("app.remote.engine_list._usable_keyring", lambda: None)


def pick_remote_set(qtbot, window):
    qtbot.waitUntil(lambda: remote_index(window, LABEL) >= 0, timeout=10_000)
    window.panel.model_combo.setCurrentIndex(remote_index(window, LABEL))
    assert window.picker.selected is not None and window.picker.selected.is_remote


def test_a_servers_set_is_counted_with_this_machines_tokenizers(qtbot, make_window):
    with FakeComfy() as fake:
        EngineList().add(fake.url, "desk gpu")
        window = make_window()
        wait_until_ready(qtbot, window)
        pick_remote_set(qtbot, window)
        qtbot.keyClicks(window.panel.prompt.edit, "a red fox")
        counter = window.panel.prompt.counter
        qtbot.waitUntil(lambda: counter.text().startswith("CLIP "), timeout=20_000)
        assert counter.text().endswith("T5 off")  # the server has no T5: the set runs without it
        negative = window.panel.negative.counter  # the negative prompt is counted the same way
        qtbot.waitUntil(lambda: negative.text().startswith("CLIP "), timeout=20_000)
        window.panel.grab().save("/tmp/polish-remote-tokens.png")
        window.close()


def test_without_a_local_set_a_servers_set_says_it_is_not_counted(qtbot, make_window, tmp_path):
    with FakeComfy() as fake:
        EngineList().add(fake.url, "desk gpu")
        window = make_window(model_path=tmp_path / "no-such-model.safetensors")
        wait_until_ready(qtbot, window)
        pick_remote_set(qtbot, window)
        assert not any(s.usable for s in window.picker.sets if not s.is_remote)
        qtbot.keyClicks(window.panel.prompt.edit, "a red fox")
        counter = window.panel.prompt.counter
        qtbot.waitUntil(lambda: counter.text() == "Tokens: not counted for a server's model", timeout=20_000)
        window.close()


def test_the_gallery_card_of_a_servers_image_gets_its_thumbnail(qtbot, make_window, tmp_path):
    """The card is dark grey only until the thumbnail loader (2 background threads) has read the PNG the
    window wrote from the server's result: the remote image's gallery record points at a real file."""
    with FakeComfy() as fake:
        EngineList().add(fake.url, "desk gpu")
        window = make_window()
        wait_until_ready(qtbot, window)
        pick_remote_set(qtbot, window)
        window.state.update(prompt="a harbour", steps=2, count=1, width=64, height=64, cfg=2.0, sampler="euler",
                            random_seed=False, seed=21)  # fmt: skip
        with qtbot.waitSignal(window.controller.job_ended, timeout=60_000) as ended:
            window.actions.generate.trigger()
        assert ended.args[1].status.name == "FINISHED", ended.args[1].message
        qtbot.waitUntil(lambda: window.gallery.panel is not None, timeout=5000)
        model = window.gallery.panel.model
        qtbot.waitUntil(
            lambda: any(model.image_id(r) is not None for r in range(model.rowCount())), timeout=10_000
        )
        (row,) = [r for r in range(model.rowCount()) if model.image_id(r) is not None]
        image_id, record = model.image_id(row), model.record(row)
        assert record is not None and record.path.is_file() and record.path.parent == tmp_path / "out"
        window.gallery.panel.grab()  # painting the card asks for its thumbnail
        qtbot.waitUntil(lambda: image_id in model._pixmaps or image_id in model.missing_ids, timeout=10_000)
        assert image_id not in model.missing_ids
        window.grab().save("/tmp/polish-remote-gallery.png")
        window.close()

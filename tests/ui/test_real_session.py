"""End to end through the real engine: the window, the inference thread and `GenerationSession` on the tiny
model set (random weights, real key layouts) — previews per step, the final image, the PNG on disk."""

import importlib.util

import pytest
from PIL import Image

from app.ui.generation.jobs import JobStatus
from app.ui.generation.worker import load_engine_backend
from tests.ui.conftest import wait_until_ready

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("app.inference.pipeline.session") is None,
    reason="app.inference.pipeline.session (the generation session API) does not exist yet",
)


def test_real_session_generates_with_previews_and_writes_the_png(qtbot, make_window, tmp_path):
    window = make_window(backend_loader=load_engine_backend)
    wait_until_ready(qtbot, window)
    window.state.update(
        prompt="a tiny red square",
        width=64,
        height=64,
        steps=2,
        count=2,
        random_seed=False,
        seed=5,
        preview="linear",
    )
    previews, finished, loading = [], [], []
    window.controller.step_completed.connect(lambda s: previews.append((s.image_index, s.step, s.preview)))
    window.controller.image_finished.connect(finished.append)
    window.controller.model_loading.connect(lambda _j, name, i, n: loading.append((name, i, n)))
    with qtbot.waitSignal(window.controller.job_ended, timeout=180_000) as ended:
        window.commands.generate.generate()
    outcome = ended.args[1]
    assert outcome.status is JobStatus.FINISHED, outcome.message
    assert [n for n, _, _ in loading] == ["text encoders", "diffusion model", "VAE"]
    assert [(i, s) for i, s, _ in previews] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert all(p is not None and not p.isNull() for *_, p in previews)
    assert [r.seed for r in finished] == [5, 6]
    assert window.canvas.image().size().width() == 64 and not window.canvas.is_preview()
    for result in finished:
        with Image.open(result.path) as im:
            assert im.size == (64, 64)
            assert "Steps: 2" in im.text["parameters"] and f"Seed: {result.seed}" in im.text["parameters"]
            # Every metadata chunk: our JSON parameters and an equivalent ComfyUI graph.
            assert {"parameters", "sd35-studio", "prompt", "workflow"} <= set(im.text)
            assert '"KSampler"' in im.text["prompt"]
    # The gallery, built after the first paint, indexed both images.
    qtbot.waitUntil(
        lambda: window.gallery.panel is not None and window.gallery.panel.db.count() == 2, timeout=10_000
    )
    assert window.model_label.text().startswith("Model: sd3.5_medium")
    assert window.memory_label.text().startswith("Memory: ")  # the plan the engine chose, in its words

    # The models stay loaded: the next job loads nothing.
    loading.clear()
    with qtbot.waitSignal(window.controller.job_ended, timeout=60_000) as ended:
        window.commands.generate.generate()
    assert ended.args[1].status is JobStatus.FINISHED and loading == []

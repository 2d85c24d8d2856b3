"""One image writer: the same request written by `sd35-studio generate`, by the window's inference worker and by
File ▸ Save Image As carries byte-identical metadata chunks, recall reads the three files identically, and Copy
Parameters gives one text in the window and in the gallery.

All on the real engine with the tiny model set (random weights, real key layouts)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QFileDialog

from app.inference.api.request import GenerationRequest
from app.metadata.a1111 import infotext_of
from app.metadata.file_names import OutputTarget
from app.metadata.png_text import read_png_text
from app.metadata.recall import read_metadata
from app.ui.gallery.menu import build_context_menu
from app.ui.generation.jobs import EngineOptions, JobStatus, QueuedJob
from app.ui.generation.worker import load_engine_backend
from tests.ui.conftest import wait_until_ready

CHUNKS = {"parameters", "sd35-studio", "prompt", "workflow"}
BASE = ["--steps", "2", "--width", "64", "--height", "64", "--seed", "7", "--prompt", "a lighthouse, at dusk"]


def _init_image(tmp_path: Path) -> Path:
    path = tmp_path / "source.png"
    ramp = np.linspace(0, 255, 64, dtype=np.uint8)
    Image.fromarray(np.stack([np.tile(ramp, (64, 1))] * 3, axis=-1), "RGB").save(path)
    return path


# (name, extra CLI options, the same settings as request fields, the memory plan)
CASES = [
    ("fp8", ["--negative", "blurry"], {"negative": "blurry"}, "fp8"),
    ("no-t5", ["--no-t5"], {"use_t5": False}, "auto"),
    (
        "img2img",
        ["--init-image", "{init}", "--denoise", "0.6"],
        {"init_image": "{init}", "denoise": 0.6},
        "auto",
    ),
    (
        "negative window",
        ["--negative", "harsh light, noise", "--negative-until", "0.5"],
        {"negative": "harsh light, noise", "negative_until": 0.5},
        "auto",
    ),
]


def _cli_image(tiny_model: Path, out: Path, options: list[str], plan: str) -> Path:
    command = [sys.executable, "-m", "app", "generate", "--model", str(tiny_model), *BASE, *options]
    command += ["--memory-plan", plan, "--out", str(out)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


def _save_as(qtbot, window, monkeypatch, path: Path) -> Path:
    """File ▸ Save Image As… (Ctrl+S) into `path`, the file dialog answered."""
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", lambda *args, **kwargs: (str(path), "PNG image (*.png)")
    )
    window.activateWindow()
    window.canvas.setFocus()
    qtbot.keyClick(window.canvas, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(path.exists, timeout=20_000)  # written atomically: it exists once it is complete
    return path


@pytest.mark.parametrize(("name", "options", "fields", "plan"), CASES, ids=[c[0] for c in CASES])
def test_cli_window_and_save_as_write_identical_chunks(
    qtbot, make_window, tiny_model, tmp_path, monkeypatch, name, options, fields, plan
):
    init = _init_image(tmp_path)
    options = [o.replace("{init}", str(init)) for o in options]
    fields = {
        k: (Path(str(v).replace("{init}", str(init))) if v == "{init}" else v) for k, v in fields.items()
    }
    cli = _cli_image(tiny_model, tmp_path / "cli.png", options, plan)

    # The window: the same request through the controller, the inference thread and the real session.
    window = make_window(backend_loader=load_engine_backend)
    wait_until_ready(qtbot, window)
    request = GenerationRequest(
        prompt="a lighthouse, at dusk", seed=7, steps=2, width=64, height=64, **fields
    )
    job = QueuedJob(
        1, request, tiny_model, "medium", "tiny", EngineOptions(memory_plan=plan),
        OutputTarget(tmp_path / "window", dated=False),
    )  # fmt: skip
    finished = []
    window.controller.image_finished.connect(finished.append)
    with qtbot.waitSignal(window.controller.job_ended, timeout=180_000) as ended:
        window.controller.submit(job)
    assert ended.args[1].status is JobStatus.FINISHED, ended.args[1].message
    result = finished[0]
    assert result.path is not None and result.path.name == "00001-7.png"
    qtbot.waitUntil(lambda: window.shown_result is result)
    saved_as = _save_as(qtbot, window, monkeypatch, tmp_path / "kept.png")

    chunks = [read_png_text(path) for path in (cli, result.path, saved_as)]
    assert set(chunks[0]) == CHUNKS
    assert chunks[1] == chunks[0] and chunks[2] == chunks[0]  # every chunk, byte for byte
    text = chunks[0]["parameters"]
    assert ("FP8 weight: Enable" in text) == (name == "fp8") and (
        '"fp8": true' in chunks[0]["sd35-studio"]
    ) == (name == "fp8")
    assert ("T5: off" in text) == (name == "no-t5") and ("DualCLIPLoader" in chunks[0]["prompt"]) == (
        name == "no-t5"
    )
    assert ("Denoising strength: 0.6" in text) == (name == "img2img")
    assert ("Negative until: 0.5" in text) == (name == "negative window")
    assert text == result.infotext  # what the window shows and copies

    recalled = [read_metadata(path) for path in (cli, result.path, saved_as)]
    assert recalled[0].source == "sd35-studio" and recalled[0].params == result.params
    assert recalled[1] == recalled[0] and recalled[2] == recalled[0]
    with Image.open(result.path) as window_png, Image.open(saved_as) as saved_png:
        assert np.array_equal(np.asarray(window_png), np.asarray(saved_png))  # Save As keeps the pixels


def test_copy_parameters_gives_one_text_in_the_window_and_the_gallery(
    qtbot, make_window, tiny_model, tmp_path
):
    window = make_window(backend_loader=load_engine_backend)
    wait_until_ready(qtbot, window)
    request = GenerationRequest(
        prompt="a glass teapot", negative="dust", seed=3, steps=2, width=64, height=64
    )
    job = QueuedJob(1, request, tiny_model, "medium", "tiny", EngineOptions(memory_plan="fp8"),
                    OutputTarget(tmp_path / "window", dated=False))  # fmt: skip
    with qtbot.waitSignal(window.controller.image_finished, timeout=180_000) as finished:
        window.controller.submit(job)
    result = finished.args[0]
    qtbot.waitUntil(lambda: window.shown_result is result)
    clipboard = QApplication.clipboard()
    clipboard.clear()
    window.activateWindow()
    window.canvas.setFocus()
    qtbot.keyClick(
        window.canvas, Qt.Key.Key_P, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    )
    from_window = clipboard.text()

    qtbot.waitUntil(
        lambda: window.gallery.panel is not None and window.gallery.panel.db.count() == 1, timeout=20_000
    )
    panel = window.gallery.panel
    qtbot.waitUntil(lambda: len(panel.shown_records()) == 1)
    clipboard.clear()
    menu = build_context_menu(panel, panel, panel.shown_records())
    next(a for a in menu.actions() if a.text() == "Copy Parameters").trigger()
    from_gallery = clipboard.text()

    assert (
        from_window == from_gallery == read_png_text(result.path)["parameters"] == infotext_of(result.params)
    )
    assert "FP8 weight: Enable" in from_window and "Negative prompt: dust" in from_window

"""The download dialog against the local fake Hub (tests/downloads/fake_hub.py on 127.0.0.1, private HF home):
a full download handed to the window, a gated refusal, and a cancel that the next attempt resumes."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton

from app.downloads import hub
from app.downloads.layout import default_models_dir, find_partials
from app.downloads.progress import Phase
from app.ui.downloads import dialog as download_dialog
from app.ui.downloads import worker as download_worker
from app.ui.downloads.dialog import RESUME_TEXT
from tests.downloads.conftest import GOOD_TOKEN, MEDIUM_REPO, NO_LICENCE_TOKEN
from tests.ui.conftest import wait_until_ready

T5 = "text_encoders/t5xxl_fp16.safetensors"
MEDIUM_PAGE = f"https://huggingface.co/{MEDIUM_REPO}"
TIMEOUT_MS = 60_000  # the first download imports torch for the model-set check


def _medium_folder() -> Path:
    return default_models_dir() / "stable-diffusion-3.5-medium"


def _assert_no_model_set(dest: Path) -> None:
    from app.inference.api.errors import InferenceError
    from app.inference.checkpoints.model_set import locate_model_set

    assert not list(dest.glob("*.safetensors"))
    with pytest.raises(InferenceError):
        locate_model_set(dest)


def test_full_download_from_the_first_run_panel_is_handed_to_the_window(qtbot, make_window, fake_hub):
    from app.inference.checkpoints.model_set import locate_model_set

    window = make_window(model_path=None)
    wait_until_ready(qtbot, window)
    assert window.stack.currentWidget() is window.first_run
    button = next(
        b for b in window.first_run.findChildren(QPushButton) if b.text() == "Download SD3.5 Medium…"
    )
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    dialog = window.models.download_dialog
    assert dialog is not None and dialog.isVisible()
    assert dialog.variant_combo.currentData() == "medium"
    assert dialog.token_edit.placeholderText() == "hf_…"  # nothing stored yet
    assert MEDIUM_PAGE in dialog.licence_label.text()
    dest = _medium_folder()
    assert str(dest) in dialog.destination_label.text()
    plan = dialog.refresh_plan()
    tree = dialog.files_tree
    rows = [tree.topLevelItem(i) for i in range(tree.topLevelItemCount())]
    shown = [r.text(1) for r in rows if r.childCount() == 0]
    shown += [r.child(i).text(1) for r in rows for i in range(r.childCount())]
    assert sorted(shown) == sorted(f.local_path for f in plan.files)
    assert rows[0].text(1) == "sd3.5_medium.safetensors" and rows[0].text(2).startswith("≈")
    assert dialog.total_label.text().startswith("Total: about ")
    assert fake_hub.state.log == []  # nothing touched the network before Download

    dialog.token_edit.setText(GOOD_TOKEN)
    with qtbot.waitSignal(dialog.model_downloaded, timeout=TIMEOUT_MS) as handed:
        qtbot.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)
    assert handed.args == [dest]
    assert locate_model_set(dest).variant == "medium"
    qtbot.waitUntil(
        lambda: window.picker.selected is not None and window.picker.selected.path == dest, timeout=15_000
    )
    assert window.stack.currentWidget() is window.canvas
    assert dest in window.remembered_paths()
    assert not dialog.isVisible()
    assert hub.current_token() == GOOD_TOKEN  # kept in huggingface_hub's token store
    assert dialog.token_edit.text() == ""
    dialog.show()
    assert dialog.token_edit.placeholderText() == "a token is stored"
    assert dialog.files_tree.topLevelItem(0).text(3) == "✓ already here"
    dialog.hide()


def test_a_refused_licence_is_explained_with_a_button_to_the_page(qtbot, dialog, monkeypatch):
    opened: list[str] = []

    class _Desktop:
        @staticmethod
        def openUrl(url):  # Qt's name
            opened.append(url.toString())

    monkeypatch.setattr(download_dialog, "QDesktopServices", _Desktop)
    dialog.token_edit.setText(NO_LICENCE_TOKEN)  # a valid token whose user has not accepted the licence
    qtbot.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.licence_button.isVisible(), timeout=TIMEOUT_MS)

    text = dialog.status_label.text()
    assert "accept the licence" in text and MEDIUM_PAGE in text
    assert NO_LICENCE_TOKEN not in text
    assert not dialog.is_running() and dialog.download_button.isEnabled()
    qtbot.mouseClick(dialog.licence_button, Qt.MouseButton.LeftButton)
    assert opened == [MEDIUM_PAGE]
    _assert_no_model_set(_medium_folder())


def test_cancel_mid_download_keeps_partial_data_and_the_next_attempt_resumes(qtbot, dialog, monkeypatch):
    """A slow network stands in for the fake Hub: the first T5 bytes wait until the user presses Cancel."""
    real_download = download_worker.download_model_set
    held = threading.Event()

    def slow_download(plan, *, token, on_progress, cancel):
        def on_progress_slowly(p):
            on_progress(p)
            if p.phase is Phase.DOWNLOADING and p.file_name == T5 and p.file_done > 0 and not held.is_set():
                held.set()
                cancel.wait(10)  # the transfer stalls until Cancel sets the event on the UI thread

        return real_download(plan, token=token, on_progress=on_progress_slowly, cancel=cancel)

    monkeypatch.setattr(download_worker, "download_model_set", slow_download)
    handed: list[Path] = []
    dialog.model_downloaded.connect(handed.append)
    dialog.token_edit.setText(GOOD_TOKEN)
    qtbot.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: T5 in dialog.status_label.text(), timeout=TIMEOUT_MS)
    assert dialog.close_button.text() == "Cancel" and not dialog.download_button.isEnabled()
    assert dialog.progress_bar.isVisible()

    qtbot.mouseClick(dialog.close_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.status_label.text() == RESUME_TEXT, timeout=10_000)
    assert "resumes" in RESUME_TEXT
    assert not dialog.is_running() and dialog.isVisible() and handed == []
    dest = _medium_folder()
    _assert_no_model_set(dest)
    assert find_partials(dest, T5)
    assert "so far" in dialog.total_label.text() or "already here" in dialog.total_label.text()

    with qtbot.waitSignal(dialog.model_downloaded, timeout=TIMEOUT_MS):
        qtbot.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)
    assert handed == [dest] and not find_partials(dest, T5)


def test_closing_the_dialog_while_downloading_cancels_first(qtbot, dialog, monkeypatch):
    real_download = download_worker.download_model_set

    def stalled_download(plan, *, token, on_progress, cancel):
        def on_progress_stalled(p):
            on_progress(p)
            if p.phase is Phase.DOWNLOADING and p.file_done > 0:
                cancel.wait(10)

        return real_download(plan, token=token, on_progress=on_progress_stalled, cancel=cancel)

    monkeypatch.setattr(download_worker, "download_model_set", stalled_download)
    dialog.token_edit.setText(GOOD_TOKEN)
    qtbot.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "[" in dialog.status_label.text(), timeout=TIMEOUT_MS)
    dialog.close()
    assert dialog.isVisible()  # stays until the worker has stopped
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=10_000)
    assert not dialog.is_running()

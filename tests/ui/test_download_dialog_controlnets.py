"""The download dialog offers the official SD3.5 Large ControlNets with their sizes for Large sets (not for Medium);
ticked with real clicks they are downloaded from the local fake Hub into the set's folder, where the window's
ControlNet list finds them; with the set already here only the ControlNets are left to fetch."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt

from app.downloads.catalog import CONTROLNET_REPO
from app.downloads.layout import default_models_dir
from app.ui.downloads.dialog import DownloadDialog
from app.ui.downloads.plan_view import CHOOSE_A_CONTROLNET
from app.ui.form.addons import discover_controlnets
from tests.downloads.conftest import GOOD_TOKEN, large_hub_state

CANNY = "controlnets/sd3.5_large_controlnet_canny.safetensors"
DEPTH = "controlnets/sd3.5_large_controlnet_depth.safetensors"
TIMEOUT_MS = 60_000  # the first download imports torch for the model-set check


@pytest.fixture
def hub_state(served_large_repos):  # the Large repositories instead of Medium's
    return large_hub_state(served_large_repos)


def _rows(dialog: DownloadDialog) -> dict[str, tuple[str, str, str]]:
    """File → (what, size, on this computer) for the top-level rows of the files list."""
    tree = dialog.files_tree
    items = [tree.topLevelItem(i) for i in range(tree.topLevelItemCount())]
    return {i.text(1): (i.text(0), i.text(2), i.text(3)) for i in items}


def _tick(qtbot, dialog: DownloadDialog, kind: str) -> None:
    box = dialog.controlnet_boxes[kind]
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton, pos=QPoint(8, box.height() // 2))  # on the indicator


def test_controlnets_are_offered_for_large_with_sizes_and_download_where_the_list_finds_them(qtbot, dialog):
    assert not dialog.controlnet_choices.isVisible()  # Medium: the ControlNets are for Large only
    dialog.variant_combo.setFocus()
    qtbot.keyClick(dialog.variant_combo, Qt.Key.Key_Up)
    qtbot.keyClick(dialog.variant_combo, Qt.Key.Key_Up)
    assert dialog.variant_combo.currentData() == "large"
    assert dialog.controlnet_choices.isVisible()
    texts = [box.text() for box in dialog.controlnet_boxes.values()]
    assert [t.split(" ")[0] for t in texts] == ["Blur", "Canny", "Depth"]
    assert all(t.endswith("(≈ 8.65 GB)") for t in texts)
    before = dialog.refresh_plan().total_bytes
    assert CANNY not in _rows(dialog)

    _tick(qtbot, dialog, "canny")
    assert dialog.controlnet_boxes["canny"].isChecked()
    assert _rows(dialog)[CANNY] == ("controlnet", "≈ 8.65 GB", "")
    assert dialog.refresh_plan().total_bytes == before + 8_650_000_000
    assert f"https://huggingface.co/{CONTROLNET_REPO}" in dialog.licence_label.text()
    dialog.grab().save("/tmp/cnrest-shot.png")

    dialog.token_edit.setText(GOOD_TOKEN)
    dest = default_models_dir() / "stable-diffusion-3.5-large"
    with qtbot.waitSignal(dialog.model_downloaded, timeout=TIMEOUT_MS) as handed:
        qtbot.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)
    assert handed.args == [dest]
    assert dialog.status_label.text() == f"SD3.5 Large and the canny ControlNet are ready in {dest}."
    listed = discover_controlnets([], defaults=True)  # what the window's ControlNet section shows
    assert [(c.path, c.control_type, c.error) for c in listed] == [(dest / CANNY, "canny", None)]

    # Open again with the set here: ticking Depth leaves only the ControlNet to fetch.
    dialog.show()
    _tick(qtbot, dialog, "depth")
    rows = _rows(dialog)
    assert rows["sd3.5_large.safetensors"][2] == rows[CANNY][2] == "✓ already here"
    assert rows[DEPTH] == ("controlnet", "≈ 8.65 GB", "")
    with qtbot.waitSignal(dialog.model_downloaded, timeout=TIMEOUT_MS):
        qtbot.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)
    listed = discover_controlnets([], defaults=True)
    assert sorted(Path(c.path).name for c in listed) == [
        "sd3.5_large_controlnet_canny.safetensors",
        "sd3.5_large_controlnet_depth.safetensors",
    ]


def test_only_the_controlnets_for_a_large_set_kept_elsewhere(qtbot, dialog):
    dialog.set_variant("large-turbo")
    only = dialog.controlnets_only_check
    qtbot.mouseClick(only, Qt.MouseButton.LeftButton, pos=QPoint(8, only.height() // 2))
    assert only.isChecked()
    assert not dialog.download_button.isEnabled() and dialog.total_label.text() == CHOOSE_A_CONTROLNET
    assert dialog.files_tree.topLevelItemCount() == 0
    assert not dialog.t5_combo.isEnabled()  # no text encoders in this download

    _tick(qtbot, dialog, "blur")
    blur = "controlnets/sd3.5_large_controlnet_blur.safetensors"
    assert _rows(dialog) == {blur: ("controlnet", "≈ 8.65 GB", "")}
    assert dialog.download_button.isEnabled()
    assert dialog.total_label.text() == "Total: about 8.65 GB"
    licence = dialog.licence_label.text()
    assert (
        f"https://huggingface.co/{CONTROLNET_REPO}" in licence
        and "stable-diffusion-3.5-large-turbo" not in licence
    )
    dialog.grab().save("/tmp/cnrest-shot-only.png")

    models: list[Path] = []
    dialog.model_downloaded.connect(models.append)
    dialog.token_edit.setText(GOOD_TOKEN)
    with qtbot.waitSignal(dialog.controlnets_downloaded, timeout=TIMEOUT_MS) as arrived:
        qtbot.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)
    dest = default_models_dir() / "stable-diffusion-3.5-large-turbo"
    assert arrived.args == [(dest / blur,)]
    assert models == []  # no model set arrived: the window is not handed a folder to use as one
    assert dialog.status_label.text() == f"The blur ControlNet is ready in {dest}."
    assert [(c.path, c.control_type) for c in discover_controlnets([], defaults=True)] == [
        (dest / blur, "blur")
    ]

"""Large Turbo reuses the ControlNets already downloaded for Large (and the other way round): the plan says so and
counts nothing to fetch for them, the download links the file instead of fetching it (no data request to the fake
Hub), and a file there whose checksum differs from the Hub's is not used."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from app.downloads.catalog import CONTROLNET_REPO, controlnet_file
from app.downloads.downloader import download_model_set
from app.downloads.plan import build_plan
from app.downloads.progress import Phase
from app.ui.downloads.plan_view import disk_text
from tests.downloads.conftest import GOOD_TOKEN, large_hub_state
from tests.downloads.fake_hub import FakeHubState

BLUR = "controlnets/sd3.5_large_controlnet_blur.safetensors"
CANNY = "controlnets/sd3.5_large_controlnet_canny.safetensors"


@pytest.fixture(autouse=True)
def _private_models_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # the app's own models folder is searched too


@pytest.fixture
def hub_state(served_large_repos) -> FakeHubState:  # the Large repositories instead of Medium's
    return large_hub_state(served_large_repos)


def _blob(data: bytes) -> str:
    return f"/blobs/{hashlib.sha256(data).hexdigest()}"


def test_turbo_links_the_controlnet_large_already_has_and_fetches_only_the_new_one(
    fake_hub, served_large_repos, tmp_path
):
    models = tmp_path / "models"
    large, turbo = models / "stable-diffusion-3.5-large", models / "stable-diffusion-3.5-large-turbo"
    download_model_set(build_plan("large", "fp16", large, ("blur",), model_set=False), token=GOOD_TOKEN)
    assert (large / BLUR).is_file()
    fake_hub.state.log.clear()

    plan = build_plan("large-turbo", "fp16", turbo, ("blur", "canny"), model_set=False)
    blur_row, canny_row = plan.files
    assert blur_row.elsewhere == large / BLUR and blur_row.remaining == 0
    assert disk_text(blur_row) == "✓ in stable-diffusion-3.5-large (linked)"
    assert canny_row.elsewhere is None and plan.remaining_bytes == canny_row.remaining == 8_650_000_000

    seen = []
    result = download_model_set(plan, token=GOOD_TOKEN, on_progress=seen.append)
    served = served_large_repos[CONTROLNET_REPO]
    size = len(served[controlnet_file("blur").filename])
    checked = [p for p in seen if p.phase is Phase.VERIFYING and p.file_name == BLUR]
    assert checked and (checked[-1].file_index, checked[-1].file_done, checked[-1].file_total) == (
        1,
        size,
        size,
    )
    assert [r.path for r in fake_hub.requests("cdn", "GET")] == [
        _blob(served[controlnet_file("canny").filename])
    ]
    assert result.fetched_files == 1
    assert (turbo / BLUR).read_bytes() == served[controlnet_file("blur").filename]
    assert os.path.samefile(turbo / BLUR, large / BLUR)  # one copy on disk


def test_a_controlnet_that_differs_from_the_hubs_is_downloaded_not_linked(
    fake_hub, served_large_repos, tmp_path
):
    models = tmp_path / "models"
    large, turbo = models / "stable-diffusion-3.5-large", models / "stable-diffusion-3.5-large-turbo"
    served = served_large_repos[CONTROLNET_REPO][controlnet_file("blur").filename]
    damaged = bytearray(served)
    damaged[-1] ^= 0xFF  # same size, other bytes
    (large / BLUR).parent.mkdir(parents=True)
    (large / BLUR).write_bytes(bytes(damaged))

    plan = build_plan("large-turbo", "fp16", turbo, ("blur",), model_set=False)
    assert plan.files[0].elsewhere == large / BLUR  # the plan can only see that a file is there
    download_model_set(plan, token=GOOD_TOKEN)
    assert [r.path for r in fake_hub.requests("cdn", "GET")] == [_blob(served)]
    assert (turbo / BLUR).read_bytes() == served and not os.path.samefile(turbo / BLUR, large / BLUR)
    assert Path(large / BLUR).read_bytes() == bytes(damaged)  # the other set's file is left alone


def test_where_no_link_can_be_made_the_controlnet_is_downloaded(
    fake_hub, served_large_repos, tmp_path, monkeypatch
):
    models = tmp_path / "models"
    large, turbo = models / "stable-diffusion-3.5-large", models / "stable-diffusion-3.5-large-turbo"
    served = served_large_repos[CONTROLNET_REPO][controlnet_file("blur").filename]
    (large / BLUR).parent.mkdir(parents=True)
    (large / BLUR).write_bytes(served)

    def no_links(_src, _dst):
        raise OSError(18, "Invalid cross-device link")  # EXDEV: the other set is on another disk

    monkeypatch.setattr(os, "link", no_links)
    result = download_model_set(
        build_plan("large-turbo", "fp16", turbo, ("blur",), model_set=False), token=GOOD_TOKEN
    )
    assert result.fetched_files == 1 and [r.path for r in fake_hub.requests("cdn", "GET")] == [_blob(served)]
    assert (turbo / BLUR).read_bytes() == served


def test_the_download_dialog_shows_the_linked_controlnet_and_nothing_to_fetch(qtbot, tmp_path):
    from PySide6.QtCore import QPoint, Qt

    from app.ui.downloads.dialog import DownloadDialog

    models = tmp_path / "models"
    large = models / "stable-diffusion-3.5-large"
    (large / BLUR).parent.mkdir(parents=True)
    (large / BLUR).write_bytes(b"a ControlNet downloaded for Large")
    dialog = DownloadDialog(None, "large-turbo")
    qtbot.addWidget(dialog)
    dialog.show()
    dialog.set_save_in(models)
    for box in (dialog.controlnets_only_check, dialog.controlnet_boxes["blur"]):
        qtbot.mouseClick(box, Qt.MouseButton.LeftButton, pos=QPoint(8, box.height() // 2))
    row = dialog.files_tree.topLevelItem(0)
    assert (row.text(1), row.text(3)) == (BLUR, "✓ in stable-diffusion-3.5-large (linked)")
    assert dialog.total_label.text().endswith("already here, 0 B to go")
    dialog.grab().save("/tmp/cnfollow-shot-reuse.png")
    dialog.shutdown()

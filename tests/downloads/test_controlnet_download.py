"""The official SD3.5 Large ControlNets as optional items of a Large download, against the local fake Hub: the plan,
a download the ControlNet list then finds, the ControlNets alone once the set is here, and their own licence."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from app.downloads.catalog import CONTROLNET_REPO, controlnet_file
from app.downloads.downloader import download_model_set
from app.downloads.errors import AccessDeniedError
from app.downloads.plan import build_plan
from app.inference.checkpoints.controlnet_discovery import find_controlnets
from tests.downloads.conftest import (
    GOOD_TOKEN,
    LARGE_REPO,
    MODEL_ONLY_TOKEN,
    large_hub_state,
)
from tests.downloads.fake_hub import FakeHubState

CANNY = "controlnets/sd3.5_large_controlnet_canny.safetensors"
DEPTH = "controlnets/sd3.5_large_controlnet_depth.safetensors"


@pytest.fixture
def hub_state(served_large_repos) -> FakeHubState:  # the Large repositories instead of Medium's
    return large_hub_state(served_large_repos)


def _in_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The app's own models folder, private to the test, and the Large set's folder in it."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return tmp_path / "data" / "sd35-studio" / "models" / "stable-diffusion-3.5-large"


def test_plan_offers_the_three_controlnets_after_the_checkpoint_of_large_sets_only(tmp_path):
    plan = build_plan("large-turbo", "fp8", tmp_path / "set", ("depth", "canny", "depth"))
    paths = [f.local_path for f in plan.files]
    assert paths[-3:] == ["sd3.5_large_turbo.safetensors", DEPTH, CANNY]  # the model is usable first
    assert plan.controlnets == ("depth", "canny")
    canny = plan.files[-1]
    assert canny.remote.repo_id == CONTROLNET_REPO
    assert canny.remote.filename == "sd3.5_large_controlnet_canny.safetensors"
    assert canny.size == 8_650_000_000 and canny.remote.gated and canny.remote.role == "controlnet"
    without = build_plan("large-turbo", "fp8", tmp_path / "set")
    assert plan.total_bytes - without.total_bytes == 2 * 8_650_000_000
    assert [f.local_path for f in build_plan("large", controlnets=("blur",)).files][-1] == (
        "controlnets/sd3.5_large_controlnet_blur.safetensors"
    )
    with pytest.raises(ValueError, match="Large and Large Turbo only"):
        build_plan("medium", "fp16", tmp_path / "m", ("canny",))
    with pytest.raises(ValueError, match="unknown ControlNet"):
        controlnet_file("openpose")


def test_a_large_download_with_a_controlnet_is_found_by_the_controlnet_list(
    fake_hub, served_large_repos, tmp_path, monkeypatch
):
    from app.inference.checkpoints.model_set import locate_model_set

    dest = _in_downloads(tmp_path, monkeypatch)
    plan = build_plan("large", "fp16", dest, ("canny",))
    download_model_set(plan, token=GOOD_TOKEN)

    assert (dest / CANNY).read_bytes() == served_large_repos[CONTROLNET_REPO][
        controlnet_file("canny").filename
    ]
    assert not (dest / DEPTH).exists()
    assert locate_model_set(dest).variant == "large"  # the ControlNet beside it does not confuse the set
    found = find_controlnets([], env=dict(os.environ), home=tmp_path / "home")
    assert [(f.path, f.control_type, f.source, f.usable) for f in found] == [
        (dest / CANNY, "canny", "download", True)
    ]


def test_with_the_set_already_here_only_the_chosen_controlnets_are_fetched(
    fake_hub, served_large_repos, tmp_path, monkeypatch
):
    dest = _in_downloads(tmp_path, monkeypatch)
    download_model_set(build_plan("large", "fp16", dest), token=GOOD_TOKEN)
    fake_hub.state.log.clear()

    plan = build_plan("large", "fp16", dest, ("depth",))
    # (the fake repository lacks the optional tokenizer.json: it is asked for again and skipped again)
    missing = [f for f in plan.files if not f.complete and not f.remote.optional]
    assert [(f.local_path, f.remaining) for f in missing] == [(DEPTH, 8_650_000_000)]
    result = download_model_set(plan, token=GOOD_TOKEN)

    assert result.fetched_files == 1
    depth = served_large_repos[CONTROLNET_REPO][controlnet_file("depth").filename]
    assert [r.path for r in fake_hub.requests("cdn", "GET")] == [
        f"/blobs/{hashlib.sha256(depth).hexdigest()}"
    ]
    assert (dest / DEPTH).read_bytes() == depth
    found = find_controlnets([], env=dict(os.environ), home=tmp_path / "home")
    assert [(f.path.name, f.control_type) for f in found] == [
        ("sd3.5_large_controlnet_depth.safetensors", "depth")
    ]


def test_the_controlnets_licence_is_asked_for_on_its_own_page(fake_hub, tmp_path, monkeypatch):
    dest = _in_downloads(tmp_path, monkeypatch)
    with pytest.raises(AccessDeniedError) as refused:
        download_model_set(build_plan("large", "fp16", dest, ("blur",)), token=MODEL_ONLY_TOKEN)
    assert refused.value.page_url == f"https://huggingface.co/{CONTROLNET_REPO}"
    assert CONTROLNET_REPO in str(refused.value) and LARGE_REPO not in str(refused.value)
    assert not (dest / "controlnets").exists()
    assert find_controlnets([], env=dict(os.environ), home=tmp_path / "home") == []


def test_the_controlnets_alone_for_a_large_set_kept_elsewhere(
    fake_hub, served_large_repos, tmp_path, monkeypatch
):
    dest = _in_downloads(tmp_path, monkeypatch)
    plan = build_plan("large", "fp16", dest, ("blur",), model_set=False)
    assert [f.local_path for f in plan.files] == ["controlnets/sd3.5_large_controlnet_blur.safetensors"]
    assert not plan.has_model_set and plan.total_bytes == 8_650_000_000
    result = download_model_set(plan, token=GOOD_TOKEN)  # no model set here: none is asked for or checked

    blur = served_large_repos[CONTROLNET_REPO][controlnet_file("blur").filename]
    assert result.model_name == "" and result.fetched_files == 1
    assert [r.path for r in fake_hub.requests("cdn", "GET")] == [f"/blobs/{hashlib.sha256(blur).hexdigest()}"]
    assert not any(LARGE_REPO in r.path for r in fake_hub.requests("hub"))
    found = find_controlnets([], env=dict(os.environ), home=tmp_path / "home")
    assert [(f.path, f.control_type) for f in found] == [(dest / plan.files[0].local_path, "blur")]
    with pytest.raises(ValueError, match="nothing to download"):
        build_plan("large", "fp16", dest, (), model_set=False)

"""Fixtures for the download tests: a tiny SD3.5 Medium repository and TAESD3 repository served on 127.0.0.1, and a
Hugging Face environment (home, cache, token store, endpoint) private to each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import constants

from app.downloads.catalog import TAESD3_FILE, VARIANT_SOURCES
from tests.downloads.fake_hub import FakeHub, FakeHubState, repo_files

MEDIUM_REPO = VARIANT_SOURCES["medium"].repo_id
GOOD_TOKEN = "hf_test_accepted_licence"
NO_LICENCE_TOKEN = "hf_test_no_licence"
TEST_CHUNK = 64 * 1024  # huggingface_hub writes 10 MiB chunks; small ones let tiny files be cut mid-way

_HF_ENV = (
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_HUB_OFFLINE",
    "HF_ENDPOINT",
    "HF_TOKEN_PATH",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


def _taesd3_diffusers_bytes() -> bytes:
    """A TAESD3 file in the layout of `madebyollin/taesd3` (diffusers AutoencoderTiny): decoder + an encoder key."""
    import torch
    from safetensors.torch import save

    from app.inference.networks.taesd import build_decoder

    torch.manual_seed(0)
    decoder = build_decoder()
    state = {
        f"decoder.layers.{int(k.split('.', 1)[0]) - 1}.{k.split('.', 1)[1]}": v
        for k, v in decoder.state_dict().items()
    }
    state["encoder.layers.0.weight"] = torch.zeros(64, 3, 3, 3)
    return save({k: v.to(torch.float16).contiguous() for k, v in state.items()})


@pytest.fixture(scope="session")
def served_repos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, bytes]]:
    from tests.factory.snapshot import write_snapshot

    folder = write_snapshot(tmp_path_factory.mktemp("medium-repo"), "medium")
    medium = repo_files(folder)
    medium["README.md"] = b"---\nlicense: other\n---\n"
    return {MEDIUM_REPO: medium, TAESD3_FILE.repo_id: {TAESD3_FILE.filename: _taesd3_diffusers_bytes()}}


@pytest.fixture
def hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HF_HOME, cache and token store; no token, proxy or offline switch from the developer's shell."""
    home = tmp_path / "hf-home"
    for name in _HF_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    # huggingface_hub reads these once, at import: point its module constants at the private home too.
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(home / ".agent_harnesses.json"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", TEST_CHUNK)
    return home


@pytest.fixture
def hub_state(served_repos: dict[str, dict[str, bytes]]) -> FakeHubState:
    return FakeHubState(
        repos={repo: dict(files) for repo, files in served_repos.items()},
        gated={MEDIUM_REPO: {GOOD_TOKEN}},
        tokens={GOOD_TOKEN: "alice", NO_LICENCE_TOKEN: "bob"},
    )


@pytest.fixture
def fake_hub(hub_state: FakeHubState, hf_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub(hub_state, lifetime_s=120) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        yield hub


@pytest.fixture
def served_medium(served_repos: dict[str, dict[str, bytes]]) -> dict[str, bytes]:
    return served_repos[MEDIUM_REPO]


# ------------------------------------------------------------------------------------- Large + ControlNets

LARGE_REPO = VARIANT_SOURCES["large"].repo_id
MODEL_ONLY_TOKEN = "hf_test_model_licence_only"  # accepted the Large licence, not the ControlNets'


@pytest.fixture(scope="session")
def served_large_repos(
    tmp_path_factory: pytest.TempPathFactory, served_repos: dict[str, dict[str, bytes]]
) -> dict[str, dict[str, bytes]]:
    """A tiny Large repository, the three tiny ControlNets in the official key layout, and TAESD3."""
    from app.downloads.catalog import CONTROLNET_REPO, CONTROLNET_TYPES, controlnet_file
    from tests.factory.controlnet_model import write_controlnet
    from tests.factory.snapshot import write_snapshot

    large = repo_files(write_snapshot(tmp_path_factory.mktemp("large-repo"), "large"))
    folder = tmp_path_factory.mktemp("controlnets-repo")
    controlnets = {}
    for seed, kind in enumerate(CONTROLNET_TYPES):
        name = controlnet_file(kind).filename
        controlnets[name] = write_controlnet(
            folder / name, control_type=kind, blocks=1, seed=seed
        ).read_bytes()
    taesd = {TAESD3_FILE.repo_id: served_repos[TAESD3_FILE.repo_id]}
    return {LARGE_REPO: large, CONTROLNET_REPO: controlnets, **taesd}


def large_hub_state(served_large_repos: dict[str, dict[str, bytes]]) -> FakeHubState:
    """Both Large repositories gated; GOOD_TOKEN accepted both licences, MODEL_ONLY_TOKEN only the model's."""
    from app.downloads.catalog import CONTROLNET_REPO

    return FakeHubState(
        repos={repo: dict(files) for repo, files in served_large_repos.items()},
        gated={LARGE_REPO: {GOOD_TOKEN, MODEL_ONLY_TOKEN}, CONTROLNET_REPO: {GOOD_TOKEN}},
        tokens={GOOD_TOKEN: "alice", MODEL_ONLY_TOKEN: "carol"},
    )

"""Matching a job's LoRA / ControlNet files to a server's names (app/remote/server_files.py), without a server:
by name, the top-level file first, a subfolder's when that is all there is, and by hash where the metadata says."""

from pathlib import Path

import pytest

from app.remote.errors import ServerMissing
from app.remote.server_files import match_file, tensor_hash_of

URL = "http://gpu-box:8188"


def metadata_of(table: dict):
    return lambda folder, name: table.get((folder, name))


def test_a_file_is_found_by_its_name_in_any_subfolder_top_level_first():
    listed = ("sd3/style.safetensors", "other.safetensors", "style.safetensors")
    assert match_file("LoRA", "loras", Path("/me/style.safetensors"), None, listed, metadata_of({}), URL) == \
        "style.safetensors"  # fmt: skip
    assert match_file("LoRA", "loras", Path("C:/x/Style.safetensors"), None, listed[:2], metadata_of({}), URL) == \
        "sd3/style.safetensors"  # fmt: skip


def test_the_server_file_whose_hash_is_ours_wins_over_an_earlier_one_by_name():
    listed = ("style.safetensors", "sd3/style.safetensors")
    table = {("loras", "style.safetensors"): {"sshs_model_hash": "ab" * 32},
             ("loras", "sd3/style.safetensors"): {"modelspec.hash_sha256": "0x" + "cd" * 32}}  # fmt: skip
    name = match_file(
        "LoRA", "loras", Path("style.safetensors"), "cdcdcdcdcdcd", listed, metadata_of(table), URL
    )
    assert name == "sd3/style.safetensors"
    with pytest.raises(
        ServerMissing, match=r"has a LoRA named style\.safetensors, but it is a different file"
    ):
        match_file("LoRA", "loras", Path("style.safetensors"), "ef" * 6, listed, metadata_of(table), URL)


def test_a_missing_file_is_named_with_what_the_server_has():
    with pytest.raises(ServerMissing) as info:
        match_file("ControlNet", "controlnet", Path("/m/canny.safetensors"), None, ("depth.safetensors",),
                   metadata_of({}), URL)  # fmt: skip
    assert str(info.value).startswith(f"{URL} has no ControlNet canny.safetensors (its ControlNets: depth")
    assert "models/controlnet" in str(info.value)


def test_only_a_hash_a_trainer_wrote_counts():
    assert tensor_hash_of({"sshs_model_hash": "ABCDEF123456789"}) == "abcdef123456789"
    assert tensor_hash_of({"sshs_model_hash": "short"}) is None and tensor_hash_of(None) is None
    assert tensor_hash_of({"ss_output_name": "x"}) is None

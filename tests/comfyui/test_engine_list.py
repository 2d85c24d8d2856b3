"""The user's list of ComfyUI servers and their tokens (app/remote/engine_list.py): round trip, the 0600 token
file, and the token never in the list file, a remote job's PNG or the log."""

import json
import logging
import stat

import pytest
from PIL import Image

from app.inference.api.events import ImageFinished
from app.metadata.image_file import finished_image_params, write_image
from app.remote.engine_list import EngineList, TokenStore, read_token_file
from app.remote.session import RemoteSession
from tests.comfyui.test_remote_session import tiny_request

TOKEN = "tok-5ecret-Zq81"


def file_store(folder):
    return EngineList(folder, TokenStore(folder, use_keyring=False))


def test_the_list_round_trips_in_priority_order(tmp_path):
    engines = file_store(tmp_path)
    engines.add("gpu-box:8188", "gpu-box")
    engines.add("https://cloud.example.com/", "cloud", token=TOKEN)
    engines.add("http://127.0.0.1:9")
    engines.update("http://127.0.0.1:9", enabled=False, partial_text_encoders=True)
    assert engines.move("https://cloud.example.com", -1) == 0

    again = file_store(tmp_path)
    assert [(e.url, e.label, e.enabled) for e in again.entries] == [
        ("https://cloud.example.com", "cloud", True),
        ("http://gpu-box:8188", "gpu-box", True),
        ("http://127.0.0.1:9", "127.0.0.1:9", False),
    ]
    assert again.entries[2].partial_text_encoders and not again.entries[0].partial_text_encoders
    assert [e.url for e in again.enabled()] == ["https://cloud.example.com", "http://gpu-box:8188"]
    assert again.headers_for("https://cloud.example.com") == {"Authorization": f"Bearer {TOKEN}"}
    assert again.headers_for("http://gpu-box:8188") == {}

    again.remove("https://cloud.example.com")
    assert file_store(tmp_path).headers_for("https://cloud.example.com") == {}
    assert [e.url for e in file_store(tmp_path).entries] == ["http://gpu-box:8188", "http://127.0.0.1:9"]


def test_bad_addresses_and_tokens_are_refused_with_a_sentence(tmp_path):
    engines = file_store(tmp_path)
    with pytest.raises(ValueError, match="is not a server address"):
        engines.add("ftp://x")
    engines.add("http://a:1")
    with pytest.raises(ValueError, match="already in the list"):
        engines.add("a:1/")
    with pytest.raises(ValueError, match="printable ASCII"):
        engines.add("http://b:2", token="line\nbreak")
    assert [e.url for e in engines.entries] == ["http://a:1"]  # nothing half-added
    (tmp_path / "engines.json").write_text("{not json")
    assert file_store(tmp_path).entries == []  # a damaged list: none, and the window still opens


def test_the_token_file_is_0600_and_the_token_never_in_the_list(tmp_path):
    engines = file_store(tmp_path)
    engines.add("http://gpu-box:8188", "gpu-box", token=TOKEN)
    token_file = tmp_path / "engine-tokens.json"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert TOKEN not in (tmp_path / "engines.json").read_text()
    assert TOKEN in token_file.read_text()
    engines.set_token("http://gpu-box:8188", "other-token")
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600  # rewritten, still private
    assert TOKEN not in repr(engines) + repr(engines.tokens)


def test_a_token_file_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "token.txt"
    path.write_text(f"{TOKEN}\n")
    path.chmod(0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        read_token_file(path)
    path.chmod(0o600)
    assert read_token_file(path) == TOKEN


@pytest.mark.slow
def test_a_remote_jobs_png_and_log_never_hold_the_token(comfyui_tiny, tmp_path, caplog):
    server, checkpoint, _ = comfyui_tiny
    engines = file_store(tmp_path / "data")
    engines.add(server.url, "tiny", token=TOKEN)
    caplog.set_level(logging.DEBUG)
    session = RemoteSession(
        server.url, engines.headers_for(server.url), preview="off", partial_text_encoders=True
    )
    try:
        events = list(session.run(checkpoint, tiny_request(seed=11)))
    finally:
        session.close()
    image = next(e for e in events if isinstance(e, ImageFinished))
    path = write_image(tmp_path / "remote.png", image.pixels, finished_image_params(image), image.comfy_files)
    assert TOKEN.encode() not in path.read_bytes()
    chunks = Image.open(path).text
    assert json.loads(chunks["prompt"]) and "Seed: 11" in chunks["parameters"]  # the metadata is there
    assert TOKEN not in caplog.text and TOKEN not in repr(session) + repr(session.http)

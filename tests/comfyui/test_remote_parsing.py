"""What the remote engine accepts from a server, without a server: addresses, WebSocket frames, the node
catalogue in both of ComfyUI's COMBO spellings, the preview method from the server's command line."""

import json
import struct

import pytest

from app.inference.api.request import GenerationRequest
from app.remote.capabilities import ServerInfo, combo_options, preview_method_of
from app.remote.errors import ProtocolError
from app.remote.http import normalize_url, websocket_url
from app.remote.limits import parse_json
from app.remote.messages import parse_binary, parse_text


@pytest.mark.parametrize(("text", "url"), [
    ("127.0.0.1:8188", "http://127.0.0.1:8188"),
    ("https://gpu.example.org/comfy/", "https://gpu.example.org/comfy"),
    (" http://[::1]:8188 ", "http://[::1]:8188"),
])  # fmt: skip
def test_server_addresses(text, url):
    assert normalize_url(text) == url


@pytest.mark.parametrize("text", ["ftp://host", "http://", "http://h:99999", "http://h/?x=1", "file:///etc"])
def test_bad_server_addresses(text):
    with pytest.raises(ValueError, match=r"server address|invalid port|no query"):
        normalize_url(text)


def test_websocket_urls_keep_tls():
    assert websocket_url("https://h.org/c", "ab") == "wss://h.org/c/ws?clientId=ab"
    assert websocket_url("http://h:1", "ab") == "ws://h:1/ws?clientId=ab"


def test_preview_frames_of_both_kinds():
    legacy = parse_binary(struct.pack(">II", 1, 1) + b"JPEG")
    assert (legacy.mime, legacy.image, legacy.prompt_id) == ("image/jpeg", b"JPEG", None)
    meta = json.dumps({"node_id": "7", "prompt_id": "p", "image_type": "image/png"}).encode()
    framed = parse_binary(struct.pack(">II", 4, len(meta)) + meta + b"PNG")
    assert (framed.mime, framed.image, framed.prompt_id, framed.node_id) == ("image/png", b"PNG", "p", "7")
    assert parse_binary(struct.pack(">I", 3) + b"\0\0\0\x017text") is None  # a node's progress text: not ours


@pytest.mark.parametrize(("raw", "says"), [
    (b"\0\0", "shorter than its header"),
    (struct.pack(">II", 1, 9) + b"x", "unknown image type 9"),
    (struct.pack(">II", 4, 10**6) + b"{}", "impossible metadata length"),
    (struct.pack(">II", 4, 2) + b"[]", "not an object"),
    (struct.pack(">II", 4, 3) + b"{x}", "not valid JSON"),
])  # fmt: skip
def test_malformed_preview_frames(raw, says):
    with pytest.raises(ProtocolError, match=says):
        parse_binary(raw)


def test_text_messages_and_untrusted_fields():
    m = parse_text('{"type": "progress", "data": {"value": true, "max": "4", "prompt_id": 5}}')
    assert (m.type, m.get("value", int), m.get("max", int), m.get("prompt_id")) == (
        "progress",
        None,
        None,
        None,
    )
    with pytest.raises(ProtocolError, match="without a type"):
        parse_text('{"data": {}}')
    with pytest.raises(ProtocolError, match="nested too deeply"):
        parse_json("[" * 200 + "]" * 200, "answer")
    with pytest.raises(ProtocolError, match="larger than"):
        parse_json(b" " * (9 * 2**20), "answer")


def test_combo_inputs_in_both_spellings():
    info = {"A": {"input": {"required": {"x": [["a.safetensors", 3, "b.safetensors"], {}]}}},
            "B": {"input": {"optional": {"y": ["COMBO", {"options": ["c.safetensors"]}]}}},
            "C": {"input": "nonsense"}}  # fmt: skip
    assert combo_options(info, "A", "x") == ("a.safetensors", "b.safetensors")
    assert combo_options(info, "B", "y") == ("c.safetensors",)
    assert combo_options(info, "C", "z") == () == combo_options(info, "missing", "x")


def test_preview_method_from_the_command_line():
    assert preview_method_of(["main.py", "--preview-method", "taesd"]) == "taesd"
    assert preview_method_of(["main.py", "--preview-method=latent2rgb"]) == "latent2rgb"
    assert preview_method_of(["main.py", "--cpu"]) == "none" == preview_method_of("not a list")


def test_what_a_server_lacks_is_named():
    info = ServerInfo(url="http://s", comfyui_version="0.3.10", devices=(), preview_method="none",
                      nodes=frozenset({"CheckpointLoaderSimple", "KSampler"}), checkpoints=("sd3.5_large.safetensors",),
                      text_encoders=("clip_l.safetensors", "t5xxl_fp8_e4m3fn.safetensors"))  # fmt: skip
    req = GenerationRequest(prompt="x", slg_scale=2.0, slg_layers=(7,), negative_until=0.2).resolved("medium")
    problems = info.problems(req)
    assert "the server has no ModelSamplingSD3 node" in problems
    assert "skip-layer guidance needs the SkipLayerGuidanceSD3 node(s), which this server lacks" in problems
    assert any(p.startswith("the negative-prompt window needs the ConditioningZeroOut") for p in problems)
    assert "the server has no CLIP-G text encoder (clip_g*.safetensors in models/clip)" in problems
    assert not any("T5" in p for p in problems)  # t5xxl_fp8 counts
    assert info.encoder("t5") == "t5xxl_fp8_e4m3fn.safetensors"
    assert not any("CLIP-G" in p for p in info.problems(req, partial_text_encoders=True))

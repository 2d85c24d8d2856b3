"""Metadata anyone can write, read within bounds: deep JSON, long graph chains, decompression bombs, huge
chunks, wrong field types and huge infotexts each give a sentence (MetadataError) or a note, never a traceback,
a hang or a value that fails later."""

from __future__ import annotations

import json
import re
import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import pytest

from app.metadata.limits import MAX_JSON_DEPTH, MAX_TEXT_BYTES, MetadataError
from app.metadata.png_text import PNG_SIGNATURE, read_png_chunks
from app.metadata.recall import read_metadata
from tests.gallery.helpers import A1111_TEXT, comfy_template_prompt, params


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png(path: Path, *chunks: bytes) -> Path:
    """A real 1×1 RGB PNG with the given chunks between its header and its image data."""
    ihdr = _chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
    idat = _chunk(b"IDAT", zlib.compress(b"\0\0\0\0"))
    path.write_bytes(PNG_SIGNATURE + ihdr + b"".join(chunks) + idat + _chunk(b"IEND", b""))
    return path


def text(key: str, value: str) -> bytes:
    return _chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))


def itxt(key: str, value: str, compressed: bool = False) -> bytes:
    body = value.encode("utf-8")
    body = zlib.compress(body, 9) if compressed else body
    return _chunk(b"iTXt", key.encode() + b"\0" + bytes([int(compressed), 0]) + b"\0\0" + body)


def ztxt(key: str, value: str) -> bytes:
    return _chunk(b"zTXt", key.encode() + b"\0\0" + zlib.compress(value.encode("latin-1"), 9))


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    ("key", "what"),
    [("sd35-studio", "The sd35-studio text"), ("prompt", "The ComfyUI prompt graph"),
     ("workflow", "The ComfyUI workflow")],
)  # fmt: skip
def test_deeply_nested_json_is_a_sentence_not_a_recursion_error(tmp_path, key, what):
    path = write_png(tmp_path / "deep.png", itxt(key, DEEP))
    with pytest.raises(MetadataError, match=f"{what} is nested more than {MAX_JSON_DEPTH} levels deep"):
        read_metadata(path)
    # nested less than Python's limit but more than ours: the same sentence
    path = write_png(tmp_path / "deep2.png", itxt(key, '{"a":' * 200 + "1" + "}" * 200))
    with pytest.raises(MetadataError, match="nested more than"):
        read_metadata(path)


def test_a_damaged_json_chunk_falls_back_to_the_infotext_and_says_so(tmp_path):
    path = write_png(tmp_path / "both.png", itxt("sd35-studio", DEEP), text("parameters", A1111_TEXT))
    recalled = read_metadata(path)
    assert recalled.source == "a1111" and recalled.params.seed == 3141592653
    assert any("nested more than" in note for note in recalled.unmapped)


def _chain_workflow(length: int, mode: str) -> dict:
    """KSampler ← `length` Reroute (or bypassed) nodes ← CLIPTextEncode("hello")."""
    nodes = [{"id": 1, "type": "KSampler", "inputs": [{"name": "positive", "type": "CONDITIONING", "link": 1}],
              "widgets_values": [7, "fixed", 20, 4.5, "euler", "normal", 1.0]}]  # fmt: skip
    links = []
    for i in range(length):
        node_id = 2 + i
        node = {"id": node_id, "type": "Reroute", "inputs": [{"name": "", "type": "*", "link": i + 2}],
                "outputs": [{"type": "*"}]}  # fmt: skip
        if mode == "bypass":
            node = {"id": node_id, "type": "SomeFilter", "mode": 4, "outputs": [{"type": "CONDITIONING"}],
                    "inputs": [{"name": "c", "type": "CONDITIONING", "link": i + 2}]}  # fmt: skip
        nodes.append(node)
        links.append([i + 1, node_id, 0, node_id - 1, 0, "CONDITIONING"])
    nodes.append({"id": length + 2, "type": "CLIPTextEncode", "inputs": [], "widgets_values": ["hello"]})
    links.append([length + 1, length + 2, 0, length + 1, 0, "CONDITIONING"])
    return {"nodes": nodes, "links": links}


@pytest.mark.parametrize("mode", ["reroute", "bypass"])
def test_a_5000_node_chain_is_followed_without_recursion(tmp_path, mode):
    workflow = json.dumps(_chain_workflow(5000, mode))
    recalled = read_metadata(write_png(tmp_path / "chain.png", text("workflow", workflow)))
    assert recalled.params.prompt == "hello" and recalled.params.seed == 7


def test_many_inputs_fed_by_one_long_chain_take_linear_time(tmp_path):
    workflow = _chain_workflow(10_000, "reroute")
    for i in range(1000):  # 1000 more nodes all fed through the same 10,000 reroutes
        workflow["nodes"].append({"id": 100_000 + i, "type": "PreviewAny",
                                  "inputs": [{"name": "x", "type": "*", "link": 1}]})  # fmt: skip
    path = write_png(tmp_path / "wide.png", text("workflow", json.dumps(workflow)))
    start = time.perf_counter()
    assert read_metadata(path).params.prompt == "hello"
    assert time.perf_counter() - start < 5  # each link walked once (it was 10 million steps, and recursion)


@pytest.mark.parametrize("make", [ztxt, lambda k, v: itxt(k, v, compressed=True)], ids=["zTXt", "iTXt"])
def test_a_decompression_bomb_is_refused_without_expanding_it(tmp_path, make):
    bomb = make("parameters", "a" * (2 * MAX_TEXT_BYTES))  # 8 MB of text in 8 KB
    path = write_png(tmp_path / "bomb.png", bomb)
    tracemalloc.start()
    with pytest.raises(MetadataError, match="“parameters” text expands to more than 4 MB"):
        read_metadata(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 3 * MAX_TEXT_BYTES


def test_a_text_chunk_over_64_mb_is_refused_unread(tmp_path):
    path = write_png(tmp_path / "huge.png", text("parameters", "a" * (65 << 20)))
    with pytest.raises(MetadataError, match="“parameters” text is 65 MB, more than the 4 MB that are read"):
        read_metadata(path)


def test_an_oversized_foreign_chunk_leaves_the_parameters_readable(tmp_path):
    path = write_png(tmp_path / "mixed.png", text("Comment", "x" * (5 << 20)), text("parameters", A1111_TEXT))
    found = read_png_chunks(path)
    assert "Comment" in found.problems and "parameters" in found.chunks
    assert read_metadata(path).params.seed == 3141592653


def test_damaged_and_cut_off_files_are_sentences(tmp_path):
    good = write_png(tmp_path / "good.png", text("parameters", A1111_TEXT))
    data = bytearray(good.read_bytes())
    data[data.index(b"Steps")] ^= 0x20  # one flipped bit: the checksum no longer matches
    (tmp_path / "flipped.png").write_bytes(data)
    with pytest.raises(MetadataError, match="“parameters” text is damaged"):
        read_metadata(tmp_path / "flipped.png")
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:60])
    with pytest.raises(MetadataError, match="cut off"):
        read_metadata(tmp_path / "cut.png")


def test_wrong_field_types_in_our_json_are_left_out_with_a_note(tmp_path):
    data = params(seed=5).to_dict() | {"steps": [1], "seed": "abc", "cfg": "4", "use_t5": "no",
                                       "slg_layers": [7, "x"]}  # fmt: skip
    recalled = read_metadata(write_png(tmp_path / "types.png", itxt("sd35-studio", json.dumps(data))))
    p = recalled.params
    assert (p.steps, p.seed, p.cfg, p.slg_layers) == (None, None, None, None)
    assert p.use_t5 is True and p.prompt == params().prompt  # the default, and the fields that were right
    notes = " | ".join(recalled.unmapped)
    for field in ("steps: [1] is not a whole number", "seed: 'abc' is not a whole number",
                  "cfg: '4' is not a number", "use_t5: 'no' is not true or false", "slg_layers"):  # fmt: skip
        assert field in notes
    assert p.to_request() is not None  # usable at once: nothing fails later


def test_a_seed_beyond_64_bits_or_not_a_number_is_left_out_in_every_dialect(tmp_path):
    huge = 2**64 + 5
    a1111 = A1111_TEXT.replace("Seed: 3141592653", f"Seed: {huge}")
    recalled = read_metadata(write_png(tmp_path / "a.png", text("parameters", a1111)))
    assert recalled.params.seed is None and any("is not a seed" in n for n in recalled.unmapped)
    ours = params().to_dict() | {"seed": huge}
    recalled = read_metadata(write_png(tmp_path / "o.png", itxt("sd35-studio", json.dumps(ours))))
    assert recalled.params.seed is None and any("seed:" in n for n in recalled.unmapped)
    graph = comfy_template_prompt()
    graph["3"]["inputs"] |= {"seed": huge, "cfg": float("nan")}
    recalled = read_metadata(write_png(tmp_path / "c.png", text("prompt", json.dumps(graph))))
    assert (recalled.params.seed, recalled.params.cfg) == (None, None)
    assert any("cfg: nan is not a finite number" in n for n in recalled.unmapped)
    graph["53"]["inputs"]["width"] = "wide"  # a graph the walk cannot read: a sentence, no ValueError
    with pytest.raises(MetadataError, match="The ComfyUI prompt graph is not understood"):
        read_metadata(write_png(tmp_path / "c2.png", text("prompt", json.dumps(graph))))


def test_a_huge_infotext_is_refused_and_a_long_one_parses_fast(tmp_path):
    pairs = "Steps: 4, " * 5_000_000  # 50 MB
    path = write_png(tmp_path / "huge-infotext.png", text("parameters", "a fox\n" + pairs))
    start = time.perf_counter()
    with pytest.raises(MetadataError, match=re.escape("“parameters” text is 47.7 MB, more than the 4 MB")):
        read_metadata(path)
    assert time.perf_counter() - start < 2
    long = "a fox\n" + "Steps: 4, " * (MAX_TEXT_BYTES // 10 - 1)  # just under the bound
    path = write_png(tmp_path / "long-infotext.png", text("parameters", long))
    tracemalloc.start()
    start = time.perf_counter()
    recalled = read_metadata(path)
    seconds, peak = time.perf_counter() - start, tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert recalled.params.steps == 4 and any("only the first 200 fields" in n for n in recalled.unmapped)
    assert seconds < 2 and peak < 8 * MAX_TEXT_BYTES, (seconds, peak)

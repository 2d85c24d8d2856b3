"""ControlNets in metadata: our JSON records each one (file, hashes, type, strength, range, preprocessing, control
image) and recall restores them, warning about a missing file; A1111's `ControlNet N` text; ComfyUI's
ControlNetLoader + LoadImage + ControlNetApplyAdvanced nodes with ComfyUI's exact inputs (checked against a table
written from ComfyUI's `nodes.py` / `comfy_extras`), a Note where ComfyUI encodes differently, and recall from
that graph."""

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest

import tests.gallery.test_comfy_graph as graph_test
from app.inference.api.control import ControlPreprocess, ControlSpec
from app.inference.api.request import GenerationRequest
from app.metadata.a1111 import infotext_of, parse_infotext
from app.metadata.comfy_graph import ComfyFiles, comfy_chunks
from app.metadata.controlnet_meta import COMFY_NOTE
from app.metadata.params import ImageParams
from app.metadata.recall import (
    Recalled,
    recall_from_prompt_graph,
    recall_from_studio_json,
    recall_from_workflow,
    reproduction_warnings,
)

# Written from ComfyUI's node definitions: nodes.py ControlNetLoader / ControlNetApplyAdvanced (`vae` optional) /
# ImageInvert, comfy_extras/nodes_canny.py Canny, comfy_extras/nodes_post_processing.py ImageBlur.
COMFY_CONTROL = {
    "ControlNetLoader": ({"control_net_name": "COMBO"}, ["CONTROL_NET"], ["control_net_name"]),
    "ControlNetApplyAdvanced": ({"positive": "CONDITIONING", "negative": "CONDITIONING", "control_net": "CONTROL_NET",
                                 "image": "IMAGE", "strength": "FLOAT", "start_percent": "FLOAT",
                                 "end_percent": "FLOAT", "vae": "VAE"}, ["CONDITIONING", "CONDITIONING"],
                                ["strength", "start_percent", "end_percent"]),
    "Canny": ({"image": "IMAGE", "low_threshold": "FLOAT", "high_threshold": "FLOAT"}, ["IMAGE"],
              ["low_threshold", "high_threshold"]),
    "ImageBlur": ({"image": "IMAGE", "blur_radius": "INT", "sigma": "FLOAT"}, ["IMAGE"], ["blur_radius", "sigma"]),
    "ImageInvert": ({"image": "IMAGE"}, ["IMAGE"], []),
}  # fmt: skip
# ComfyUI's ranges for those widgets
RANGES = {"strength": (0.0, 10.0), "low_threshold": (0.01, 0.99), "high_threshold": (0.01, 0.99),
          "blur_radius": (1, 31), "sigma": (0.1, 10.0)}  # fmt: skip


def _check_widget(class_type, name, value):
    if class_type in COMFY_CONTROL and name in RANGES:
        low, high = RANGES[name]
        assert isinstance(value, type(low)) and low <= value <= high, (class_type, name, value)
    else:
        _original_check(class_type, name, value)


_original_check = graph_test.check_widget


@pytest.fixture
def files(tmp_path):
    cnet = tmp_path / "sd3.5_large_controlnet_canny.safetensors"
    cnet.write_bytes(b"weights" * 100)
    depth = tmp_path / "sd3.5_large_controlnet_depth.safetensors"
    depth.write_bytes(b"depth weights")
    image = tmp_path / "edges.png"
    image.write_bytes(b"an image's bytes")
    return cnet, depth, image


def _params(files, **kw):
    cnet, depth, image = files
    specs = (
        ControlSpec(
            cnet, image, 0.8, 0.1, 0.9, "canny", ControlPreprocess("canny", canny_low=80, canny_high=160)
        ),
        ControlSpec(depth, image, 0.5, preprocess=ControlPreprocess("depth", invert=kw.pop("invert", False))),
    )
    request = GenerationRequest(prompt="a house", negative="fog", controlnets=specs, **kw).resolved("large")
    return ImageParams.from_request(request, 7, variant="large", model_name="sd3.5_large")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_json_records_each_controlnet_and_recall_restores_the_set(files):
    cnet, depth, image = files
    p = _params(files)
    data = json.loads(p.to_json())
    first = data["controlnets"][0]
    assert first == {
        "file": str(cnet), "file_name": cnet.name, "sha256": _sha(cnet), "type": "canny", "strength": 0.8,
        "start": 0.1, "end": 0.9,
        "preprocess": {"kind": "canny", "blur_radius": 8.0, "canny_low": 80, "canny_high": 160, "invert": False},
        "image": str(image), "image_sha256": _sha(image),
    }  # fmt: skip
    assert data["controlnets"][1]["sha256"] == _sha(depth) and data["controlnets"][1]["type"] is None
    recalled = recall_from_studio_json(p.to_json())
    assert recalled.params.controlnets == p.controlnets
    assert [s.file_hash for s in recalled.params.controlnets] == [_sha(cnet), _sha(depth)]
    assert recalled.params.to_request().controlnets == p.request.controlnets
    assert reproduction_warnings(recalled, None) == ()


def test_recall_warns_about_a_missing_file_or_a_changed_image(files):
    _, depth, image = files
    text = _params(files).to_json()
    depth.unlink()
    image.write_bytes(b"another picture")
    warnings = reproduction_warnings(recall_from_studio_json(text), None)
    assert any(depth.name in w and "missing" in w for w in warnings)
    assert any(image.name in w and "changed" in w for w in warnings)


def test_a_broken_record_is_a_sentence_not_a_crash(files):
    data = json.loads(_params(files).to_json())
    data["controlnets"][0]["strength"] = "strong"
    with pytest.raises(Exception, match="not understood"):
        recall_from_studio_json(json.dumps(data))


def test_a1111_text_has_one_controlnet_unit_per_controlnet(files):
    cnet, depth, _ = files
    text = infotext_of(_params(files))
    pairs = dict(parse_infotext(text)[2])
    assert pairs["ControlNet 0"] == (
        f"Module: canny, Model: {cnet.stem} [{_sha(cnet)[:8]}], Weight: 0.8, Threshold A: 80, Threshold B: 160, "
        "Guidance Start: 0.1, Guidance End: 0.9, Control Type: canny"
    )
    assert pairs["ControlNet 1"] == (
        f"Module: none, Model: {depth.stem} [{_sha(depth)[:8]}], Weight: 0.5, Guidance Start: 0, Guidance End: 1"
    )
    assert pairs["Version"].startswith("SD3.5 Studio")  # the rest of the line still reads
    assert 'ControlNet 0: "Module: canny' in text  # quoted as A1111 quotes values with commas


@pytest.mark.parametrize("invert", [False, True])
def test_comfy_graph_has_controlnet_nodes_with_comfyuis_inputs(files, monkeypatch, invert):
    monkeypatch.setattr(graph_test, "COMFY", {**graph_test.COMFY, **COMFY_CONTROL})
    monkeypatch.setattr(graph_test, "check_widget", _check_widget)
    p = _params(files, invert=invert)
    prompt_text, workflow_text = comfy_chunks(p, ComfyFiles(checkpoint="sd3.5_large.safetensors"))
    prompt, workflow = json.loads(prompt_text), json.loads(workflow_text)
    notes = [n for n in workflow["nodes"] if n["type"] == "Note"]
    assert [n["widgets_values"] for n in notes] == [[COMFY_NOTE]]
    graph_test.validate(prompt, {**workflow, "nodes": [n for n in workflow["nodes"] if n["type"] != "Note"],
                                 "last_node_id": max(int(k) for k in prompt)})  # fmt: skip
    applies = [n["inputs"] for n in prompt.values() if n["class_type"] == "ControlNetApplyAdvanced"]
    assert [(a["strength"], a["start_percent"], a["end_percent"]) for a in applies] == [
        (0.8, 0.1, 0.9),
        (0.5, 0, 1),
    ]
    loaders = [
        n["inputs"]["control_net_name"] for n in prompt.values() if n["class_type"] == "ControlNetLoader"
    ]
    assert loaders == [files[0].name, files[1].name]
    # chained: the second applies on the first's outputs; the sampler takes the second's (positive, negative)
    sampler = next(n["inputs"] for n in prompt.values() if n["class_type"] == "KSampler")
    second = sampler["positive"][0]
    assert sampler["positive"] == [second, 0] and sampler["negative"] == [second, 1]
    first = prompt[second]["inputs"]["positive"][0]
    assert prompt[first]["class_type"] == "ControlNetApplyAdvanced"
    canny = next(n["inputs"] for n in prompt.values() if n["class_type"] == "Canny")
    assert (canny["low_threshold"], canny["high_threshold"]) == (0.08, 0.16)
    inverts = [n for n in prompt.values() if n["class_type"] == "ImageInvert"]
    assert len(inverts) == (0 if invert else 1)  # ComfyUI inverts depth maps itself: undone for a plain map


def test_recall_from_our_comfy_graph_keeps_prompt_and_controlnets(files):
    p = _params(files)
    prompt_text, workflow_text = comfy_chunks(p, ComfyFiles(checkpoint="sd3.5_large.safetensors"))
    for recalled in (recall_from_prompt_graph(prompt_text), recall_from_workflow(workflow_text)):
        assert isinstance(recalled, Recalled)
        assert (recalled.params.prompt, recalled.params.negative) == ("a house", "fog")
        got = recalled.params.controlnets
        assert [(s.file.name, s.image.name, s.strength, s.start, s.end) for s in got] == [
            (files[0].name, files[2].name, 0.8, 0.1, 0.9),
            (files[1].name, files[2].name, 0.5, 0.0, 1.0),
        ]
        assert got[0].preprocess == ControlPreprocess("canny", canny_low=82, canny_high=163)
        assert got[1].preprocess == ControlPreprocess("depth", invert=False)
        assert any("ControlNet" in note for note in recalled.unmapped)


def test_without_controlnets_nothing_changes(files):
    p = replace(_params(files), request=replace(_params(files).request, controlnets=()))
    assert "ControlNet" not in infotext_of(p)
    prompt_text, workflow_text = comfy_chunks(p, ComfyFiles(checkpoint="sd3.5_large.safetensors"))
    assert "ControlNet" not in prompt_text and '"Note"' not in workflow_text
    assert "controlnets" not in json.loads(p.to_json())


def test_hashes_are_computed_once_in_the_background(files, monkeypatch):
    import app.metadata.controlnet_meta as meta

    cnet, depth, image = files
    calls = []
    original = meta._hash_file
    monkeypatch.setattr(
        meta, "_hash_file", lambda path, size: calls.append(path.name) or original(path, size)
    )
    specs = (ControlSpec(cnet, image), ControlSpec(depth, image), ControlSpec(cnet.parent / "gone.st", image))
    meta.prefetch_hashes(specs)  # a missing file is simply not hashed
    assert meta.file_sha256(cnet) == _sha(cnet) and meta.file_sha256(image) == _sha(image)
    assert meta.file_sha256(depth) == _sha(depth)
    assert sorted(calls) == sorted([cnet.name, depth.name, image.name])  # each file once, however often asked
    assert meta.file_sha256(cnet.parent / "gone.st") is None

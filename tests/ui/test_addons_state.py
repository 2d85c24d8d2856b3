"""The form's LoRA and ControlNet sets without widgets: prompt tags resolved against discovered LoRAs, the
checks shown before Generate, persistence and recall."""

from pathlib import Path

import pytest

from app.inference.api.control import ControlPreprocess, ControlSpec
from app.inference.api.lora import LoraSpec
from app.inference.api.request import GenerationRequest
from app.ui.form.addons import LoraCatalog, LoraInfo
from app.ui.form.form_state import GenerationFormState
from app.ui.form.prompt_syntax import SpanKind, lora_tag_spans, without_lora_tags

INK = LoraInfo(
    Path("/l/ink.safetensors"), "ink", "Ink Wash", "Large", fits={"large": None, "medium": "too wide"}
)
CLAY = LoraInfo(
    Path("/l/clay.safetensors"), "clay", "Clay", "Medium", fits={"large": "too narrow", "medium": None}
)


def _state(variant="medium", prompt="a cat <lora:clay:0.5>, soft light"):
    state = GenerationFormState(variant=variant)
    state.update(prompt=prompt)
    state.set_lora_catalog(LoraCatalog((INK, CLAY), scanned=True))
    return state


def test_prompt_tag_becomes_a_lora_and_leaves_the_text():
    request = _state().build_request({})
    assert request.prompt == "a cat, soft light"
    assert request.loras == (LoraSpec(CLAY.path, 0.5),)


def test_panel_loras_come_first_and_a_lora_named_twice_is_refused():
    state = _state()
    state.set_loras((LoraSpec(Path("/x/other.safetensors"), -0.3, 0.2),))
    assert [(s.path.name, s.strength, s.te_strength) for s in state.build_request({}).loras] == [
        ("other.safetensors", -0.3, 0.2), ("clay.safetensors", 0.5, None)]  # fmt: skip
    state.set_loras((LoraSpec(CLAY.path, 1.0),))
    with pytest.raises(ValueError, match="clay is added twice"):
        state.build_request({})


def test_unknown_tag_and_unscanned_folders_are_said_before_generate():
    state = _state(prompt="a cat <lora:nope:0.5>")
    assert "no LoRA named “nope”" in state.problems()["loras"]
    with pytest.raises(ValueError, match="nope"):
        state.build_request({})
    state.set_lora_catalog(LoraCatalog())
    assert "Still looking" in state.problems()["loras"]
    state.update(prompt="a cat <lora:clay:abc>")
    state.set_lora_catalog(LoraCatalog((CLAY,), scanned=True))
    assert "not a number" in state.problems()["loras"]


def test_incompatible_lora_is_refused_with_its_reason():
    state = _state(variant="medium", prompt="a cat")
    state.set_loras((LoraSpec(INK.path, 0.8),))
    assert state.problems()["loras"] == "LoRA ink: too wide."
    state.apply_variant("large")
    assert "loras" not in state.problems()


def test_controlnet_on_medium_is_refused_and_sent_on_large():
    spec = ControlSpec(Path("/c/canny.safetensors"), Path("/c/edges.png"), 0.7, 0.1, 0.8, "canny",
                       ControlPreprocess("canny", canny_low=50, canny_high=150))  # fmt: skip
    state = _state(variant="medium", prompt="a cat")
    state.set_controlnets((spec,))
    assert "SD3.5 Large" in state.problems()["controlnets"]
    state.apply_variant("large")
    assert state.problems() == {} and state.build_request({}).controlnets == (spec,)


def test_sets_persist_and_recall_restores_them():
    spec = ControlSpec(
        Path("/c/blur.safetensors"), Path("/c/img.png"), 0.5, preprocess=ControlPreprocess("blur", 4)
    )
    state = _state(variant="large", prompt="x")
    state.set_loras((LoraSpec(INK.path, -0.5, 0.25),))
    state.set_controlnets((spec,))
    back = GenerationFormState.from_dict(state.to_dict())
    assert back.loras == state.loras and back.controlnets == (spec,)
    seen = []
    back.listeners.append(seen.append)
    back.set_lora_catalog(LoraCatalog((INK, CLAY), scanned=True))
    # recalled from another machine: clay is found here by name, gone.safetensors is left out (recall warns)
    recalled = (
        LoraSpec(Path("/other/clay.safetensors"), 0.3),
        LoraSpec(Path("/other/gone.safetensors"), 1.0),
    )
    back.apply_request(GenerationRequest(prompt="y", loras=recalled))
    assert back.loras == (LoraSpec(CLAY.path, 0.3),) and back.controlnets == ()
    assert any("loras" in c for c in seen) and any("controlnets" in c for c in seen)


def test_tag_spans_and_counted_text():
    text = "a <lora:ink:0.8> cat <LYCO:x>"
    spans = [(s.start, s.length, s.kind) for s in lora_tag_spans(text)]
    assert spans == [(2, 14, SpanKind.LORA), (21, 8, SpanKind.LORA)]
    assert without_lora_tags(text).split() == ["a", "cat"]

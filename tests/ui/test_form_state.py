"""The form as plain Python: variant defaults, pins, sizes, seeds and the request it builds."""

import random

import pytest

from app.inference.api.request import GenerationRequest
from app.ui.form.form_state import FormValues, GenerationFormState
from app.ui.form.presets import NO_STYLE, StylePreset

STYLES = {
    "none": NO_STYLE,
    "cinematic": StylePreset("cinematic", "Cinematic", "cinematic still of {prompt}, film grain", "cartoon"),
}


def test_variant_switch_applies_each_variants_defaults():
    state = GenerationFormState()
    state.apply_variant("medium")
    v = state.values
    assert (v.steps, v.cfg, v.sampler, v.scheduler, v.shift) == (40, 4.5, "dpmpp_2m", "normal", 3.0)
    assert v.slg_enabled and v.slg_layers == "7,8,9" and v.slg_scale == 2.5
    state.apply_variant("large-turbo")
    v = state.values
    assert (v.steps, v.cfg, v.sampler) == (4, 1.0, "euler")
    assert not v.slg_enabled
    state.apply_variant("large")
    assert (state.values.steps, state.values.cfg, state.values.sampler) == (28, 3.5, "dpmpp_2m")


def test_turbo_makes_the_negative_prompt_inactive_and_says_why():
    state = GenerationFormState()
    state.apply_variant("large-turbo")
    assert not state.negative_active
    assert "CFG 1" in state.negative_inactive_reason and "Turbo" in state.negative_inactive_reason
    state.update(cfg=2.0)
    assert state.negative_active and state.negative_inactive_reason == ""


def test_pinned_values_survive_a_variant_switch_and_others_follow_the_variant():
    state = GenerationFormState()
    state.apply_variant("medium")
    state.update(steps=33, cfg=6.0, aspect="16:9")
    state.set_pinned("steps", True)
    state.set_pinned("size", True)
    state.apply_variant("large-turbo")
    v = state.values
    assert v.steps == 33 and v.aspect == "16:9" and (v.width, v.height) == (1344, 768)
    assert v.cfg == 1.0  # not pinned: Turbo's default
    state.set_pinned("steps", False)
    state.apply_variant("large")
    assert state.values.steps == 28


def test_sizes_snap_to_64_and_clamp_to_the_checkpoint():
    state = GenerationFormState()
    state.update(width=1000, height=70)
    assert (state.values.width, state.values.height, state.values.aspect) == (1024, 64, "custom")
    state.apply_variant("medium", max_side=512)  # a checkpoint with a small position grid
    assert (state.values.width, state.values.height) == (512, 512)
    state.update(aspect="16:9")
    assert state.values.width == 512 and state.values.height < 512 and state.values.height % 64 == 0
    state.update(width=5000)
    assert state.values.width == 512


def test_pinned_size_is_still_clamped_when_the_new_checkpoint_is_smaller():
    state = GenerationFormState()
    state.update(width=2048, height=1024)
    state.set_pinned("size", True)
    state.apply_variant("medium", max_side=512)
    assert (state.values.width, state.values.height) == (512, 512)


def test_request_applies_the_style_visibly_and_uses_fixed_or_random_seeds():
    state = GenerationFormState()
    state.apply_variant("medium")
    state.update(
        prompt="a red fox", negative="blurry", style="cinematic", random_seed=False, seed=42, count=3
    )
    request = state.build_request(STYLES)
    assert isinstance(request, GenerationRequest)
    assert request.prompt == "cinematic still of a red fox, film grain"
    assert request.negative == "blurry, cartoon"
    assert (request.seed, request.count, request.steps, request.cfg) == (42, 3, 40, 4.5)
    assert request.slg_layers == (7, 8, 9) and request.slg_scale == 2.5
    state.update(random_seed=True)
    first = state.build_request(STYLES, random.Random(1))
    second = state.build_request(STYLES, random.Random(2))
    assert first.seed != second.seed
    assert state.values.seed == second.seed == state.last_seed  # the field shows the seed used


def test_reuse_last_seed_puts_it_back_and_stops_randomising():
    state = GenerationFormState()
    state.update(prompt="x")
    assert not state.reuse_last_seed()
    used = state.build_request(STYLES, random.Random(5)).seed
    state.update(seed=1)
    assert state.reuse_last_seed()
    assert state.values.seed == used and not state.values.random_seed


def test_slg_only_on_medium_and_negative_window_only_with_guidance():
    state = GenerationFormState()
    state.update(prompt="x", slg_enabled=True, negative_window=True, negative_until=0.2)
    request = state.build_request(STYLES)  # Large: no SLG
    assert request.slg_scale == 0.0 and request.slg_layers == ()
    assert request.negative_until == 0.2
    state.apply_variant("large-turbo")
    assert state.build_request(STYLES).negative_until is None  # CFG 1: no negative at all


def test_invalid_inputs_give_messages_not_crashes():
    state = GenerationFormState()
    with pytest.raises(ValueError, match="prompt"):
        state.build_request(STYLES)
    state.apply_variant("medium")
    state.update(prompt="x", slg_layers="7,eight")
    with pytest.raises(ValueError, match="layers"):
        state.build_request(STYLES)
    state.update(steps="many", cfg=float("nan"), sampler="bogus", count=99)
    assert (state.values.steps, state.values.cfg, state.values.sampler, state.values.count) == (
        40,
        4.5,
        "dpmpp_2m",
        16,
    )


def test_round_trip_and_bad_saved_values_fall_back():
    state = GenerationFormState()
    state.apply_variant("medium")
    state.update(prompt="p", steps=12, random_seed=False, seed=2**63)
    state.set_pinned("cfg", True)
    restored = GenerationFormState.from_dict(state.to_dict())
    assert restored.values == state.values and restored.pins == {"cfg"} and restored.variant == "medium"
    broken = GenerationFormState.from_dict({"values": {"steps": "x", "sampler": 3, "nope": 1}, "pins": "cfg"})
    assert broken.values == FormValues() and broken.pins == set()
    assert GenerationFormState.from_dict(None).values == FormValues()

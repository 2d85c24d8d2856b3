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


def test_values_from_request_is_the_inverse_of_build_request():
    """Recall fills the form so that it sends the recalled request again: build -> inverse -> build is stable."""
    from app.ui.form.form_state import values_from_request

    state = GenerationFormState()
    state.apply_variant("medium", max_side=1024, depth=24)
    state.update(
        prompt="a red fox", negative="blurry", style="cinematic", random_seed=False, seed=42, count=2, steps=33,
        cfg=5.25, sampler="euler", scheduler="beta", shift=2.5, slg_layers="6,9", slg_scale=3.0, slg_start=0.05,
        slg_end=0.4, negative_window=True, negative_until=0.3, use_t5=False, aspect="3:2",
    )  # fmt: skip
    sent = state.build_request(STYLES)
    other = GenerationFormState()
    other.apply_variant("medium", max_side=1024, depth=24)
    other.update(style="cinematic", slg_enabled=False, negative_window=False)  # what recall must undo
    other.apply_request(sent, seed=sent.seed)
    assert other.build_request(STYLES) == sent
    assert other.values.aspect == "3:2" and other.values.style == "none"
    values = values_from_request(sent, None, 1024)  # no seed in the image: the seed settings stay
    assert "seed" not in values and "random_seed" not in values


def test_typed_values_that_change_leave_a_note_saying_why():
    state = GenerationFormState()
    state.apply_variant("large", max_side=256)
    state.edit("width", 99)
    assert state.values.width == 128 and "99 → 128" in state.notes["width"]
    state.edit("steps", 0)
    assert state.values.steps == 1 and "allowed from 1 to 150" in state.notes["steps"]
    state.edit("steps", 12)
    assert "steps" not in state.notes
    state.edit("width", 4096)
    assert state.values.width == 256 and "at most 256 px" in state.notes["width"]
    state.update(width=128)  # set from elsewhere: the note about the typing goes
    assert "width" not in state.notes


def test_skip_layer_defaults_follow_the_model_depth_and_problems_are_named():
    state = GenerationFormState()
    state.select_model("medium", 512, depth=24)
    assert state.values.slg_layers == "7,8,9"
    state.select_model("medium", 512, depth=6)  # another Medium set, with fewer blocks
    assert state.values.slg_layers == "2" and state.problems() == {}
    state.update(prompt="x", slg_layers="5,7")
    assert (
        "7 does not exist" in state.problems()["slg_layers"] and "6 blocks" in state.problems()["slg_layers"]
    )
    with pytest.raises(ValueError, match="6 blocks"):
        state.build_request(STYLES)
    state.update(slg_layers="1,4")
    state.apply_variant("large", 256, depth=3)
    state.apply_variant("medium", 512, depth=6)
    assert state.values.slg_layers == "1,4"  # typed layers this model has survive variant switches
    state.update(slg_layers="5")
    state.select_model("medium", 512, depth=4)
    assert state.values.slg_layers == "1,2" and "5 → 1,2" in state.notes["slg_layers"]


def test_an_unknown_size_limit_keeps_the_sizes_and_restored_limits_hold():
    state = GenerationFormState()
    state.select_model("large", 256, depth=3)
    assert (state.values.width, state.values.height) == (256, 256)
    restored = GenerationFormState.from_dict(state.to_dict())
    restored.select_model("large", None)  # the header is still being read
    assert (restored.values.width, restored.values.height, restored.max_side) == (256, 256, 256)


def test_a_look_at_the_request_changes_nothing():
    state = GenerationFormState()
    state.update(prompt="x")
    before = (state.values, state.last_seed)
    state.build_request(STYLES, random.Random(3), record=False)
    assert (state.values, state.last_seed) == before

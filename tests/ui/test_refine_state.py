"""The refine fields of the form state, without a window: what each mode sends, what blocks it, what a saved
form restores."""

from pathlib import Path

import pytest

from app.ui.form.form_state import GenerationFormState


def state_with_input(tmp_path, mode: str) -> tuple[GenerationFormState, Path]:
    source = tmp_path / "in.png"
    source.write_bytes(b"not read here")
    state = GenerationFormState()
    state.update(prompt="a hill", refine_mode=mode, init_image=str(source), denoise=0.35, random_seed=False)
    return state, source


def test_generate_mode_sends_no_input_even_when_one_is_chosen(tmp_path):
    state, _ = state_with_input(tmp_path, "generate")
    request = state.build_request({})
    assert request.init_image is None and request.mask_image is None and request.outpaint == (0, 0, 0, 0)


def test_image_to_image_sends_the_input_and_denoise(tmp_path):
    state, source = state_with_input(tmp_path, "img2img")
    request = state.build_request({})
    assert (request.init_image, request.denoise, request.mask_image) == (source, 0.35, None)


def test_inpaint_asks_the_mask_writer_and_its_sentence_blocks_the_job(tmp_path):
    state, _ = state_with_input(tmp_path, "inpaint")
    mask = tmp_path / "mask.png"
    state.mask_writer = lambda: mask
    assert state.build_request({}).mask_image == mask

    def nothing_painted():
        raise ValueError("Inpaint: paint over the part to regenerate first.")

    state.mask_writer = nothing_painted
    with pytest.raises(ValueError, match="paint over the part"):
        state.build_request({})


def test_outpaint_needs_a_side_and_sends_all_four(tmp_path):
    state, _ = state_with_input(tmp_path, "outpaint")
    with pytest.raises(ValueError, match="extend at least one side"):
        state.build_request({})
    state.update(outpaint_left=64, outpaint_bottom=128)
    assert state.build_request({}).outpaint == (64, 0, 0, 128)


def test_a_refine_mode_without_an_input_or_with_a_deleted_one_says_so(tmp_path):
    state = GenerationFormState()
    state.update(prompt="a hill", refine_mode="img2img")
    with pytest.raises(ValueError, match="Choose an input image first"):
        state.build_request({})
    state.update(init_image=str(tmp_path / "gone.png"))
    with pytest.raises(ValueError, match=r"gone\.png no longer exists"):
        state.build_request({})


def test_hires_fix_is_sent_only_when_ticked_and_steps_zero_means_the_same(tmp_path):
    state = GenerationFormState()
    state.update(prompt="a hill", hires_scale=2.0, hires_denoise=0.3)
    assert state.build_request({}).hires_scale == 1.0
    state.update(hires_enabled=True)
    request = state.build_request({})
    assert (request.hires_scale, request.hires_denoise, request.hires_steps) == (2.0, 0.3, None)
    state.update(hires_steps=12)
    assert state.build_request({}).hires_steps == 12


def test_refine_values_are_clamped_and_survive_a_restart(tmp_path):
    state, source = state_with_input(tmp_path, "outpaint")
    state.update(outpaint_right=99999, denoise=3.0, refine_mode="sideways")
    v = state.values
    assert (v.outpaint_right, v.denoise, v.refine_mode) == (4096, 1.0, "outpaint")
    again = GenerationFormState.from_dict(state.to_dict())
    assert (again.values.refine_mode, again.values.init_image, again.values.outpaint_right) == (
        "outpaint",
        str(source),
        4096,
    )

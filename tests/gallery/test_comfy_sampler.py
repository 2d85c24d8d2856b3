"""The remote engine's sampler nodes (app/metadata/comfy_sampler.py): a partial denoise as our img2img schedule in
ComfyUI's custom-sampling nodes, and that graph read back by recall as the KSampler of the same schedule."""

import pytest

from app.metadata.comfy_graph import ComfyFiles, build_prompt
from app.metadata.comfy_recall import params_from_comfy_prompt
from app.metadata.comfy_sampler import denoise_for, dropped_steps
from tests.gallery.helpers import params

REMOTE = ComfyFiles(
    checkpoint="sd3.5_medium.safetensors", init_image="sd35-studio/init-ab.png", our_schedule=True
)


def _kinds(nodes: dict) -> list[str]:
    return [n["class_type"] for n in nodes.values()]


def test_denoise_for_gives_back_every_dropped_count():
    for steps in range(1, 81):
        for dropped in range(steps):
            assert dropped_steps(steps, denoise_for(steps, dropped)) == dropped, (steps, dropped)
    assert dropped_steps(40, 0.8) == 7 and dropped_steps(28, 0.6) == 11  # SD35_SAMPLING.md's examples
    assert denoise_for(40, 7) == 0.8 and denoise_for(28, 11) == 0.6 and denoise_for(12, 7) == 0.4


@pytest.mark.parametrize(
    ("steps", "denoise"), [(5, 0.6), (40, 0.8), (28, 0.6), (50, 0.75), (4, 0.5), (30, 0.99)]
)
def test_a_remote_img2img_graph_samples_our_schedule_and_recalls_to_it(steps, denoise):
    p = params(seed=77, steps=steps, denoise=denoise, init_image="/x/in.png")
    nodes = build_prompt(p, REMOTE).nodes
    kinds = _kinds(nodes)
    assert "KSampler" not in kinds
    assert {"BasicScheduler", "SplitSigmas", "KSamplerSelect", "SamplerCustom"} <= set(kinds)
    split = next(n for n in nodes.values() if n["class_type"] == "SplitSigmas")
    assert split["inputs"]["step"] == dropped_steps(steps, denoise)
    recalled, _ = params_from_comfy_prompt(nodes)
    assert (recalled.seed, recalled.steps, recalled.cfg) == (77, steps, p.cfg)
    assert (recalled.sampler, recalled.scheduler) == (p.sampler, p.scheduler)
    assert dropped_steps(recalled.steps, recalled.denoise) == dropped_steps(steps, denoise)


def test_a_full_denoise_and_a_local_image_keep_ksampler():
    assert "SamplerCustom" not in _kinds(build_prompt(params(), REMOTE).nodes)
    local = build_prompt(
        params(denoise=0.6, init_image="/x/in.png"), ComfyFiles("sd3.5_medium.safetensors")
    ).nodes
    assert "SamplerCustom" not in _kinds(local) and "KSampler" in _kinds(local)


def test_a_remote_hires_pass_recalls_with_its_steps_and_strength():
    p = params(seed=5, steps=20, width=512, height=512, hires_scale=1.5, hires_denoise=0.4, hires_steps=12)
    nodes = build_prompt(p, REMOTE).nodes
    assert _kinds(nodes).count("KSampler") == 1 and _kinds(nodes).count("SamplerCustom") == 1
    recalled, _ = params_from_comfy_prompt(nodes)
    assert (recalled.steps, recalled.denoise, recalled.hires_steps, recalled.hires_scale) == (
        20,
        1.0,
        12,
        1.5,
    )
    assert dropped_steps(12, recalled.hires_denoise) == dropped_steps(12, 0.4)


def test_a_foreign_sampler_custom_graph_is_left_alone():
    p = params(denoise=0.5, init_image="/x/in.png")
    nodes = build_prompt(p, REMOTE).nodes
    scheduler = next(k for k, n in nodes.items() if n["class_type"] == "BasicScheduler")
    nodes[scheduler]["inputs"]["denoise"] = 0.5  # ComfyUI's own rule inside BasicScheduler: not ours
    with pytest.raises(ValueError, match="no KSampler"):
        params_from_comfy_prompt(nodes)

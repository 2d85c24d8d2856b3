"""LoRA on the MMDiT: every key convention gives the forward of a checkpoint the test merged itself.

The expected model is built from a state into which `tests/factory/lora_files.py` merged `W + s·(alpha/r)·B@A`
by the convention's own names (diffusers-named layers in diffusers' layout, via diffusers' converter), so the
loader's mapping (fused-qkv row slices, the adaLN (scale, shift) swap) is checked, not reused.
"""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from app.inference.api.errors import ModelFileError, UnsupportedModelError
from app.inference.checkpoints.weights import assign_weights
from app.inference.lora.applying import LoraPatcher, Weighted
from app.inference.lora.loading import TargetSet, load_lora
from app.inference.networks.mmdit import MMDiT
from app.inference.networks.mmdit_config import mmdit_config_from_shapes
from app.inference.networks.modulation import ModulationTable, timestep_value
from tests.factory.lora_files import CONVENTIONS, merged_mmdit_state, mmdit_shapes, write_lora
from tests.factory.mmdit_model import PREFIX, TINY_LARGE, TINY_MEDIUM, tiny_mmdit_state

DEPTH = {"large": TINY_LARGE.depth, "medium": TINY_MEDIUM.depth}


def build(state):
    sd = {k[len(PREFIX) :]: v.clone() for k, v in state.items() if k.startswith(PREFIX)}
    cfg = mmdit_config_from_shapes({k: tuple(v.shape) for k, v in sd.items()})
    with torch.device("meta"):
        model = MMDiT(cfg)
    return assign_weights(model, sd, source="tiny", what="MMDiT").eval()


@pytest.fixture(scope="module", params=["large", "medium"])
def base(request):
    state = tiny_mmdit_state(request.param, seed=4, dtype=torch.float32)
    return request.param, state, mmdit_shapes(state)


def inputs(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    cfg = model.cfg
    x = torch.randn(2, 16, 8, 12, generator=gen)
    t = torch.tensor([970.0, 310.0])
    y = torch.randn(2, cfg.adm_in_channels, generator=gen)
    ctx = torch.randn(2, 7, cfg.context_in_channels, generator=gen)
    return x, t, y, ctx


def forward(model, seed=0):
    with torch.inference_mode():
        return model(*inputs(model, seed))


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def apply(model, loras, patcher=None):
    targets = TargetSet.of(model, label="tiny SD3.5")
    patcher = patcher or LoraPatcher()
    loaded = [load_lora(lora.path, targets) for lora, _ in loras]
    patcher.apply([Weighted(x, s, s) for x, (_, s) in zip(loaded, loras, strict=True)], targets)
    return patcher, loaded


@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
def test_each_convention_equals_the_merged_checkpoint(base, convention, tmp_path):
    variant, state, shapes = base
    lora = write_lora(tmp_path / f"{convention}.safetensors", convention, shapes, variant=variant,
                      depth=DEPTH[variant], seed=1)  # fmt: skip
    model = build(state)
    before = forward(model)
    _, (loaded,) = apply(model, [(lora, 0.8)])
    assert loaded.not_applied == {}
    got = forward(model)
    expected = forward(build(merged_mmdit_state(state, [(lora, 0.8)])))
    assert rel(got, expected) < 1e-5
    assert rel(got, before) > 1e-3  # the LoRA changes the output: the comparison means something


def test_two_loras_with_positive_and_negative_strength(base, tmp_path):
    variant, state, shapes = base
    a = write_lora(tmp_path / "a.safetensors", "kohya", shapes, variant=variant, depth=DEPTH[variant], seed=2)
    b = write_lora(tmp_path / "b.safetensors", "peft", shapes, variant=variant, depth=DEPTH[variant], seed=3)
    model = build(state)
    apply(model, [(a, 0.5), (b, -0.3)])
    expected = forward(build(merged_mmdit_state(state, [(a, 0.5), (b, -0.3)])))
    assert rel(forward(model), expected) < 1e-5


def test_strength_zero_and_removal_give_exactly_the_base(base, tmp_path):
    variant, state, shapes = base
    lora = write_lora(tmp_path / "k.safetensors", "kohya", shapes, variant=variant, depth=DEPTH[variant])
    model = build(state)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    base_out = forward(model)
    patcher, _ = apply(model, [(lora, 0.0)])
    assert torch.equal(forward(model), base_out)
    patcher, _ = apply(model, [(lora, 1.0)], patcher)
    assert not torch.equal(forward(model), base_out)
    patcher.apply([], patcher.targets)  # LoRA -> none
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())
    assert torch.equal(forward(model), base_out)


def test_switching_sets_does_not_leak(base, tmp_path):
    variant, state, shapes = base
    a = write_lora(tmp_path / "a.safetensors", "kohya", shapes, variant=variant, depth=DEPTH[variant], seed=5)
    b = write_lora(
        tmp_path / "b.safetensors", "onetrainer", shapes, variant=variant, depth=DEPTH[variant], seed=6
    )
    model = build(state)
    patcher, _ = apply(model, [(a, 1.0)])
    apply(model, [(b, 0.7)], patcher)  # a is taken out before b goes in
    expected = forward(build(merged_mmdit_state(state, [(b, 0.7)])))
    assert rel(forward(model), expected) < 1e-5


def test_bf16_merge_and_undo_are_exact(tmp_path):
    state = tiny_mmdit_state("large", seed=4, dtype=torch.bfloat16)
    shapes = mmdit_shapes(state)
    lora = write_lora(tmp_path / "k.safetensors", "kohya", shapes, depth=DEPTH["large"])
    model = build(state)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    patcher, _ = apply(model, [(lora, 1.0)])
    expected = build(merged_mmdit_state({k: v.float() for k, v in state.items()}, [(lora, 1.0)]))
    qkv = "joint_blocks.0.x_block.attn.qkv.weight"
    # merged in float32 and rounded once: equals the float32 merge rounded to bf16
    assert torch.equal(model.state_dict()[qkv], expected.state_dict()[qkv].to(torch.bfloat16))
    patcher.remove()
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())


def test_modulation_table_sees_the_adapted_adaln_weights(tmp_path):
    state = tiny_mmdit_state("large", seed=4, dtype=torch.float32)
    shapes = mmdit_shapes(state)
    layers = [
        "transformer_blocks.0.norm1.linear",
        "norm_out.linear",
        "transformer_blocks.2.norm1_context.linear",
    ]
    lora = write_lora(tmp_path / "ada.safetensors", "peft", shapes, layers=layers)
    model = build(state)
    pooled = [torch.randn(1, model.cfg.adm_in_channels)]
    base_rows = ModulationTable(model, pooled).rows([(timestep_value(0.5), 0)]).values.clone()
    apply(model, [(lora, 1.0)])
    rows = ModulationTable(model, pooled).rows([(timestep_value(0.5), 0)]).values
    merged = build(merged_mmdit_state(state, [(lora, 1.0)]))
    expected = ModulationTable(merged, pooled).rows([(timestep_value(0.5), 0)]).values
    assert rel(rows, expected) < 1e-5
    assert rel(rows, base_rows) > 1e-3


def test_unmapped_keys_are_counted(tmp_path):
    state = tiny_mmdit_state("large", seed=4, dtype=torch.float32)
    shapes = mmdit_shapes(state)
    extra = {
        "lora_unet_joint_blocks_0_x_block_attn_nonexistent.lora_down.weight": torch.zeros(4, 64),
        "lora_unet_joint_blocks_0_x_block_attn_nonexistent.lora_up.weight": torch.zeros(64, 4),
        "lora_unet_joint_blocks_0_x_block_attn_nonexistent.alpha": torch.tensor(4.0),
        "some_optimizer_state": torch.zeros(3),
    }
    lora = write_lora(tmp_path / "x.safetensors", "kohya", shapes, extra=extra)
    model = build(state)
    _, (loaded,) = apply(model, [(lora, 1.0)])
    assert len(loaded.not_applied) == 4
    total = len(lora.keys)
    expected = f"LoRA x: 4 of {total} keys not applied: 3 for layers the diffusion model does not have (e.g."
    assert loaded.report().startswith(expected)


def test_other_architectures_are_refused_by_name(tmp_path):
    from safetensors.torch import save_file

    model = build(tiny_mmdit_state("large", seed=4, dtype=torch.float32))
    targets = TargetSet.of(model, label="SD3.5 Large")
    cases = {
        "flux": ({"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": torch.zeros(4, 64),
                  "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": torch.zeros(192, 4)}, {}, "FLUX.1"),
        "sdxl": ({"lora_unet_input_blocks_4_1_proj_in.lora_down.weight": torch.zeros(4, 64),
                  "lora_unet_input_blocks_4_1_proj_in.lora_up.weight": torch.zeros(64, 4),
                  "lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.zeros(4, 64)}, {}, "SDXL"),
        "meta": ({"lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down.weight": torch.zeros(4, 64)},
                 {"ss_base_model_version": "flux1"}, "FLUX.1"),
        "medium_on_large": ({"lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down.weight": torch.zeros(4, 96),
                             "lora_unet_joint_blocks_0_x_block_attn_qkv.lora_up.weight": torch.zeros(288, 4)},
                            {}, "96 wide"),
        "sd3_medium_2b": ({"lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down.weight": torch.zeros(4, 1536),
                           "lora_unet_joint_blocks_0_x_block_attn_qkv.lora_up.weight": torch.zeros(4608, 4)},
                          {"modelspec.architecture": "stable-diffusion-v3-medium/lora"},
                          r"LoRA for Stable Diffusion 3 Medium \(2B\) \(layers 1536 wide\)"),
        "loha": ({"lora_unet_joint_blocks_0_x_block_attn_qkv.hada_w1_a": torch.zeros(64, 4)}, {}, "LoHa"),
        "dora": ({"lora_unet_joint_blocks_0_x_block_attn_qkv.lora_down.weight": torch.zeros(4, 64),
                  "lora_unet_joint_blocks_0_x_block_attn_qkv.lora_up.weight": torch.zeros(192, 4),
                  "lora_unet_joint_blocks_0_x_block_attn_qkv.dora_scale": torch.zeros(192, 1)}, {}, "DoRA"),
    }  # fmt: skip
    for name, (tensors, meta, word) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file(tensors, str(path), metadata=meta or None)
        with pytest.raises(UnsupportedModelError, match=word) as info:
            load_lora(path, targets)
        assert path.name in str(info.value)


def test_a_pickle_is_never_unpickled(tmp_path, monkeypatch):
    import pickle

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"x": 1}))
    monkeypatch.setattr(pickle, "load", lambda *a, **k: pytest.fail("unpickled"))
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("unpickled"))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load"))
    model = build(tiny_mmdit_state("large", seed=4, dtype=torch.float32))
    with pytest.raises(ModelFileError, match="pickle"):
        load_lora(path, TargetSet.of(model))


def test_fp8_weights_get_a_side_branch_equal_to_the_merge(tmp_path):
    from app.inference.checkpoints.formats import mmdit_fp8_eligible
    from app.inference.checkpoints.fp8 import FP8_DTYPES, assign_with_fp8_storage, dequantize

    state = tiny_mmdit_state("medium", seed=4, dtype=torch.float32)
    shapes = mmdit_shapes(state)
    lora = write_lora(tmp_path / "k.safetensors", "peft", shapes, variant="medium", depth=DEPTH["medium"])
    sd = {k[len(PREFIX) :]: v.clone() for k, v in state.items()}
    cfg = mmdit_config_from_shapes({k: tuple(v.shape) for k, v in sd.items()})
    with torch.device("meta"):
        fp8_model = MMDiT(cfg)
    assign_with_fp8_storage(fp8_model, sd, eligible=mmdit_fp8_eligible, source="tiny", what="MMDiT",
                            dtype=torch.float32)  # fmt: skip
    stored = {k: v.clone() for k, v in fp8_model.state_dict().items()}
    # The same numbers as dense weights: what the fp8 model computes with, for an exact reference.
    dense_state = {}
    for key, value in fp8_model.state_dict().items():
        if key.endswith("scale_weight"):
            continue
        if value.dtype in FP8_DTYPES:
            value = dequantize(value, stored[key[: -len("weight")] + "scale_weight"], torch.float32)
        dense_state[PREFIX + key] = value.clone()  # not a view: the merge changes the dense weights
    patcher, _ = apply(fp8_model, [(lora, 0.9)])
    assert (
        patcher.side_branches > 0 and patcher.merged > 0
    )  # joint blocks fp8, embedders and final layer dense
    got = forward(fp8_model)
    fp8_merged = forward(build(merged_mmdit_state(dense_state, [(lora, 0.9)])))
    assert rel(got, fp8_merged) < 1e-5  # the side branch computes exactly the merge
    assert rel(got, forward(build(merged_mmdit_state(state, [(lora, 0.9)])))) < 0.1  # fp8 tolerance
    for key, value in fp8_model.state_dict().items():  # stored fp8 weights untouched
        if value.dtype in FP8_DTYPES:
            assert torch.equal(value.view(torch.uint8), stored[key].view(torch.uint8))
    # the per-job adaLN table calls the fp8 adaLN layers too: their side branches are in it
    pooled = [torch.randn(1, fp8_model.cfg.adm_in_channels)]
    key = [(timestep_value(0.4), 0)]
    rows = ModulationTable(fp8_model, pooled).rows(key).values
    expected_rows = (
        ModulationTable(build(merged_mmdit_state(dense_state, [(lora, 0.9)])), pooled).rows(key).values
    )
    assert rel(rows, expected_rows) < 1e-5
    patcher.remove()
    assert torch.equal(forward(fp8_model), forward(build(dense_state)))
    assert rel(ModulationTable(fp8_model, pooled).rows(key).values, expected_rows) > 1e-3


@pytest.mark.parametrize("variant", ["large", "medium"])
def test_peft_lora_matches_diffusers_with_the_lora_fused(variant, tmp_path):
    """diffusers' SD3Transformer2DModel with the PEFT LoRA fused by its own module names (what
    `load_lora_weights` + `fuse_lora` produce; PEFT itself is not installed here) against our MMDiT with it."""
    from tests.factory.diffusers_oracle import diffusers_transformer

    state = tiny_mmdit_state(variant, seed=4, dtype=torch.float32)
    lora = write_lora(tmp_path / "p.safetensors", "peft", mmdit_shapes(state), variant=variant, depth=DEPTH[variant],
                      seed=9)  # fmt: skip
    theirs = diffusers_transformer(state)
    with torch.no_grad():
        for f in lora.factors:
            theirs.get_submodule(f.module).weight += f.delta(0.75).float()
    ours = build(state)
    apply(ours, [(lora, 0.75)])
    x, t, y, ctx = inputs(ours)
    with torch.inference_mode():
        expected = theirs(hidden_states=x, encoder_hidden_states=ctx, pooled_projections=y, timestep=t).sample
    got = forward(ours)
    assert rel(got, expected) < 1e-4
    assert rel(got, forward(build(state))) > 1e-3


@pytest.mark.parametrize("variant", ["large", "medium"])
def test_peft_lora_matches_diffusers_load_lora_adapter(variant, tmp_path):
    """The PEFT file loaded by diffusers' own loader (`load_lora_adapter`, through PEFT, alpha from the file's
    `lora_adapter_metadata`) and weighted with `set_adapters` against our loader on our MMDiT."""
    from tests.factory.diffusers_oracle import diffusers_transformer

    state = tiny_mmdit_state(variant, seed=4, dtype=torch.float32)
    lora = write_lora(tmp_path / "p.safetensors", "peft", mmdit_shapes(state), variant=variant, depth=DEPTH[variant],
                      seed=9)  # fmt: skip
    # As diffusers saves a LoRA: the whole adapter config in the header (PEFT needs the target modules).
    tensors = load_file(lora.path)
    with safe_open(lora.path, "pt") as f:
        config = json.loads(f.metadata()["lora_adapter_metadata"])
    config["transformer.target_modules"] = sorted({f.module for f in lora.factors})
    save_file(tensors, str(lora.path), metadata={"format": "pt", "lora_adapter_metadata": json.dumps(config)})
    theirs = diffusers_transformer(state)
    # weight_name: diffusers reads the adapter metadata (alpha) only when it knows the file is safetensors
    theirs.load_lora_adapter(
        str(lora.path.parent), weight_name=lora.path.name, prefix="transformer", adapter_name="p"
    )
    theirs.set_adapters(["p"], weights=[0.75])
    ours = build(state)
    apply(ours, [(lora, 0.75)])
    x, t, y, ctx = inputs(ours)
    with torch.inference_mode():
        expected = theirs(hidden_states=x, encoder_hidden_states=ctx, pooled_projections=y, timestep=t).sample
    got = forward(ours)
    assert rel(got, expected) < 1e-4
    assert rel(got, forward(build(state))) > 1e-3


def test_without_room_for_originals_dense_layers_get_side_branches(tmp_path):
    state = tiny_mmdit_state("medium", seed=4, dtype=torch.float32)
    shapes = mmdit_shapes(state)
    lora = write_lora(tmp_path / "k.safetensors", "kohya", shapes, variant="medium", depth=DEPTH["medium"])
    model = build(state)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    targets = TargetSet.of(model)
    patcher = LoraPatcher()
    patcher.apply([Weighted(load_lora(lora.path, targets), 0.6, 0.6)], targets, keep_budget=0)
    assert patcher.merged == 0 and patcher.side_branches > 0
    assert all(
        torch.equal(v, before[k]) for k, v in model.state_dict().items()
    )  # nothing merged, nothing kept
    assert rel(forward(model), forward(build(merged_mmdit_state(state, [(lora, 0.6)])))) < 1e-5
    patcher.remove()
    assert torch.equal(forward(model), forward(build(state)))

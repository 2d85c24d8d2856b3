"""The SD3.5 Large ControlNet: its forward against diffusers' `SD3ControlNetModel` (built from the same tensors),
the MMDiT's per-block residuals against diffusers' SD3 transformer and against the reference's rule for the last
block, strength and windows, several ControlNets adding up, loading (fp8 files included) and the full-size
structure on the meta device."""

import dataclasses

import pytest
import torch

from app.inference.checkpoints.controlnet_loading import inspect_controlnet, load_controlnet
from app.inference.checkpoints.fp8 import Fp8Linear
from app.inference.checkpoints.weights import assign_weights
from app.inference.control.apply import ControlStack, ControlUnit
from app.inference.networks.controlnet import ControlNet, ControlNetConfig
from app.inference.networks.layers import timestep_embedding
from app.inference.networks.mmdit import MMDiT
from app.inference.networks.mmdit_config import mmdit_config_from_shapes
from tests.factory.controlnet_model import tiny_controlnet_state, write_controlnet
from tests.factory.diffusers_oracle import diffusers_transformer
from tests.factory.layouts import dequantized, to_plain_fp8, to_scaled_fp8
from tests.factory.mmdit_model import PREFIX, TinyMMDiTSpec, tiny_mmdit_state

diffusers = pytest.importorskip("diffusers")

DEPTH4 = TinyMMDiTSpec(
    depth=4
)  # 4 joint blocks and a 2-block ControlNet: each output added twice, as on Large


def _base(state):
    sd = {k[len(PREFIX) :]: v.float() for k, v in state.items()}
    cfg = mmdit_config_from_shapes({k: tuple(v.shape) for k, v in sd.items()})
    with torch.device("meta"):
        model = MMDiT(cfg)
    return assign_weights(model, sd, source="tiny", what="MMDiT").eval()


@pytest.fixture(scope="module")
def base_state():
    return tiny_mmdit_state("large", DEPTH4, seed=11)


@pytest.fixture(scope="module")
def base(base_state):
    return _base(base_state)


@pytest.fixture(scope="module")
def cnet_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cn") / "sd3.5_large_controlnet_canny.safetensors"
    return write_controlnet(path, tiny_controlnet_state(blocks=2, seed=4))


@pytest.fixture(scope="module")
def cnet(cnet_file, base):
    return load_controlnet(cnet_file, base=base.cfg, dtype=torch.float32, device="cpu")


def _diffusers_controlnet(state, heads):
    """diffusers' SD3.5-Large ControlNet (single-stream blocks, no pos_embed, no context) from our tensors."""
    from diffusers.models.controlnets.controlnet_sd3 import SD3ControlNetModel

    sd = {k: v.float() for k, v in state.items() if k != "control_type" and not k.startswith("pos_embed.")}
    hidden = sd["pos_embed_input.proj.weight"].shape[0]
    blocks = len({k.split(".")[1] for k in sd if k.startswith("transformer_blocks.")})
    model = SD3ControlNetModel(
        patch_size=2, in_channels=16, num_layers=blocks, attention_head_dim=hidden // heads,
        num_attention_heads=heads, joint_attention_dim=None, pooled_projection_dim=sd[
            "time_text_embed.text_embedder.linear_1.weight"].shape[1],
        use_pos_embed=False, pos_embed_type=None,
    )  # fmt: skip
    out = {}
    for k, v in sd.items():
        if not k.startswith("transformer_blocks."):
            out[k] = v
            continue
        head, rest = k.split(".", 2)[:2], k.split(".", 2)[2]
        p = ".".join(head) + "."
        if rest.startswith("adaLN_modulation.1."):
            out[p + "norm1.linear." + rest.rsplit(".", 1)[1]] = v
        elif rest.startswith("attn.qkv."):
            for name, part in zip(("to_q", "to_k", "to_v"), v.chunk(3, dim=0), strict=True):
                out[p + f"attn.{name}." + rest.rsplit(".", 1)[1]] = part
        elif rest.startswith("attn.proj."):
            out[p + "attn.to_out.0." + rest.rsplit(".", 1)[1]] = v
        elif rest.startswith("mlp.fc1."):
            out[p + "ff.net.0.proj." + rest.rsplit(".", 1)[1]] = v
        elif rest.startswith("mlp.fc2."):
            out[p + "ff.net.2." + rest.rsplit(".", 1)[1]] = v
    model.load_state_dict(out, strict=True)
    return model.eval()


def _inputs(base, seed=0, b=2):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 16, 8, 12, generator=gen)  # 4 x 6 patches
    hint_latent = torch.randn(1, 16, 8, 12, generator=gen)
    sigma = torch.tensor([0.91, 0.37])[:b]
    y = torch.randn(b, base.cfg.adm_in_channels, generator=gen)
    ctx = torch.randn(b, 20, base.cfg.context_in_channels, generator=gen)
    return x, hint_latent, sigma, y, ctx


def _tokens(base, x):
    return base.x_embedder(x) + base.cropped_pos_embed(x.shape[-2] // 2, x.shape[-1] // 2)


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def test_controlnet_outputs_match_diffusers(base, cnet, cnet_file):
    from safetensors.torch import load_file

    theirs = _diffusers_controlnet(load_file(str(cnet_file)), heads=base.cfg.num_heads)
    x, hint_latent, sigma, y, _ = _inputs(base)
    with torch.inference_mode():
        tokens = _tokens(base, x)
        ours = cnet(tokens, cnet.embed_hint(hint_latent), sigma * 1000, y)
        ref = theirs(
            hidden_states=tokens, controlnet_cond=hint_latent.expand(2, -1, -1, -1), pooled_projections=y,
            timestep=sigma * 1000, conditioning_scale=1.0,
        ).controlnet_block_samples  # fmt: skip
    assert len(ours) == len(ref) == 2
    for a, b in zip(ours, ref, strict=True):
        assert a.shape == tokens.shape
        assert b.abs().max() > 1e-2  # non-zero outputs: the comparison means something
        assert _rel(a, b) < 1e-4


class _Residuals:
    """Fixed residuals per base block (None: nothing after that block)."""

    def __init__(self, per_block):
        self.per_block = per_block

    def after_block(self, index):
        return self.per_block[index]


def test_residual_hook_matches_diffusers_transformer(base, base_state):
    """diffusers adds ControlNet residuals after every block but the last (pre-only) one; with nothing to add
    after the last block both must agree, which checks where and how our hook adds them."""
    theirs = diffusers_transformer(base_state)
    x, _, sigma, y, ctx = _inputs(base, seed=1)
    gen = torch.Generator().manual_seed(5)
    outs = [0.3 * torch.randn(2, 24, 64, generator=gen) for _ in range(2)]
    per_block = [outs[j // 2] for j in range(4)]
    per_block[-1] = None
    with torch.inference_mode():
        prepared = dataclasses.replace(
            base.prepare(sigma * 1000, y, ctx), control=lambda tokens: _Residuals(per_block)
        )
        ours = base.forward_prepared(x, prepared)
        ref = theirs(
            hidden_states=x, encoder_hidden_states=ctx, pooled_projections=y, timestep=sigma * 1000,
            block_controlnet_hidden_states=outs,
        ).sample  # fmt: skip
        plain = base(x, sigma * 1000, y, ctx)
    assert _rel(ours, ref) < 1e-4
    assert _rel(ours, plain) > 1e-3  # the residuals changed the output


def test_full_forward_follows_the_reference_steps(base, cnet):
    """§2's four steps written out here: ControlNet on the base's embedded x, outputs times strength, output
    j // (depth // N) added after every joint block, the last one included."""
    x, hint_latent, sigma, y, ctx = _inputs(base, seed=2)
    strength = 0.7
    unit = ControlUnit.of(cnet, cnet.embed_hint(hint_latent), strength, 0.0, 1.0, 3.0, base.cfg.depth)
    stack = ControlStack([unit])
    with torch.inference_mode():
        prepared = dataclasses.replace(
            base.prepare(sigma * 1000, y, ctx), control=stack.for_call(0.5, sigma * 1000, y)
        )
        ours = base.forward_prepared(x, prepared)
        # the reference, step by step
        tokens = _tokens(base, x)
        c = base.conditioning(sigma * 1000, y)
        h = tokens + cnet.pos_embed_input(hint_latent)
        c_cn = cnet.time_text_embed.timestep_embedder(
            timestep_embedding(sigma * 1000)
        ) + cnet.time_text_embed.text_embedder(y)
        outs = []
        for block, head in zip(cnet.transformer_blocks, cnet.controlnet_blocks, strict=True):
            h = block(h, c_cn)
            outs.append(head(h) * strength)
        context = base.embed_context(ctx)
        interval = base.cfg.depth // len(outs)
        assert interval == 2
        for j, block in enumerate(base.joint_blocks):
            mod = (block.context_block.modulation(c), block.x_block.modulation(c))
            context, tokens = block(context, tokens, mod)
            tokens = tokens + outs[j // interval]
        out = base.final_layer(tokens, base.final_layer.modulation(c))
        ref = base.unpatchify(out, 4, 6).float()
    assert _rel(ours, ref) < 1e-5


def _velocity(base, stack, sigma_host, x, sigma, y, ctx):
    control = stack.for_call(sigma_host, sigma * 1000, y) if stack is not None else None
    prepared = dataclasses.replace(base.prepare(sigma * 1000, y, ctx), control=control)
    return base.forward_prepared(x, prepared)


def test_strength_zero_window_and_two_controlnets_add(base, cnet, tmp_path):
    second = load_controlnet(
        write_controlnet(tmp_path / "blur.safetensors", tiny_controlnet_state(blocks=2, control_type="blur", seed=9)),
        base=base.cfg, dtype=torch.float32, device="cpu",
    )  # fmt: skip
    x, hint_latent, sigma, y, ctx = _inputs(base, seed=3)
    depth = base.cfg.depth
    h1, h2 = cnet.embed_hint(hint_latent), second.embed_hint(-hint_latent)
    with torch.inference_mode():
        plain = _velocity(base, None, 0.5, x, sigma, y, ctx)
        zero = ControlStack([ControlUnit.of(cnet, h1, 0.0, 0.0, 1.0, 3.0, depth)])
        assert torch.equal(_velocity(base, zero, 0.5, x, sigma, y, ctx), plain)
        assert zero.for_call(0.5, sigma, y) is None
        # window 0.5 .. 1 with shift 3: acts from sigma = percent_to_sigma(0.5) = 0.75 down to 0
        late = ControlStack([ControlUnit.of(cnet, h1, 1.0, 0.5, 1.0, 3.0, depth)])
        assert torch.equal(_velocity(base, late, 0.9, x, sigma, y, ctx), plain)
        assert not torch.allclose(_velocity(base, late, 0.6, x, sigma, y, ctx), plain)
        # two ControlNets: their residuals add, so the result equals one unit whose outputs are the sum
        a = ControlUnit.of(cnet, h1, 0.8, 0.0, 1.0, 3.0, depth)
        b = ControlUnit.of(second, h2, 0.5, 0.0, 1.0, 3.0, depth)
        both = ControlStack([a, b]).for_call(0.5, sigma * 1000, y)
        tokens = _tokens(base, x)
        summed = both(tokens)
        oa, ob = cnet(tokens, h1, sigma * 1000, y), second(tokens, h2, sigma * 1000, y)
        for j in range(depth):
            expect = oa[j // 2] * 0.8 + ob[j // 2] * 0.5
            assert torch.allclose(summed.after_block(j), expect, atol=1e-6)
        one = _velocity(base, ControlStack([a]), 0.5, x, sigma, y, ctx)
        two = _velocity(base, ControlStack([a, b]), 0.5, x, sigma, y, ctx)
        assert not torch.allclose(one, two)


def test_loads_config_and_control_type_from_the_file(cnet_file, base):
    info = inspect_controlnet(cnet_file, head_dim=base.cfg.head_dim)
    assert info.config == ControlNetConfig(
        depth=2, hidden_size=64, num_heads=4, patch_size=2, in_channels=16, adm_in_channels=192, mlp_hidden=256,
        control_type="canny",
    )  # fmt: skip
    assert info.params == sum(
        v.numel() for k, v in tiny_controlnet_state(blocks=2).items() if k != "control_type"
    )


@pytest.mark.parametrize("layout", ["plain-fp8", "scaled-fp8"])
def test_fp8_files_load_dequantised_or_kept_in_fp8(tmp_path, base, layout):
    state = tiny_controlnet_state(blocks=2, seed=4, dtype=torch.float32)

    def select(key, t):
        return key.startswith(("transformer_blocks.", "controlnet_blocks.")) and key.endswith(".weight")

    stored = to_plain_fp8(state, select) if layout == "plain-fp8" else to_scaled_fp8(state, select)
    path = write_controlnet(tmp_path / "cn_fp8.safetensors", stored)
    expected = dequantized(stored)
    model = load_controlnet(path, base=base.cfg, dtype=torch.float32, device="cpu")
    for key, value in model.state_dict().items():
        assert torch.equal(value, expected[key]), key
    kept = load_controlnet(path, base=base.cfg, dtype=torch.float32, device="cpu", fp8=True)
    assert isinstance(kept.transformer_blocks[0].attn.qkv, Fp8Linear)
    assert kept.transformer_blocks[0].attn.qkv.weight.dtype == torch.float8_e4m3fn
    x, hint_latent, sigma, y, _ = _inputs(base)
    with torch.inference_mode():
        tokens = _tokens(base, x)
        a = model(tokens, model.embed_hint(hint_latent), sigma * 1000, y)
        b = kept(tokens, kept.embed_hint(hint_latent), sigma * 1000, y)
    for u, v in zip(a, b, strict=True):
        assert _rel(v, u) < 1e-5  # same fp8 weights, upcast per call


def test_full_size_structure_on_meta():
    """The official Large ControlNet: 19 blocks of width 2432 on the 2048-wide pooled vector."""
    cfg = ControlNetConfig(
        depth=19, hidden_size=2432, num_heads=38, patch_size=2, in_channels=16, adm_in_channels=2048,
        mlp_hidden=4 * 2432, control_type="canny",
    )  # fmt: skip
    with torch.device("meta"):
        model = ControlNet(cfg)
    params = sum(p.numel() for p in model.parameters())
    assert params == 2_153_677_056
    # 4.31 GB in bf16; the published files (8.65 GB) hold float32 weights
    assert params * 2 == pytest.approx(4.31e9, rel=1e-3)
    blocks = sum(p.numel() for p in model.transformer_blocks.parameters())
    assert blocks == 19 * (18 * 2432**2 + 15 * 2432)


def test_an_unused_position_table_in_the_file_is_ignored_but_other_extras_are_refused(tmp_path, base):
    from app.inference.api.errors import CheckpointMismatchError

    state = tiny_controlnet_state(blocks=2, seed=4)
    plain = load_controlnet(write_controlnet(tmp_path / "a.safetensors", state), base=base.cfg,
                            dtype=torch.float32, device="cpu")  # fmt: skip
    extra = dict(state, **{"pos_embed.pos_embed": torch.zeros(1, 256, 64, dtype=torch.float16)})
    with_table = load_controlnet(write_controlnet(tmp_path / "b.safetensors", extra), base=base.cfg,
                                 dtype=torch.float32, device="cpu")  # fmt: skip
    for (k, a), b in zip(plain.state_dict().items(), with_table.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    odd = dict(state, **{"context_embedder.weight": torch.zeros(64, 256, dtype=torch.float16)})
    with pytest.raises(CheckpointMismatchError, match="unexpected"):
        load_controlnet(write_controlnet(tmp_path / "c.safetensors", odd), base=base.cfg, dtype=torch.float32,
                        device="cpu")  # fmt: skip


def test_full_size_forward_on_meta_adds_each_output_after_two_joint_blocks():
    """Large (38 joint blocks) with the official 19-block ControlNet at 1024² on the meta device: shapes all the
    way through, and output j // 2 added after every joint block j, the last (pre-only) one included."""
    from bench.common import large_width_config

    with torch.device("meta"):
        base = MMDiT(large_width_config(depth=38))
        cnet = ControlNet(ControlNetConfig(19, 2432, 38, 2, 16, 2048, 4 * 2432, "canny"))
        x, y, ctx = torch.empty(2, 16, 128, 128), torch.empty(2, 2048), torch.empty(2, 333, 4096)
        t = torch.full((2,), 800.0)
        stack = ControlStack(
            [ControlUnit.of(cnet, cnet.embed_hint(torch.empty(1, 16, 128, 128)), 1.0, 0, 1, 3.0, 38)]
        )
        used = []
        run = stack.for_call(0.8, t, y)

        def spy(tokens):
            residuals = run(tokens)
            assert len(residuals.outputs[0][0]) == 19
            assert all(o.shape == (2, 4096, 2432) for o in residuals.outputs[0][0])
            original = residuals.after_block

            def after_block(j):
                used.append(j)
                return original(j)

            residuals.after_block = after_block
            return residuals

        out = base.forward_prepared(x, dataclasses.replace(base.prepare(t, y, ctx), control=spy))
    assert out.shape == (2, 16, 128, 128)
    assert used == list(range(38))
    assert stack.units[0].interval == 2

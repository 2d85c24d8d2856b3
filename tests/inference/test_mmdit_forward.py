"""The MMDiT's two entry points: the strict `forward(x, t, y, context)` (shape checks with clear errors) and
`forward_prepared(x, prepared)` (a job's precomputed inputs), and the named adaLN modulation they run on.

The named blocks must compute exactly what the index arithmetic over adaLN chunks computed before
(`_index_forward`, the previous formulation written out here): same operations in the same order, so the
outputs are equal bit for bit, for MMDiT (Large) and MMDiT-X (Medium, the image-only second attention)."""

from __future__ import annotations

import pytest
import torch

from app.inference.checkpoints.weights import assign_weights
from app.inference.networks.layers import attention, gated, layer_norm, modulate
from app.inference.networks.mmdit import MMDiT, PreparedInputs, StreamModulation
from app.inference.networks.mmdit_config import mmdit_config_from_shapes
from app.inference.networks.modulation import ModulationTable
from tests.factory.mmdit_model import PREFIX, tiny_mmdit_state


def _model(variant: str) -> MMDiT:
    sd = {k[len(PREFIX) :]: v.float() for k, v in tiny_mmdit_state(variant, seed=5).items()}
    with torch.device("meta"):
        m = MMDiT(mmdit_config_from_shapes({k: tuple(v.shape) for k, v in sd.items()}))
    return assign_weights(m, sd, source="tiny", what="MMDiT").eval()


@pytest.fixture(scope="module", params=["large", "medium"])
def model(request) -> MMDiT:
    return _model(request.param)


def _inputs(model: MMDiT, batch: int = 2, tokens: int = 19) -> tuple[torch.Tensor, ...]:
    cfg, g = model.cfg, torch.Generator().manual_seed(11)
    x = torch.randn(batch, cfg.in_channels, 8, 12, generator=g)  # 4 x 6 patches
    t = torch.tensor([930.0, 217.5][:batch])
    y = torch.randn(batch, cfg.adm_in_channels, generator=g)
    context = torch.randn(batch, tokens, cfg.context_in_channels, generator=g)
    return x, t, y, context


def _index_forward(model: MMDiT, x, t, y, context, skip=()) -> torch.Tensor:
    """The forward as written before the modulation had names: adaLN chunks by index, blocks inlined."""
    p = model.cfg.patch_size
    h, w = x.shape[-2] // p, x.shape[-1] // p
    ctx, c = model.embed_context(context), model.conditioning(t, y)
    tokens = model.x_embedder(x.to(model.dtype)) + model.cropped_pos_embed(h, w).to(model.dtype)
    for i, block in enumerate(model.joint_blocks):
        if i in skip:
            continue
        cb, xb = block.context_block, block.x_block
        c_mod = cb.adaLN_modulation(c).chunk(cb.adaLN_modulation[1].out_features // c.shape[-1], dim=1)
        x_mod = xb.adaLN_modulation(c).chunk(xb.adaLN_modulation[1].out_features // c.shape[-1], dim=1)
        qc, kc, vc = cb.attn.pre_attention(modulate(layer_norm(ctx), c_mod[0], c_mod[1]))
        x_norm = layer_norm(tokens)
        qx, kx, vx = xb.attn.pre_attention(modulate(x_norm, x_mod[0], x_mod[1]))
        joint = attention(torch.cat([qc, qx], dim=2), torch.cat([kc, kx], dim=2), torch.cat([vc, vx], dim=2))
        attn_c, attn_x = joint[:, : ctx.shape[1]], joint[:, ctx.shape[1] :]
        out = gated(tokens, x_mod[2], xb.attn.proj(attn_x))
        if xb.x_self_attn:
            q2, k2, v2 = xb.attn2.pre_attention(modulate(x_norm, x_mod[6], x_mod[7]))
            out = gated(out, x_mod[8], xb.attn2.proj(attention(q2, k2, v2)))
        tokens_out = gated(out, x_mod[5], xb.mlp(modulate(layer_norm(out), x_mod[3], x_mod[4])))
        if not cb.pre_only:
            c_out = gated(ctx, c_mod[2], cb.attn.proj(attn_c))
            ctx = gated(c_out, c_mod[5], cb.mlp(modulate(layer_norm(c_out), c_mod[3], c_mod[4])))
        tokens = tokens_out
    shift, scale = model.final_layer.adaLN_modulation(c).chunk(2, dim=1)
    return model.unpatchify(
        model.final_layer.linear(modulate(layer_norm(tokens), shift, scale)), h, w
    ).float()


@torch.inference_mode()
@pytest.mark.parametrize("skip", [(), (1,)])
def test_named_blocks_equal_the_index_formulation_bit_for_bit(model, skip):
    if model.cfg.is_mmditx:
        assert any(b.x_block.x_self_attn for b in model.joint_blocks)  # the second attention is exercised
    inputs = _inputs(model)
    got = model(*inputs, skip_layers=skip)
    assert torch.equal(got, _index_forward(model, *inputs, skip=skip))
    assert got.abs().max() > 1e-3


@torch.inference_mode()
def test_prepared_path_with_live_inputs_equals_forward_bit_for_bit(model):
    x, t, y, context = _inputs(model)
    assert torch.equal(model.forward_prepared(x, model.prepare(t, y, context)), model(x, t, y, context))


@torch.inference_mode()
def test_modulation_table_path_agrees_with_the_plain_forward(model):
    """A job's inputs (tokens embedded once, adaLN rows from the table, position crop once) give the plain
    forward's velocity; the table batches more rows per matmul, so the last bits may differ."""
    x, t, y, context = _inputs(model)
    table = ModulationTable(model, [y[:1], y[1:]])
    keys = [(float(t[0]), 0), (float(t[1]), 1)]
    table.add([*keys, (500.0, 0), (500.0, 1)])  # more rows than the batch: a different matmul shape
    p = model.cfg.patch_size
    prepared = PreparedInputs(
        model.embed_context(context),
        table.rows(keys),
        model.cropped_pos_embed(x.shape[-2] // p, x.shape[-1] // p).to(model.dtype),
    )
    want = model(x, t, y, context)
    got = model.forward_prepared(x, prepared)
    assert ((got - want).abs().max() / want.abs().max()).item() <= 1e-6
    # and the comparison can fail: other rows of the table give another velocity
    other = PreparedInputs(prepared.context, table.rows([(500.0, 0), (500.0, 1)]), prepared.pos_embed)
    assert ((model.forward_prepared(x, other) - want).abs().max() / want.abs().max()).item() > 1e-3


def test_stream_modulation_names_the_checkpoint_chunk_order():
    chunks = tuple(torch.full((1, 4), float(i)) for i in range(9))
    dual = StreamModulation.from_chunks(chunks)
    assert [float(m.shift[0, 0]) for m in (dual.attn, dual.mlp, dual.attn2)] == [0.0, 3.0, 6.0]
    assert [float(m.scale[0, 0]) for m in (dual.attn, dual.mlp, dual.attn2)] == [1.0, 4.0, 7.0]
    assert [float(m.gate[0, 0]) for m in (dual.attn, dual.mlp, dual.attn2)] == [2.0, 5.0, 8.0]
    assert dual.chunks() == chunks
    plain = StreamModulation.from_chunks(chunks[:6])
    assert plain.attn2 is None and plain.chunks() == chunks[:6]
    pre_only = StreamModulation.from_chunks(chunks[:2])
    assert pre_only.mlp is None and pre_only.attn.gate is None and pre_only.chunks() == chunks[:2]
    with pytest.raises(ValueError, match="2, 6 or 9 chunks"):
        StreamModulation.from_chunks(chunks[:4])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda x, t, y, c: (x[0], t, y, c), r"x must be a \(B, 16, H, W\) latent, got \(16, 8, 12\)"),
        (lambda x, t, y, c: (x[:, :4], t, y, c), r"x must be a \(B, 16, H, W\) latent, got \(2, 4, 8, 12\)"),
        (lambda x, t, y, c: (x[..., :7], t, y, c), r"multiples of 2, got \(2, 16, 8, 7\)"),
        (
            lambda x, t, y, c: (x, t[:1], y, c),
            r"t must hold one timestep per latent, shape \(2,\), got \(1,\)",
        ),
        (lambda x, t, y, c: (x, t, y[:, :-1], c), r"y must be the \(2, 192\) pooled text vectors"),
        (lambda x, t, y, c: (x, t, y, c[0]), r"context must be \(2, L, 256\) text tokens, got \(19, 256\)"),
        (
            lambda x, t, y, c: (x, t, y, c[..., :128]),
            r"context must be \(2, L, 256\) text tokens, got \(2, 19, 128\)",
        ),
        (lambda x, t, y, c: (x, t, y, None), r"context must be \(2, L, 256\) text tokens, got NoneType"),
    ],
)
def test_forward_rejects_wrong_shapes_with_a_clear_error(change, message):
    model = _model("large")
    assert (model.cfg.in_channels, model.cfg.adm_in_channels, model.cfg.context_in_channels) == (16, 192, 256)
    with pytest.raises(ValueError, match=message):
        model(*change(*_inputs(model)))


def test_latent_beyond_the_position_table_is_refused_before_any_compute():
    model = _model("large")
    side = model.cfg.pos_embed_max_size * model.cfg.patch_size + 2
    x = torch.zeros(1, 16, side, 8)
    _, t, y, c = _inputs(model, batch=1)
    with pytest.raises(ValueError, match="exceeds the position table"):
        model(x, t, y, c)


@torch.inference_mode()
def test_prepared_inputs_for_another_batch_size_are_refused(model):
    x, t, y, context = _inputs(model)
    prepared = model.prepare(t[:1], y[:1], context[:1])
    with pytest.raises(ValueError, match="prepared context holds 1 rows for a batch of 2"):
        model.forward_prepared(x, prepared)
    with pytest.raises(ValueError, match="x must be"):
        model.forward_prepared(x[0], model.prepare(t, y, context))

"""Text encoders and SD3 conditioning (SD35_MODEL.md §3.1-3.6, DECISIONS rows 3, 4, 7, 9) on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from app.inference.api.errors import CheckpointMismatchError, InvalidRequestError, MissingComponentError
from app.inference.checkpoints.text_encoder_loading import clip_module_names, load_text_encoders
from app.inference.networks.text_encoders import (
    ClipParams,
    T5Params,
    build_clip_model,
    build_t5_model,
    infer_clip_params,
    infer_t5_params,
)
from app.inference.text.conditioning import TextEncoders
from app.inference.text.tokenization import SpecialIds
from tests.factory.text_models import KEYS_DIR, TINY_TEXT, write_text_models

CONTEXT = 256  # tiny T5 d_model = the tiny MMDiT's context width
POOLED = 192  # tiny CLIP-L 64 + CLIP-G 128
L, G = TINY_TEXT.clip_l_hidden, TINY_TEXT.clip_g_hidden


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sd35")
    write_text_models(folder)
    return folder


def files(folder: Path) -> dict[str, Path]:
    enc = folder / "text_encoders"
    return {
        "clip_l": enc / "clip_l.safetensors",
        "clip_g": enc / "clip_g.safetensors",
        "t5": enc / "t5xxl_fp16.safetensors",
        "tokenizer_dir": folder,
    }


@pytest.fixture(scope="module")
def te(model_dir: Path) -> TextEncoders:
    return load_text_encoders(**files(model_dir), context_width=CONTEXT)


@pytest.fixture(scope="module")
def te_no_t5(model_dir: Path) -> TextEncoders:
    return load_text_encoders(**{**files(model_dir), "t5": None}, context_width=CONTEXT)


# ------------------------------------------------------------------ configs and loading


def test_configs_are_inferred_from_the_tensors(te: TextEncoders) -> None:
    assert te.t5 is not None
    vocab = te.t5.model.shared.weight.shape[0]
    assert te.t5.params == T5Params(vocab, 256, 32, 512, 2, 4, 32)
    cfg_l, cfg_g = te.clip_l.model.config, te.clip_g.model.config
    assert (cfg_l.hidden_size, cfg_l.num_attention_heads, cfg_l.num_hidden_layers) == (64, 1, 3)
    assert (cfg_g.hidden_size, cfg_g.num_attention_heads, cfg_g.num_hidden_layers) == (128, 2, 3)
    assert (cfg_l.hidden_act, cfg_g.hidden_act) == ("quick_gelu", "gelu")
    assert cfg_l.layer_norm_eps == cfg_g.layer_norm_eps == 1e-5
    assert te.t5.model.config.layer_norm_epsilon == 1e-6
    assert te.t5.model.config.dense_act_fn == "gelu_new"  # gated GELU, tanh approximation
    assert (te.context_width, te.pooled_width) == (CONTEXT, POOLED)


def manifest(name: str) -> dict[str, tuple[int, ...]]:
    data = json.loads((KEYS_DIR / f"{name}.json").read_text())
    return {k["key"]: tuple(k["shape"]) for k in data["keys"]}


def test_real_files_infer_the_real_architectures_and_match_the_modules_key_for_key() -> None:
    clip_ids, t5_ids = SpecialIds(49406, 49407, 49407), SpecialIds(None, 1, 0)
    for role, expected in (
        ("clip_l", ClipParams("clip_l", 49408, 768, 3072, 12, 77, 768)),
        ("clip_g", ClipParams("clip_g", 49408, 1280, 5120, 32, 77, 1280)),
    ):
        real = manifest(role)
        params = infer_clip_params(real, role, role)  # type: ignore[arg-type]
        assert params == expected
        assert params.num_heads == {"clip_l": 12, "clip_g": 20}[role]
        module = {k: tuple(v.shape) for k, v in build_clip_model(params, clip_ids).state_dict().items()}
        assert module == clip_module_names(build_clip_model(params, clip_ids), real)
    real = manifest("t5xxl")
    params = infer_t5_params(real, "t5xxl")
    assert params == T5Params(32128, 4096, 64, 10240, 24, 64, 32)
    assert {k: tuple(v.shape) for k, v in build_t5_model(params, t5_ids).state_dict().items()} == real


def test_modules_hold_the_file_tensors(te: TextEncoders, model_dir: Path) -> None:
    stored = load_file(files(model_dir)["t5"])
    assert te.t5 is not None
    for key, value in te.t5.model.state_dict().items():
        assert torch.equal(value, stored[key].float()), key
    assert te.t5.model.shared.weight is te.t5.model.encoder.embed_tokens.weight  # one table in memory
    pos = te.clip_l.model.embeddings.position_ids
    assert torch.equal(pos, torch.arange(77).expand(1, -1))


def test_compute_dtypes(model_dir: Path) -> None:
    te = load_text_encoders(**files(model_dir), dtype=torch.bfloat16, t5_dtype=torch.bfloat16)
    assert te.clip_g.model.text_projection.weight.dtype == torch.bfloat16
    assert te.t5 is not None
    assert te.t5.model.shared.weight.dtype == torch.bfloat16
    cond = te.encode("a cat")
    assert cond.context.dtype == cond.pooled.dtype == torch.float32
    with pytest.raises(InvalidRequestError, match="float16"):
        load_text_encoders(**files(model_dir), t5_dtype=torch.float16)


# ------------------------------------------------------------ conditioning vs Hugging Face run by hand


def oracle_clip(path: Path, with_projection: bool, act: str, eos: int, vocab: int):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    width = {False: L, True: G}[with_projection]
    config = CLIPTextConfig(
        vocab_size=vocab,
        hidden_size=width,
        intermediate_size=4 * width,
        projection_dim=width,
        num_hidden_layers=3,
        num_attention_heads=width // 64,
        max_position_embeddings=77,
        hidden_act=act,
        layer_norm_eps=1e-5,
        eos_token_id=eos,
    )
    model = (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config).eval()
    state = {k: v.float() for k, v in load_file(path).items()}
    if not with_projection and not any(k.startswith("text_model.") for k in model.state_dict()):
        state = {k.removeprefix("text_model."): v for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    return model


def test_conditioning_matches_hugging_face_run_by_hand(te: TextEncoders, model_dir: Path) -> None:
    from transformers import T5Config, T5EncoderModel

    f = files(model_dir)
    prompt = "a photo of a cat riding a red horse"
    tokens = te.tokenizer.tokenize(prompt)
    cond = te.encode(prompt)
    assert cond.context.shape == (1, 154, CONTEXT)
    assert cond.pooled.shape == (1, POOLED)

    eos = te.tokenizer.clip_l_ids.eos
    vocab = te.clip_l.params.vocab_size
    l_ids, g_ids = torch.tensor([tokens.clip_l[0]]), torch.tensor([tokens.clip_g[0]])
    with torch.no_grad():
        lo = oracle_clip(f["clip_l"], False, "quick_gelu", eos, vocab)(
            input_ids=l_ids, output_hidden_states=True
        )
        go = oracle_clip(f["clip_g"], True, "gelu", eos, vocab)(input_ids=g_ids, output_hidden_states=True)
    ctx = cond.context[0]
    # Penultimate hidden state, no final LayerNorm, L columns first, then G, then exact zeros.
    torch.testing.assert_close(ctx[:77, :L], lo.hidden_states[-2][0], rtol=0, atol=1e-5)
    torch.testing.assert_close(ctx[:77, L : L + G], go.hidden_states[-2][0], rtol=0, atol=1e-5)
    assert not torch.allclose(ctx[:77, :L], lo.hidden_states[-1][0], atol=1e-3)
    assert not torch.allclose(ctx[:77, :L], lo.last_hidden_state[0], atol=1e-3)
    assert torch.count_nonzero(ctx[:77, L + G :]) == 0
    # Pooled: CLIP-L unprojected pooler_output, CLIP-G projected text_embeds.
    torch.testing.assert_close(cond.pooled[:, :L], lo.pooler_output, rtol=0, atol=1e-5)
    torch.testing.assert_close(cond.pooled[:, L:], go.text_embeds, rtol=0, atol=1e-5)
    first_eos = tokens.clip_l[0].index(eos)
    torch.testing.assert_close(cond.pooled[0, :L], lo.last_hidden_state[0, first_eos], rtol=0, atol=1e-5)

    cfg = T5Config(
        vocab_size=te.t5.params.vocab_size,
        d_model=256,
        d_kv=32,
        d_ff=512,
        num_layers=2,
        num_heads=4,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
        is_encoder_decoder=False,
        use_cache=False,
    )
    t5 = T5EncoderModel(cfg).eval()
    t5.load_state_dict({k: v.float() for k, v in load_file(f["t5"]).items()}, strict=True)
    with torch.no_grad():
        t5_out = t5(input_ids=torch.tensor([tokens.t5])).last_hidden_state[0]
    torch.testing.assert_close(ctx[77:], t5_out, rtol=0, atol=1e-5)


def test_reference_and_full_agree_for_a_short_weight_free_prompt(te: TextEncoders) -> None:
    prompt = "an astronaut riding a horse on the moon"
    a, b = te.encode(prompt, "full"), te.encode(prompt, "reference")
    assert torch.equal(a.context, b.context)
    assert torch.equal(a.pooled, b.pooled)


def test_long_prompt_shapes(te: TextEncoders) -> None:
    prompt = " ".join(["a beautiful painting of a red dragon over the sea"] * 10)  # 100 words
    tokens = te.tokenizer.tokenize(prompt)
    full = te.encode(prompt, "full")
    assert full.context.shape == (1, 77 * 2 + len(tokens.t5), CONTEXT)
    assert len(tokens.t5) > 77
    ref = te.encode(prompt, "reference")
    ref_t5 = len(te.tokenizer.tokenize(prompt, "reference").t5)
    assert ref.context.shape == (1, 77 + ref_t5, CONTEXT)
    # The first window and the pooled vectors are the same in both modes.
    torch.testing.assert_close(full.context[:, :77], ref.context[:, :77], rtol=0, atol=0)
    assert torch.equal(full.pooled, ref.pooled)
    # The second window is encoded on its own (its own BOS and positions).
    l_second, _ = te.clip_l.encode(tokens.clip_l[1])
    assert torch.equal(full.context[:, 77:154, :L], l_second)


def test_prompt_weights_follow_the_comfyui_rule(te: TextEncoders) -> None:
    tok = te.tokenizer
    weighted, plain = "a (cat:1.5) on a hat", "a cat on a hat"
    tw, tp = tok.tokenize(weighted), tok.tokenize(plain)
    assert tw.clip_l == tp.clip_l
    assert tw.t5 == tp.t5
    cond, base = te.encode(weighted), te.encode(plain)
    w = torch.tensor(tw.clip_weights[0]).view(77, 1)
    assert int((w != 1).sum()) == 1

    for enc, cols, special in (
        (te.clip_l, slice(0, L), tok.clip_l_ids),
        (te.clip_g, slice(L, L + G), tok.clip_g_ids),
    ):
        z = base.context[0, :77, cols]
        z_empty = enc.encode(special.empty(77))[0][0]
        expected = torch.where(w != 1, (z - z_empty) * w + z_empty, z)
        assert torch.equal(cond.context[0, :77, cols], expected)
        assert not torch.equal(cond.context[0, :77, cols], z)

    assert te.t5 is not None
    assert tok.t5_ids is not None
    wt = torch.tensor(tw.t5_weights).view(-1, 1)
    assert int((wt != 1).sum()) >= 1
    z = base.context[0, 77:]
    z_empty = te.t5.encode(tok.t5_ids.empty(len(tw.t5)))[0]
    assert torch.equal(cond.context[0, 77:], torch.where(wt != 1, (z - z_empty) * wt + z_empty, z))
    assert torch.equal(cond.pooled, base.pooled)  # pooled vectors are never weighted

    ref_w, ref_p = te.encode(weighted, "reference"), te.encode(plain, "reference")
    assert torch.equal(ref_w.context, ref_p.context)  # the reference ignores weights


def test_without_t5_the_t5_block_is_exact_zeros(te: TextEncoders, te_no_t5: TextEncoders) -> None:
    prompt = "a photo of a cat"
    cond, with_t5 = te_no_t5.encode(prompt), te.encode(prompt)
    assert cond.context.shape == (1, 154, CONTEXT)
    assert torch.count_nonzero(cond.context[:, 77:]) == 0
    assert torch.equal(cond.context[:, :77], with_t5.context[:, :77])
    assert torch.equal(cond.pooled, with_t5.pooled)
    switched_off = te.encode(prompt, use_t5=False)
    assert torch.equal(switched_off.context, cond.context)
    long = te_no_t5.encode(" ".join(["cat"] * 100))
    assert long.context.shape == (1, 77 * 2 + 77, CONTEXT)


# ------------------------------------------------------------------ errors and file variants


def test_missing_t5_names_the_no_t5_switch(model_dir: Path) -> None:
    with pytest.raises(MissingComponentError, match="--no-t5"):
        load_text_encoders(**{**files(model_dir), "t5": model_dir / "nope.safetensors"})


def test_missing_clip_file(model_dir: Path) -> None:
    with pytest.raises(MissingComponentError, match="CLIP-G"):
        load_text_encoders(**{**files(model_dir), "clip_g": model_dir / "nope.safetensors"})


def test_context_width_must_agree(model_dir: Path) -> None:
    with pytest.raises(CheckpointMismatchError, match="4096"):
        load_text_encoders(**files(model_dir), context_width=4096)
    with pytest.raises(InvalidRequestError, match="context width"):
        load_text_encoders(**{**files(model_dir), "t5": None})


def test_a_missing_key_names_the_file(model_dir: Path, tmp_path: Path) -> None:
    f = files(model_dir)
    state = load_file(f["clip_g"])
    del state["text_model.encoder.layers.1.mlp.fc2.bias"]
    broken = tmp_path / "clip_g_broken.safetensors"
    save_file(state, str(broken))
    with pytest.raises(CheckpointMismatchError, match="clip_g_broken") as err:
        load_text_encoders(**{**f, "clip_g": broken})
    assert "layers.1.mlp.fc2.bias" in str(err.value)

    state = load_file(f["t5"])
    del state["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    save_file(state, str(tmp_path / "t5_broken.safetensors"))
    with pytest.raises(CheckpointMismatchError, match="t5_broken"):
        load_text_encoders(**{**f, "t5": tmp_path / "t5_broken.safetensors"})


def test_all_in_one_file_with_prefixes(te: TextEncoders, model_dir: Path, tmp_path: Path) -> None:
    f = files(model_dir)
    merged = {"model.diffusion_model.x_embedder.proj.weight": torch.zeros(4, 4, dtype=torch.float16)}
    for name in ("clip_l", "clip_g", "t5xxl"):
        path = f["t5" if name == "t5xxl" else name]
        merged |= {f"text_encoders.{name}.transformer.{k}": v for k, v in load_file(path).items()}
    aio = tmp_path / "sd3.5_all_in_one.safetensors"
    save_file(merged, str(aio))
    te2 = load_text_encoders(
        clip_l=aio,
        clip_g=aio,
        t5=aio,
        tokenizer_dir=model_dir,
        clip_l_prefix="text_encoders.clip_l.transformer.",
        clip_g_prefix="text_encoders.clip_g.transformer.",
        t5_prefix="text_encoders.t5xxl.transformer.",
    )
    a, b = te2.encode("a red cat"), te.encode("a red cat")
    assert torch.equal(a.context, b.context)
    assert torch.equal(a.pooled, b.pooled)
    with pytest.raises(CheckpointMismatchError, match="prefix"):
        load_text_encoders(**{**f, "clip_l": aio}, clip_l_prefix="text_encoders.clip_x.")


def test_file_variants_load_the_same(te: TextEncoders, model_dir: Path, tmp_path: Path) -> None:
    f = files(model_dir)
    # CLIP-L with position_ids and an (identity) text_projection, as some conversions write it: both ignored.
    clip_l = load_file(f["clip_l"])
    clip_l["text_model.embeddings.position_ids"] = torch.arange(77).view(1, 77)
    clip_l["text_projection.weight"] = 3 * torch.eye(L, dtype=torch.float16)
    save_file(clip_l, str(tmp_path / "clip_l.safetensors"))
    # CLIP-G with flattened names (no `text_model.`).
    clip_g = {k.removeprefix("text_model."): v for k, v in load_file(f["clip_g"]).items()}
    save_file(clip_g, str(tmp_path / "clip_g.safetensors"))
    # T5 with one embedding table only, under either name.
    t5 = load_file(f["t5"])
    only_shared = {k: v for k, v in t5.items() if k != "encoder.embed_tokens.weight"}
    only_embed = {k: v for k, v in t5.items() if k != "shared.weight"}
    save_file(only_shared, str(tmp_path / "t5_shared.safetensors"))
    save_file(only_embed, str(tmp_path / "t5_embed.safetensors"))

    expected = te.encode("a photo of a dog!")
    for t5_file in ("t5_shared", "t5_embed"):
        te2 = load_text_encoders(
            clip_l=tmp_path / "clip_l.safetensors",
            clip_g=tmp_path / "clip_g.safetensors",
            t5=tmp_path / f"{t5_file}.safetensors",
            tokenizer_dir=model_dir,
        )
        got = te2.encode("a photo of a dog!")
        assert torch.equal(got.context, expected.context)
        assert torch.equal(got.pooled, expected.pooled)


def test_scaled_fp8_t5_is_dequantised(te: TextEncoders, model_dir: Path, tmp_path: Path) -> None:
    f = files(model_dir)
    t5 = load_file(f["t5"])
    scaled: dict[str, torch.Tensor] = {"scaled_fp8": torch.zeros(2, dtype=torch.float8_e4m3fn)}
    plain: dict[str, torch.Tensor] = {}
    for key, w in t5.items():
        if key.endswith(("q.weight", "wi_0.weight")):  # ComfyUI quantises Linear weights only
            scale = torch.tensor(0.01)
            w8 = (w.float() / scale).to(torch.float8_e4m3fn)
            base = key.removesuffix("weight")
            scaled |= {key: w8, base + "scale_weight": scale, base + "scale_input": torch.tensor(1.0)}
            plain[key] = w8.float() * scale
        else:
            scaled[key] = plain[key] = w
    save_file(scaled, str(tmp_path / "t5xxl_fp8_e4m3fn_scaled.safetensors"))
    save_file(plain, str(tmp_path / "t5_dequantised.safetensors"))
    a = load_text_encoders(**{**f, "t5": tmp_path / "t5xxl_fp8_e4m3fn_scaled.safetensors"})
    b = load_text_encoders(**{**f, "t5": tmp_path / "t5_dequantised.safetensors"})
    assert torch.equal(a.encode("a red cat").context, b.encode("a red cat").context)
    assert not torch.equal(a.encode("a red cat").context, te.encode("a red cat").context)  # fp8 rounding

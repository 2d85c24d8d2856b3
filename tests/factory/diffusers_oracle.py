"""diffusers' StableDiffusion3Pipeline assembled from a tiny snapshot, as an independent oracle.

Each component is converted the way diffusers itself converts single files (its own converters), and the text
encoders are the transformers classes diffusers uses, with configs written from the tiny spec (not from our
loader). CLIP-L gets the identity projection that diffusers' single-file loader inserts for SD3 files.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from tests.factory.mmdit_model import PREFIX
from tests.factory.text_models import TINY_TEXT
from tests.factory.vae_model import TINY_BLOCK_OUT_CHANNELS


def diffusers_transformer(state: dict[str, torch.Tensor]):
    from diffusers import SD3Transformer2DModel
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

    sd = {k: v.float() for k, v in state.items() if k.startswith(PREFIX)}
    depth = len({k.split(".")[3] for k in sd if ".joint_blocks." in k})
    hidden, _, patch, _ = sd[PREFIX + "x_embedder.proj.weight"].shape
    head_dim = sd[PREFIX + "joint_blocks.0.x_block.attn.ln_q.weight"].shape[0]
    dual = sorted({int(k.split(".")[3]) for k in sd if ".x_block.attn2." in k})
    model = SD3Transformer2DModel(
        sample_size=32,
        patch_size=patch,
        in_channels=16,
        out_channels=16,
        num_layers=depth,
        attention_head_dim=head_dim,
        num_attention_heads=hidden // head_dim,
        joint_attention_dim=sd[PREFIX + "context_embedder.weight"].shape[1],
        caption_projection_dim=hidden,
        pooled_projection_dim=sd[PREFIX + "y_embedder.mlp.0.weight"].shape[1],
        pos_embed_max_size=int(sd[PREFIX + "pos_embed"].shape[1] ** 0.5),
        dual_attention_layers=tuple(dual),
        qk_norm="rms_norm",
    )
    model.load_state_dict(convert_sd3_transformer_checkpoint_to_diffusers(sd), strict=True)
    return model.eval()


def diffusers_vae(state: dict[str, torch.Tensor]):
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    config = {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
        "block_out_channels": list(TINY_BLOCK_OUT_CHANNELS),
        "layers_per_block": 2,
        "act_fn": "silu",
        "latent_channels": 16,
        "norm_num_groups": 32,
        "use_quant_conv": False,
        "use_post_quant_conv": False,
        "scaling_factor": 1.5305,
        "shift_factor": 0.0609,
    }
    vae_state = {k: v.float() for k, v in state.items() if k.startswith("first_stage_model.")}
    model = AutoencoderKL(**config)
    model.load_state_dict(convert_ldm_vae_checkpoint(vae_state, config), strict=True)
    return model.eval()


def _clip(path: Path, hidden: int, act: str, vocab: int):
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=TINY_TEXT.clip_layers,
        num_attention_heads=hidden // 64,
        max_position_embeddings=77,
        hidden_act=act,
        projection_dim=hidden,
        layer_norm_eps=1e-5,
        bos_token_id=vocab - 2,
        eos_token_id=vocab - 1,
        pad_token_id=vocab - 1,
    )
    model = CLIPTextModelWithProjection(config)
    sd = {k: v.float() for k, v in load_file(str(path)).items()}
    sd.setdefault("text_projection.weight", torch.eye(hidden))  # diffusers' single-file rule for CLIP-L
    model.load_state_dict(sd, strict=True)
    return model.eval()


def _t5(path: Path):
    from transformers import T5Config, T5EncoderModel

    sd = {k: v.float() for k, v in load_file(str(path)).items()}
    s = TINY_TEXT
    config = T5Config(
        vocab_size=sd["shared.weight"].shape[0],
        d_model=s.t5_d_model,
        d_kv=s.t5_d_kv,
        d_ff=s.t5_d_ff,
        num_layers=s.t5_layers,
        num_heads=s.t5_heads,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu",
        layer_norm_epsilon=1e-6,
        is_encoder_decoder=False,
        use_cache=False,
        tie_word_embeddings=True,
    )
    model = T5EncoderModel(config)
    model.load_state_dict(sd, strict=False)
    return model.eval()


def diffusers_pipeline(snapshot: Path, checkpoint: Path):
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline
    from transformers import CLIPTokenizer, T5TokenizerFast

    state = load_file(str(checkpoint))
    tok = CLIPTokenizer.from_pretrained(str(snapshot / "tokenizer"))
    vocab = len(tok)
    te = snapshot / "text_encoders"
    return StableDiffusion3Pipeline(
        transformer=diffusers_transformer(state),
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
        vae=diffusers_vae(state),
        text_encoder=_clip(te / "clip_l.safetensors", TINY_TEXT.clip_l_hidden, "quick_gelu", vocab),
        tokenizer=tok,
        text_encoder_2=_clip(te / "clip_g.safetensors", TINY_TEXT.clip_g_hidden, "gelu", vocab),
        tokenizer_2=CLIPTokenizer.from_pretrained(str(snapshot / "tokenizer_2")),
        text_encoder_3=_t5(te / "t5xxl_fp16.safetensors"),
        tokenizer_3=T5TokenizerFast.from_pretrained(str(snapshot / "tokenizer_3")),
    )

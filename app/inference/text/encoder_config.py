"""Text-encoder architectures inferred from checkpoint tensors, and the Hugging Face modules built from them.

CLIP-L / CLIP-G (transformers `CLIPTextModel` / `CLIPTextModelWithProjection`) and T5-XXL (`T5EncoderModel`),
always built on `meta` from a config read off the tensor shapes, never `from_pretrained` by hub name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from app.inference.api.errors import CheckpointMismatchError
from app.inference.checkpoints.weights import read_header
from app.inference.text.tokenization import SpecialIds

ClipRole = Literal["clip_l", "clip_g"]
Shapes = dict[str, tuple[int, ...]]

CLIP_HEAD_DIM = 64  # every CLIP text tower SD3 uses has 64-wide heads
CLIP_LAYER_NORM_EPS = 1e-5
T5_LAYER_NORM_EPS = 1e-6
T5_MAX_DISTANCE = 128  # relative-position bucketing constant of T5 v1.1; not visible in the weights
T5_NUM_BUCKETS = 32  # relative-position buckets of every T5 v1.1

ENCODER_LABELS = {"clip_l": "CLIP-L", "clip_g": "CLIP-G", "t5": "T5-XXL"}
CLIP_ACTIVATIONS = {
    "clip_l": "quick_gelu",
    "clip_g": "gelu",
}  # OpenAI CLIP-L uses quick_gelu, OpenCLIP bigG exact GELU
CLIP_LAYER_KEY = re.compile(r"^text_model\.encoder\.layers\.(\d+)\.")
T5_BLOCK_KEY = re.compile(r"^encoder\.block\.(\d+)\.")
T5_EMBEDDING_KEYS = ("shared.weight", "encoder.embed_tokens.weight")


@dataclass(frozen=True, slots=True)
class ClipParams:
    role: ClipRole
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    max_positions: int
    projection_dim: int  # CLIP-G's text_projection output; CLIP-L's projection is never used

    @property
    def num_heads(self) -> int:
        return self.hidden_size // CLIP_HEAD_DIM


@dataclass(frozen=True, slots=True)
class T5Params:
    vocab_size: int
    d_model: int
    d_kv: int
    d_ff: int
    num_layers: int
    num_heads: int
    num_buckets: int


def _shape(shapes: Shapes, key: str, source: str, what: str) -> tuple[int, ...]:
    if key not in shapes:
        raise CheckpointMismatchError(f"{source}: not a {what}: tensor {key!r} is missing")
    return shapes[key]


def _count_layers(shapes: Shapes, pattern: re.Pattern[str], source: str, what: str) -> int:
    found = {int(m.group(1)) for k in shapes if (m := pattern.match(k))}
    if not found or found != set(range(max(found) + 1)):
        raise CheckpointMismatchError(f"{source}: not a {what}: layers {sorted(found)[:8]} are not 0..n-1")
    return max(found) + 1


def infer_clip_params(shapes: Shapes, role: ClipRole, source: str) -> ClipParams:
    """Read a CLIP text tower's architecture from its (canonical `text_model.`) tensor shapes."""
    what = f"{ENCODER_LABELS[role]} text encoder"
    vocab, hidden = _shape(shapes, "text_model.embeddings.token_embedding.weight", source, what)
    positions, _ = _shape(shapes, "text_model.embeddings.position_embedding.weight", source, what)
    ffn, _ = _shape(shapes, "text_model.encoder.layers.0.mlp.fc1.weight", source, what)
    if hidden % CLIP_HEAD_DIM:
        raise CheckpointMismatchError(f"{source}: not a {what}: width {hidden} is not a multiple of 64")
    proj = shapes.get("text_projection.weight", (hidden, hidden))[0]
    layers = _count_layers(shapes, CLIP_LAYER_KEY, source, what)
    return ClipParams(role, vocab, hidden, ffn, layers, positions, proj)


def infer_t5_params(shapes: Shapes, source: str) -> T5Params:
    """Read a T5 v1.1 encoder's architecture from its tensor shapes (heads from relative_attention_bias)."""
    what = "T5-XXL text encoder"
    embed_key = "encoder.embed_tokens.weight" if "encoder.embed_tokens.weight" in shapes else "shared.weight"
    vocab, d_model = _shape(shapes, embed_key, source, what)
    attn = "encoder.block.0.layer.0.SelfAttention."
    buckets, heads = _shape(shapes, attn + "relative_attention_bias.weight", source, what)
    if buckets != T5_NUM_BUCKETS:  # the heads are read off this tensor: swapped dimensions would change them
        raise CheckpointMismatchError(
            f"{source}: not a {what}: {attn}relative_attention_bias.weight is {buckets}×{heads}, but T5 v1.1 has "
            f"{T5_NUM_BUCKETS} position buckets (× heads); the file is damaged"
        )
    tables = [shapes[k] for k in T5_EMBEDDING_KEYS if k in shapes]
    if len(set(tables)) > 1:  # the file stores the embedding twice; only one copy is read
        raise CheckpointMismatchError(
            f"{source}: not a {what}: its two embedding tables differ in shape {tables}"
        )
    inner, _ = _shape(shapes, attn + "q.weight", source, what)
    if "encoder.block.0.layer.1.DenseReluDense.wi.weight" in shapes:
        raise CheckpointMismatchError(f"{source}: a T5 v1.0 encoder (no gated GELU); SD3.5 needs T5 v1.1 XXL")
    d_ff, _ = _shape(shapes, "encoder.block.0.layer.1.DenseReluDense.wi_0.weight", source, what)
    if inner % heads:
        raise CheckpointMismatchError(f"{source}: not a {what}: attention width {inner} vs {heads} heads")
    layers = _count_layers(shapes, T5_BLOCK_KEY, source, what)
    return T5Params(vocab, d_model, inner // heads, d_ff, layers, heads, buckets)


def file_shapes(path: Path, prefix: str) -> Shapes:
    header = read_header(path)
    shapes = {k[len(prefix) :]: info.shape for k, info in header.tensors.items() if k.startswith(prefix)}
    if not shapes:
        raise CheckpointMismatchError(f"{path}: no tensors under the prefix {prefix!r}")
    return shapes


def canonical_clip_names(shapes: dict[str, Any]) -> dict[str, Any]:
    """Accept flattened CLIPTextModel names (`embeddings.…`) as well as the files' `text_model.…` names."""
    if any(k.startswith("text_model.") for k in shapes):
        return shapes
    return {k if k == "text_projection.weight" else "text_model." + k: v for k, v in shapes.items()}


def dequantize_scaled_fp8(state: dict[str, torch.Tensor]) -> None:
    """ComfyUI "scaled fp8" files: W = float(W_fp8) * scale_weight; marker and input scales are dropped."""
    state.pop("scaled_fp8", None)
    for key in [k for k in state if k.endswith((".scale_weight", ".scale_input"))]:
        scale = state.pop(key)
        if key.endswith(".scale_weight"):
            wkey = key[: -len("scale_weight")] + "weight"
            state[wkey] = state[wkey].to(torch.float32) * scale.to(torch.float32)


def check_materialised(model: torch.nn.Module, source: str) -> None:
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:  # a loader bug, not a user error: every tensor must come from the file or be rebuilt here
        raise RuntimeError(f"{source}: tensors left uninitialised after loading: {left[:3]}")


def build_clip_model(params: ClipParams, special: SpecialIds) -> torch.nn.Module:
    """The HF module for `params`, on `meta`. CLIP-L is a plain CLIPTextModel: its file has no
    text_projection, and its projection must never be applied (SD35_MODEL.md §3.2)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=params.vocab_size,
        hidden_size=params.hidden_size,
        intermediate_size=params.intermediate_size,
        projection_dim=params.projection_dim,
        num_hidden_layers=params.num_layers,
        num_attention_heads=params.num_heads,
        max_position_embeddings=params.max_positions,
        hidden_act=CLIP_ACTIVATIONS[params.role],
        layer_norm_eps=CLIP_LAYER_NORM_EPS,
        bos_token_id=special.bos,
        eos_token_id=special.eos,
        pad_token_id=special.pad,
    )
    with torch.device("meta"):
        return (CLIPTextModel if params.role == "clip_l" else CLIPTextModelWithProjection)(config)


def clip_module_names(model: torch.nn.Module, state: dict[str, Any]) -> dict[str, Any]:
    """Canonical `text_model.` file names -> the module's own names (flattened in transformers >= 5.6)."""
    if any(k.startswith("text_model.") for k in model.state_dict()):
        return state
    return {k.removeprefix("text_model."): v for k, v in state.items()}


def build_t5_model(params: T5Params, special: SpecialIds) -> torch.nn.Module:
    """The HF T5EncoderModel for `params`, on `meta`."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=params.vocab_size,
        d_model=params.d_model,
        d_kv=params.d_kv,
        d_ff=params.d_ff,
        num_layers=params.num_layers,
        num_heads=params.num_heads,
        relative_attention_num_buckets=params.num_buckets,
        relative_attention_max_distance=T5_MAX_DISTANCE,
        dropout_rate=0.0,
        layer_norm_epsilon=T5_LAYER_NORM_EPS,
        feed_forward_proj="gated-gelu",  # wo(gelu_tanh(wi_0 x) * wi_1 x)
        is_encoder_decoder=False,
        use_cache=False,
        pad_token_id=special.pad,
        eos_token_id=special.eos,
    )
    with torch.device("meta"):
        return T5EncoderModel(config)

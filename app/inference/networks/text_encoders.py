"""The CLIP-L, CLIP-G and T5-XXL text encoder networks (SD35_MODEL.md §3.1, 3.2, 3.5), their architectures
inferred from tensor shapes, and the Hugging Face transformers modules built from them.

CLIP-L / CLIP-G (`CLIPTextModel` / `CLIPTextModelWithProjection`) and T5-XXL (`T5EncoderModel`) are always
built on `meta` from a config read off the tensor shapes, never `from_pretrained` by hub name; their weights
are assigned by checkpoints/text_encoder_loading.py. The prompt -> conditioning assembly is text/conditioning.py.

Features: CLIP `hidden_states[-2]` (penultimate layer, no final LayerNorm), run without an attention mask
because the padding positions are part of the conditioning; T5 `last_hidden_state`, no mask. Pooled: the
final-LN'd last layer at the first EOS; CLIP-L unprojected, CLIP-G through `text_projection`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import torch

from app.inference.api.errors import CheckpointMismatchError

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


class TokenIds(Protocol):
    """The special ids a model config records (the tokenizer's `SpecialIds`); `bos` is None for T5."""

    @property
    def bos(self) -> int | None: ...
    @property
    def eos(self) -> int: ...
    @property
    def pad(self) -> int: ...


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


def build_clip_model(params: ClipParams, special: TokenIds) -> torch.nn.Module:
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


def build_t5_model(params: T5Params, special: TokenIds) -> torch.nn.Module:
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


class ClipTextEncoder:
    """One CLIP text tower: `encode(ids)` -> (penultimate features, pooled vector)."""

    def __init__(self, model: torch.nn.Module, params: ClipParams, eos_id: int):
        self.model = model
        self.params = params
        self.eos_id = eos_id

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def pooled_width(self) -> int:
        return self.params.projection_dim if self.params.role == "clip_g" else self.params.hidden_size

    @torch.inference_mode()
    def encode(self, ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """ids (n,) -> features (1, n, hidden) and pooled (1, pooled_width), both float32."""
        x = torch.tensor([list(ids)], dtype=torch.long, device=self.device)  # (1, n)
        out = self.model(input_ids=x, output_hidden_states=True)  # no attention_mask: padding is conditioning
        features = out.hidden_states[-2]  # output of the penultimate layer, before final_layer_norm
        pooled = out.last_hidden_state[:, list(ids).index(self.eos_id)]  # first EOS (the reference's argmax)
        if self.params.role == "clip_g":
            pooled = self.model.text_projection(pooled)
        return features.float(), pooled.float()


class T5TextEncoder:
    """T5 v1.1 encoder: `encode(ids)` -> last_hidden_state (final RMSNorm applied), no mask."""

    def __init__(self, model: torch.nn.Module, params: T5Params):
        self.model = model
        self.params = params

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def encode(self, ids: Sequence[int]) -> torch.Tensor:
        """ids (n,) -> (1, n, d_model) float32."""
        x = torch.tensor([list(ids)], dtype=torch.long, device=self.device)  # (1, n)
        return self.model(input_ids=x).last_hidden_state.float()

"""Which SD3.5 components a safetensors file holds, under which key prefix and in which layout — from the header
alone (SD35_MODEL.md §5).

  single file       model.diffusion_model.* (MMDiT) + first_stage_model.* (VAE)
  all-in-one        the same plus text_encoders.{clip_l,clip_g,t5xxl}.transformer.*
  standalone        one component without a prefix: text_model.* (CLIP), encoder.block.* (T5), encoder.*/decoder.*
                    (VAE), x_embedder.* / joint_blocks.* (MMDiT only)
  diffusers         transformer_blocks.* (SD3Transformer2DModel), encoder.down_blocks.* (AutoencoderKL)
Each may be fp32, fp16, bf16, float8_e4m3fn, or ComfyUI scaled fp8 (`*.scale_weight` + a `scaled_fp8` marker).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from app.inference.api.variants import MMDIT_PREFIX, VAE_PREFIX
from app.inference.checkpoints.conversion import (
    is_diffusers_transformer,
    is_diffusers_vae,
    recipe_shapes,
    transformer_recipes,
)
from app.inference.checkpoints.fp8 import FP8_NAMES, MARKER, SCALE_WEIGHT, is_scale_key
from app.inference.checkpoints.weights import SafetensorsHeader

Layout = Literal["single-file", "diffusers"]
COMPONENTS = ("mmdit", "vae", "clip_l", "clip_g", "t5")
LABELS = {
    "mmdit": "MMDiT",
    "vae": "VAE",
    "clip_l": "CLIP-L",
    "clip_g": "CLIP-G",
    "t5": "T5-XXL",
    "clip": "CLIP",
    "tokenizer": "CLIP tokenizer",
    "t5_tokenizer": "T5 tokenizer",
}
TEXT_ENCODER_PREFIXES = {
    "clip_l": "text_encoders.clip_l.transformer.",
    "clip_g": "text_encoders.clip_g.transformer.",
    "t5": "text_encoders.t5xxl.transformer.",
}
# Known widths of the real encoders (SD35_MODEL.md §5.1); other widths are only test models.
CLIP_WIDTHS = {768: "clip_l", 1280: "clip_g"}
_DTYPE_LABELS = {
    "F32": "fp32",
    "F16": "fp16",
    "BF16": "bf16",
    "F8_E4M3": "fp8_e4m3fn",
    "F8_E5M2": "fp8_e5m2",
    "F64": "fp64",
}
_T5_FP8_LINEAR = re.compile(r"(^|\.)(SelfAttention\.[qkvo]|DenseReluDense\.wi_[01])$")


@dataclass(frozen=True, slots=True)
class ComponentHit:
    """One component found in a file."""

    component: str  # "mmdit" | "vae" | "clip_l" | "clip_g" | "t5" | "clip" (a CLIP whose role is unknown)
    prefix: str  # key prefix inside the file ("" for standalone files)
    layout: Layout
    params: int  # parameters stored (scale tensors excluded)
    nbytes: int  # bytes on disk
    dtype: str  # "bf16", "fp16", "fp32", "fp8_e4m3fn", "fp8_e4m3fn scaled", ...
    width: int = 0  # CLIP hidden size, T5 d_model, or the MMDiT's context width
    fp8_params: int = 0  # parameters that fp8 storage would hold in 1 byte (Linear weights it applies to)

    @property
    def scaled_fp8(self) -> bool:
        return self.dtype.endswith("scaled")

    @property
    def is_fp8(self) -> bool:
        return self.dtype.startswith("fp8")


@dataclass(frozen=True, slots=True)
class ComponentFile:
    """Where one component's tensors live: a file (or a sharded index) and the key prefix inside it."""

    path: Path
    prefix: str = ""  # "" for standalone files
    layout: Layout = "single-file"
    dtype: str = ""  # as stored, e.g. "bf16" or "fp8_e4m3fn scaled" ("" when not read)
    params: int = 0
    nbytes: int = 0  # bytes on disk
    fp8_params: int = 0  # parameters in the Linear layers that fp8 storage keeps in 1 byte
    width: int = 0  # CLIP hidden size, T5 d_model, MMDiT context width, VAE latent channels

    @classmethod
    def from_hit(cls, path: Path, hit: ComponentHit) -> ComponentFile:
        return cls(path, hit.prefix, hit.layout, hit.dtype, hit.params, hit.nbytes, hit.fp8_params, hit.width)

    @property
    def is_fp8(self) -> bool:
        return self.dtype.startswith("fp8")


def mmdit_fp8_eligible(module_name: str) -> bool:
    """MMDiT Linear layers stored in fp8 by the fp8 plans: every Linear inside the joint blocks."""
    return module_name.startswith("joint_blocks.")


def t5_fp8_eligible(module_name: str) -> bool:
    """T5 Linear layers stored in fp8: attention q/k/v/o and the gated-GELU inputs. `wo` stays in 16/32 bits:
    transformers casts its input to `wo.weight.dtype` (the T5 v1.1 fp16-overflow guard)."""
    return _T5_FP8_LINEAR.search(module_name) is not None


def _has(header: SafetensorsHeader, key: str) -> bool:
    return key in header.tensors


def _summary(
    header: SafetensorsHeader, prefix: str, skip_prefixes: tuple[str, ...] = ()
) -> tuple[int, int, str]:
    """(params, bytes, dtype label) of the tensors under `prefix` (minus `skip_prefixes`)."""
    params = nbytes = 0
    by_dtype: dict[str, int] = {}
    scaled = False
    for key, info in header.tensors.items():
        if not key.startswith(prefix) or (skip_prefixes and key.startswith(skip_prefixes)):
            continue
        nbytes += info.nbytes
        if is_scale_key(key[len(prefix) :]):
            scaled = scaled or key.endswith((SCALE_WEIGHT, MARKER))
            continue
        params += info.numel
        by_dtype[info.dtype] = by_dtype.get(info.dtype, 0) + info.nbytes
    if not by_dtype:
        return params, nbytes, "empty"
    ranked = sorted(by_dtype.items(), key=lambda kv: -kv[1])
    label = _DTYPE_LABELS.get(ranked[0][0], ranked[0][0].lower())
    if ranked[0][0] in FP8_NAMES and scaled:
        label += " scaled"
    if len(ranked) > 1 and ranked[1][1] > 0.1 * nbytes:
        label += f" + {_DTYPE_LABELS.get(ranked[1][0], ranked[1][0].lower())}"
    return params, nbytes, label


def _linear_params(header: SafetensorsHeader, prefix: str, eligible: Callable[[str], bool]) -> int:
    """Parameters of the 2-D `.weight` tensors under `prefix` whose module name is `eligible`."""
    total = 0
    for key, info in header.tensors.items():
        is_linear = key.startswith(prefix) and key.endswith(".weight") and len(info.shape) == 2
        if is_linear and eligible(key[len(prefix) : -len(".weight")]):
            total += info.numel
    return total


def clip_role(header: SafetensorsHeader, prefix: str, hint: str = "") -> str:
    """ "clip_l" / "clip_g" from the real widths (768 / 1280), else from a name hint, else "clip"."""
    for key in ("text_model.embeddings.token_embedding.weight", "embeddings.token_embedding.weight"):
        if _has(header, prefix + key):
            width = header.tensors[prefix + key].shape[-1]
            if width in CLIP_WIDTHS:
                return CLIP_WIDTHS[width]
    h = hint.lower().replace("-", "_")
    if "clip_g" in h or "text_encoder_2" in h or "clipg" in h:
        return "clip_g"
    if "clip_l" in h or re.search(r"text_encoder(/|$)", h) or "clipl" in h:
        return "clip_l"
    return "clip"


def _clip_width(header: SafetensorsHeader, prefix: str) -> int:
    for key in ("text_model.embeddings.token_embedding.weight", "embeddings.token_embedding.weight"):
        if _has(header, prefix + key):
            return header.tensors[prefix + key].shape[-1]
    return 0


def _is_clip(header: SafetensorsHeader, prefix: str) -> bool:
    return _has(header, prefix + "text_model.embeddings.token_embedding.weight") or (
        _has(header, prefix + "embeddings.token_embedding.weight")
        and _has(header, prefix + "encoder.layers.0.self_attn.q_proj.weight")
    )


def _is_t5(header: SafetensorsHeader, prefix: str) -> bool:
    return _has(header, prefix + "encoder.block.0.layer.0.SelfAttention.q.weight")


def _t5_width(header: SafetensorsHeader, prefix: str) -> int:
    return header.tensors[prefix + "encoder.block.0.layer.0.SelfAttention.q.weight"].shape[-1]


def identify_components(header: SafetensorsHeader, hint: str = "") -> list[ComponentHit]:
    """Every SD3.5 component in the file; `hint` (the path) only decides the role of a CLIP of unknown width."""
    hits: list[ComponentHit] = []
    te_prefixes = tuple(TEXT_ENCODER_PREFIXES.values())
    # MMDiT
    if _has(header, MMDIT_PREFIX + "x_embedder.proj.weight"):
        hits.append(_mmdit_hit(header, MMDIT_PREFIX, "single-file"))
    elif _has(header, "x_embedder.proj.weight") and _has(header, "joint_blocks.0.x_block.attn.qkv.weight"):
        hits.append(_mmdit_hit(header, "", "single-file"))
    elif is_diffusers_transformer(header.tensors):
        hits.append(_mmdit_hit(header, "", "diffusers"))
    # VAE
    if _has(header, VAE_PREFIX + "decoder.conv_in.weight"):
        latent = header.tensors[VAE_PREFIX + "decoder.conv_in.weight"].shape[1]
        hits.append(_hit(header, "vae", VAE_PREFIX, "single-file", width=latent))
    elif _has(header, "decoder.conv_in.weight") and _has(header, "encoder.conv_in.weight"):
        layout: Layout = "diffusers" if is_diffusers_vae(header.tensors) else "single-file"
        hits.append(_hit(header, "vae", "", layout, width=header.tensors["decoder.conv_in.weight"].shape[1]))
    # Text encoders: the all-in-one prefixes name their role; a standalone file is recognised by its keys.
    for role, prefix in TEXT_ENCODER_PREFIXES.items():
        if role == "t5" and _is_t5(header, prefix):
            hits.append(
                _hit(header, "t5", prefix, "single-file", width=_t5_width(header, prefix), eligible=True)
            )
        elif role != "t5" and _is_clip(header, prefix):
            hits.append(_hit(header, role, prefix, "single-file", width=_clip_width(header, prefix)))
    if not any(h.prefix in te_prefixes for h in hits):
        if _is_clip(header, ""):
            role = clip_role(header, "", hint)
            hits.append(_hit(header, role, "", "single-file", width=_clip_width(header, "")))
        elif _is_t5(header, ""):
            hits.append(_hit(header, "t5", "", "single-file", width=_t5_width(header, ""), eligible=True))
    return hits


def _hit(
    header: SafetensorsHeader,
    component: str,
    prefix: str,
    layout: Layout,
    *,
    width: int = 0,
    eligible: bool = False,
) -> ComponentHit:
    skip = (*TEXT_ENCODER_PREFIXES.values(), MMDIT_PREFIX, VAE_PREFIX) if prefix == "" else ()
    params, nbytes, dtype = _summary(header, prefix, skip)
    fp8_params = _linear_params(header, prefix, t5_fp8_eligible) if eligible else 0
    return ComponentHit(component, prefix, layout, params, nbytes, dtype, width, fp8_params)


def _mmdit_hit(header: SafetensorsHeader, prefix: str, layout: Layout) -> ComponentHit:
    if layout == "diffusers":
        params, nbytes, dtype = _summary(header, "")
        fp8 = _linear_params(header, "", lambda name: name.startswith("transformer_blocks."))
        width = (
            header.tensors["context_embedder.weight"].shape[-1]
            if _has(header, "context_embedder.weight")
            else 0
        )
        return ComponentHit("mmdit", "", layout, params, nbytes, dtype, width, fp8)
    skip = (VAE_PREFIX, *TEXT_ENCODER_PREFIXES.values()) if prefix == "" else ()
    params, nbytes, dtype = _summary(header, prefix, skip)
    fp8 = _linear_params(header, prefix, mmdit_fp8_eligible)
    ctx = prefix + "context_embedder.weight"
    width = header.tensors[ctx].shape[-1] if _has(header, ctx) else 0
    return ComponentHit("mmdit", prefix, layout, params, nbytes, dtype, width, fp8)


def mmdit_shapes(header: SafetensorsHeader, hit: ComponentHit) -> dict[str, tuple[int, ...]]:
    """The MMDiT's `{key: shape}` in our layout (prefix removed, diffusers names converted), from the header."""
    if hit.layout == "diffusers":
        shapes = {k: info.shape for k, info in header.tensors.items() if not is_scale_key(k)}
        return recipe_shapes(transformer_recipes(shapes, str(header.path)), shapes)
    n = len(hit.prefix)
    return {
        k[n:]: info.shape
        for k, info in header.tensors.items()
        if k.startswith(hit.prefix)
        and not is_scale_key(k[n:])
        and not k.startswith((VAE_PREFIX, "text_encoders."))
    }


def t5_embedding_params(header: SafetensorsHeader, prefix: str) -> int:
    """Parameters of a second copy of T5's token table (`shared` + `encoder.embed_tokens`), loaded only once."""
    a, b = prefix + "shared.weight", prefix + "encoder.embed_tokens.weight"
    return header.tensors[b].numel if _has(header, a) and _has(header, b) else 0


def format_bytes(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}" if unit == "GB" else f"{n / size:.0f} {unit}"
    return f"{n} B"


def format_params(n: int) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f} B"
    if n >= 1e6:
        return f"{n / 1e6:.1f} M"
    return f"{n:,}"

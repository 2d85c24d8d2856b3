"""Loading the CLIP-L, CLIP-G and T5-XXL text encoders from their files (standalone files, or the
`text_encoders.*` part of an all-in-one checkpoint, through `prefix`), and the tokenizer with them.

Each network is built on `meta` from the architecture its tensor shapes imply (networks/text_encoders.py) and
given the file's tensors: nothing is randomly initialised. ComfyUI "scaled fp8" T5 files are dequantised here,
or kept in float8 with `fp8_storage` (upcast per layer at compute, DECISIONS row 9).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from app.inference.api.errors import CheckpointMismatchError, InvalidRequestError, MissingComponentError
from app.inference.checkpoints.formats import t5_fp8_eligible
from app.inference.checkpoints.fp8 import Fp8Reader, assign_with_fp8_storage, read_scales, weight_keys
from app.inference.checkpoints.weights import assign_weights, load_tensors, read_header
from app.inference.networks.text_encoders import (
    ENCODER_LABELS,
    T5_EMBEDDING_KEYS,
    ClipRole,
    ClipTextEncoder,
    Shapes,
    T5TextEncoder,
    build_clip_model,
    build_t5_model,
    infer_clip_params,
    infer_t5_params,
)
from app.inference.text.conditioning import TextEncoders
from app.inference.text.tokenization import SD3Tokenizer, SpecialIds

log = logging.getLogger(__name__)

_NO_T5_HINT = (
    "Put t5xxl_fp16.safetensors (or t5xxl_fp8_e4m3fn.safetensors) in text_encoders/, or run without T5 "
    "with --no-t5 (less memory, weaker prompt following)."
)


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


def clip_module_names(model: torch.nn.Module, state: dict[str, Any]) -> dict[str, Any]:
    """Canonical `text_model.` file names -> the module's own names (flattened in transformers >= 5.6)."""
    if any(k.startswith("text_model.") for k in model.state_dict()):
        return state
    return {k.removeprefix("text_model."): v for k, v in state.items()}


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


def load_clip_encoder(
    path: Path,
    *,
    role: ClipRole,
    special: SpecialIds,
    prefix: str = "",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> ClipTextEncoder:
    source = str(path)
    params = infer_clip_params(canonical_clip_names(file_shapes(path, prefix)), role, source)
    model = build_clip_model(params, special)

    def skip(key: str) -> bool:
        return key.endswith("embeddings.position_ids") or (
            role == "clip_l" and key == "text_projection.weight"
        )

    state = clip_module_names(model, canonical_clip_names(load_tensors(path, prefix, skip=skip)))
    what = f"{ENCODER_LABELS[role]} text encoder"
    assign_weights(model, state, source=source, what=what, dtype=dtype, device=device)
    # position_ids is a non-persistent buffer, so it is not in the file and is still on meta: rebuild it.
    for module in model.modules():
        if type(module).__name__ == "CLIPTextEmbeddings":
            ids = torch.arange(params.max_positions, device=device).expand((1, -1))
            module.register_buffer("position_ids", ids, persistent=False)
    check_materialised(model, source)
    model.eval().requires_grad_(False)
    log.info("%s loaded from %s: %s, %s", ENCODER_LABELS[role], source, params, dtype)
    return ClipTextEncoder(model, params, special.eos)


def load_t5_encoder(
    path: Path,
    *,
    special: SpecialIds,
    prefix: str = "",
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    fp8_storage: bool = False,
) -> T5TextEncoder:
    """`fp8_storage`: the Linear weights stay (or become) float8 and are upcast per layer (DECISIONS row 9)."""
    if dtype == torch.float16:
        raise InvalidRequestError("T5-XXL cannot run in float16 (it overflows); use bfloat16 or float32")
    source = str(path)
    shapes = file_shapes(path, prefix)
    params = infer_t5_params(shapes, source)
    model = build_t5_model(params, special)
    # The real file stores the embedding twice, others once under either name. The reference reads
    # encoder.embed_tokens; one table, read and cast once, serves both names (tied again below).
    embed = "encoder.embed_tokens.weight" if "encoder.embed_tokens.weight" in shapes else "shared.weight"

    def second_table(key: str) -> bool:
        return key in T5_EMBEDDING_KEYS and key != embed

    reader = None
    if fp8_storage:
        reader = Fp8Reader(read_scales(path, prefix), dtype, weight_keys(t5_fp8_eligible))
    state = load_tensors(path, prefix, skip=second_table, convert=reader)
    if reader is None:
        dequantize_scaled_fp8(state)
    if embed in state:
        table = state.pop(embed).to(dtype)
        state["shared.weight"] = state["encoder.embed_tokens.weight"] = table
    what = "T5-XXL text encoder"
    if reader is not None:
        assign_with_fp8_storage(
            model, state, eligible=t5_fp8_eligible, scales=reader.scales, source=source, what=what,
            dtype=dtype, device=device,
        )  # fmt: skip
    else:
        assign_weights(model, state, source=source, what=what, dtype=dtype, device=device)
    model.encoder.embed_tokens.weight = model.shared.weight
    check_materialised(model, source)
    model.eval().requires_grad_(False)
    log.info("T5-XXL loaded from %s: %s, %s", source, params, dtype)
    return T5TextEncoder(model, params)


def _require(path: Path | None, label: str, hint: str) -> Path:
    if path is None or not Path(path).is_file():
        raise MissingComponentError(f"{label} text encoder not found: {path}. {hint}")
    return Path(path)


def load_text_encoders(
    *,
    clip_l: Path,
    clip_g: Path,
    t5: Path | None,
    tokenizer_dir: Path,
    context_width: int | None = None,
    clip_l_prefix: str = "",
    clip_g_prefix: str = "",
    t5_prefix: str = "",
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    t5_dtype: torch.dtype = torch.float32,
    t5_device: torch.device | str | None = None,
    tokenizer: SD3Tokenizer | None = None,
    t5_fp8: bool = False,
) -> TextEncoders:
    """Load the encoders. `t5=None` runs without T5 (zeros in its place, DECISIONS row 7).

    `tokenizer` replaces the one read from `tokenizer_dir` (tokenizers found elsewhere, tokenizer_sources.py);
    `t5_fp8` keeps T5's Linear weights in float8 (upcast per layer).

    `tokenizer_dir` is the folder holding tokenizer/, tokenizer_2/ and tokenizer_3/ (the last one only
    needed with T5). `context_width` is the MMDiT's context width; with T5 it must equal T5's d_model.
    """
    hint = "Download it from the model's Hugging Face repository (text_encoders/)."
    clip_l, clip_g = _require(clip_l, "CLIP-L", hint), _require(clip_g, "CLIP-G", hint)
    if t5 is not None:
        t5 = _require(t5, "T5-XXL", _NO_T5_HINT)
    tok = tokenizer or SD3Tokenizer.from_folder(tokenizer_dir, t5=t5 is not None)
    opts: dict[str, Any] = {"dtype": dtype, "device": device}
    l_enc = load_clip_encoder(clip_l, role="clip_l", special=tok.clip_l_ids, prefix=clip_l_prefix, **opts)
    g_enc = load_clip_encoder(clip_g, role="clip_g", special=tok.clip_g_ids, prefix=clip_g_prefix, **opts)
    t5_enc = None
    if t5 is not None and tok.t5_ids is not None:
        t5_opts = {"dtype": t5_dtype, "device": t5_device or device, "fp8_storage": t5_fp8}
        t5_enc = load_t5_encoder(t5, special=tok.t5_ids, prefix=t5_prefix, **t5_opts)
    return TextEncoders(tok, l_enc, g_enc, t5_enc, context_width=context_width)

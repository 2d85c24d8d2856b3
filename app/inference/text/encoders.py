"""CLIP-L, CLIP-G and T5-XXL text encoders and the SD3 conditioning (SD35_MODEL.md §3.1, 3.2, 3.4-3.6).

Each encoder is a Hugging Face transformers module whose config is inferred from the file's tensor shapes (no
hub names, no config files), built on `meta` and given the file's tensors: nothing is randomly initialised.

Features: CLIP `hidden_states[-2]` (penultimate layer, no final LayerNorm), run without an attention mask
because the padding positions are part of the conditioning; T5 `last_hidden_state`, no mask. Pooled: the
final-LN'd last layer at the first EOS; CLIP-L unprojected, CLIP-G through `text_projection`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from app.inference.api.errors import CheckpointMismatchError, InvalidRequestError, MissingComponentError
from app.inference.checkpoints.formats import t5_fp8_eligible
from app.inference.checkpoints.fp8 import Fp8Reader, assign_with_fp8_storage, read_scales, weight_keys
from app.inference.checkpoints.weights import assign_weights, load_tensors
from app.inference.text.encoder_config import (  # noqa: F401 - re-exported for callers and tests
    CLIP_ACTIVATIONS,
    CLIP_HEAD_DIM,
    CLIP_LAYER_KEY,
    CLIP_LAYER_NORM_EPS,
    ENCODER_LABELS,
    T5_BLOCK_KEY,
    T5_EMBEDDING_KEYS,
    T5_LAYER_NORM_EPS,
    T5_MAX_DISTANCE,
    ClipParams,
    ClipRole,
    Shapes,
    T5Params,
    build_clip_model,
    build_t5_model,
    canonical_clip_names,
    check_materialised,
    clip_module_names,
    dequantize_scaled_fp8,
    file_shapes,
    infer_clip_params,
    infer_t5_params,
)
from app.inference.text.tokenization import T5_MIN_LENGTH, SD3Tokenizer, SpecialIds, TextMode

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TextConditioning:
    context: torch.Tensor  # (1, L, context_width) float32, on the CPU
    pooled: torch.Tensor  # (1, pooled_width) float32, on the CPU


class ClipTextEncoder:
    """One CLIP text tower: `encode(ids)` -> (penultimate features, pooled vector)."""

    def __init__(self, model: torch.nn.Module, params: ClipParams, eos_id: int):
        self.model = model
        self.params = params
        self.eos_id = eos_id

    @classmethod
    def load(
        cls,
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
        return cls(model, params, special.eos)

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

    @classmethod
    def load(
        cls,
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
        return cls(model, params)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def encode(self, ids: Sequence[int]) -> torch.Tensor:
        """ids (n,) -> (1, n, d_model) float32."""
        x = torch.tensor([list(ids)], dtype=torch.long, device=self.device)  # (1, n)
        return self.model(input_ids=x).last_hidden_state.float()


def apply_prompt_weights(z: torch.Tensor, z_empty: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    """ComfyUI's rule per token: z = (z - z_empty) * w + z_empty; weight exactly 1 is left untouched."""
    w = torch.tensor(list(weights), dtype=z.dtype, device=z.device).view(1, -1, 1)  # (1, n, 1)
    return torch.where(w != 1.0, (z - z_empty) * w + z_empty, z)


_NO_T5_HINT = (
    "Put t5xxl_fp16.safetensors (or t5xxl_fp8_e4m3fn.safetensors) in text_encoders/, or run without T5 "
    "with --no-t5 (less memory, weaker prompt following)."
)


def _require(path: Path | None, label: str, hint: str) -> Path:
    if path is None or not Path(path).is_file():
        raise MissingComponentError(f"{label} text encoder not found: {path}. {hint}")
    return Path(path)


class TextEncoders:
    """The three encoders plus the tokenizer: prompt -> SD3 conditioning (`encode`)."""

    def __init__(
        self,
        tokenizer: SD3Tokenizer,
        clip_l: ClipTextEncoder,
        clip_g: ClipTextEncoder,
        t5: T5TextEncoder | None,
        *,
        context_width: int | None = None,
    ):
        if t5 is not None:
            if context_width is not None and context_width != t5.params.d_model:
                raise CheckpointMismatchError(
                    f"the T5 encoder's width {t5.params.d_model} does not match the diffusion model's "
                    f"context width {context_width}: these files do not belong together"
                )
            context_width = t5.params.d_model
            if not tokenizer.has_t5:
                raise InvalidRequestError("a T5 encoder needs the T5 tokenizer (tokenizer_3/)")
        elif context_width is None:
            raise InvalidRequestError("without T5 the context width (the MMDiT's context input) is required")
        clip_width = clip_l.params.hidden_size + clip_g.params.hidden_size
        if clip_width > context_width:
            raise CheckpointMismatchError(
                f"CLIP-L + CLIP-G features are {clip_width} wide, more than the context width {context_width}"
            )
        self.tokenizer = tokenizer
        self.clip_l = clip_l
        self.clip_g = clip_g
        self.t5 = t5
        self.context_width = context_width

    @classmethod
    def load(
        cls,
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
        l_enc = ClipTextEncoder.load(
            clip_l, role="clip_l", special=tok.clip_l_ids, prefix=clip_l_prefix, **opts
        )
        g_enc = ClipTextEncoder.load(
            clip_g, role="clip_g", special=tok.clip_g_ids, prefix=clip_g_prefix, **opts
        )
        t5_enc = None
        if t5 is not None and tok.t5_ids is not None:
            t5_opts = {"dtype": t5_dtype, "device": t5_device or device, "fp8_storage": t5_fp8}
            t5_enc = T5TextEncoder.load(t5, special=tok.t5_ids, prefix=t5_prefix, **t5_opts)
        return cls(tok, l_enc, g_enc, t5_enc, context_width=context_width)

    @property
    def pooled_width(self) -> int:
        return self.clip_l.pooled_width + self.clip_g.pooled_width

    def _clip(
        self,
        enc: ClipTextEncoder,
        windows: Sequence[Sequence[int]],
        weights: Sequence[Sequence[float]],
        empty: SpecialIds,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode each 77-token window on its own, concatenate along the sequence; pooled from window 0."""
        features: list[torch.Tensor] = []
        pooled: torch.Tensor | None = None
        z_empty: torch.Tensor | None = None
        for ids, w in zip(windows, weights, strict=True):
            z, p = enc.encode(ids)
            pooled = p if pooled is None else pooled
            if any(x != 1.0 for x in w):
                if z_empty is None:
                    z_empty, _ = enc.encode(empty.empty(len(ids)))
                z = apply_prompt_weights(z, z_empty, w)
            features.append(z)
        if pooled is None:
            raise InvalidRequestError("nothing to encode: no CLIP window")  # the tokenizer always gives one
        return torch.cat(features, dim=1).cpu(), pooled.cpu()

    def encode(self, text: str, mode: TextMode = "full", *, use_t5: bool = True) -> TextConditioning:
        """Prompt -> conditioning: context (1, 77k + L_t5, width), pooled (1, L + G pooled widths)."""
        tokens = self.tokenizer.tokenize(text, mode)
        tok = self.tokenizer
        l_out, l_pool = self._clip(self.clip_l, tokens.clip_l, tokens.clip_weights, tok.clip_l_ids)
        g_out, g_pool = self._clip(self.clip_g, tokens.clip_g, tokens.clip_weights, tok.clip_g_ids)
        n = min(l_out.shape[1], g_out.shape[1])
        lg = torch.cat([l_out[:, :n], g_out[:, :n]], dim=-1)  # (1, 77k, L + G): L first
        lg = F.pad(lg, (0, self.context_width - lg.shape[-1]))  # (1, 77k, width): zero columns
        if self.t5 is not None and use_t5 and tok.t5_ids is not None:
            t5_out = self.t5.encode(tokens.t5)  # (1, max(77, n + 1), width)
            if tokens.t5_weighted:
                t5_empty = self.t5.encode(tok.t5_ids.empty(len(tokens.t5)))
                t5_out = apply_prompt_weights(t5_out, t5_empty, tokens.t5_weights)
            t5_out = t5_out.cpu()
        else:
            t5_out = torch.zeros(1, T5_MIN_LENGTH, self.context_width)  # DECISIONS row 7: a zero T5 block
        context = torch.cat([lg, t5_out], dim=1)  # (1, 77k + L_t5, width)
        pooled = torch.cat([l_pool, g_pool], dim=-1)  # (1, L + G): L first
        log.debug("encoded %s: context %s, pooled %s", mode, tuple(context.shape), tuple(pooled.shape))
        return TextConditioning(context=context, pooled=pooled)

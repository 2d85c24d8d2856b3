"""The SD3 conditioning: prompt -> (context, pooled) through the tokenizer and the three text encoders
(SD35_MODEL.md §3.4-3.6, DECISIONS rows 3, 4, 7).

context = [CLIP-L features ; CLIP-G features ; zero columns up to the T5 width] along the sequence of 77-token
CLIP windows, followed by T5's tokens (or a zero block without T5); pooled = [CLIP-L pooled ; CLIP-G pooled].
The encoder networks are networks/text_encoders.py; loading them from files is
checkpoints/text_encoder_loading.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from app.inference.api.errors import CheckpointMismatchError, InvalidRequestError
from app.inference.networks.text_encoders import ClipTextEncoder, T5TextEncoder
from app.inference.text.tokenization import T5_MIN_LENGTH, SD3Tokenizer, SpecialIds, TextMode

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TextConditioning:
    context: torch.Tensor  # (1, L, context_width) float32, on the CPU
    pooled: torch.Tensor  # (1, pooled_width) float32, on the CPU


Progress = Callable[[int, int], None]  # (units encoded so far, of total); may raise to cancel the encoding


class _Tally:
    """Counts encoded units (one per CLIP window and tower, one for T5) and reports each to `progress`."""

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total = total
        self.done = 0
        self.progress = progress

    def tick(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)


def apply_prompt_weights(z: torch.Tensor, z_empty: torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    """ComfyUI's rule per token: z = (z - z_empty) * w + z_empty; weight exactly 1 is left untouched."""
    w = torch.tensor(list(weights), dtype=z.dtype, device=z.device).view(1, -1, 1)  # (1, n, 1)
    return torch.where(w != 1.0, (z - z_empty) * w + z_empty, z)


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

    @property
    def pooled_width(self) -> int:
        return self.clip_l.pooled_width + self.clip_g.pooled_width

    def _clip(
        self,
        enc: ClipTextEncoder,
        windows: Sequence[Sequence[int]],
        weights: Sequence[Sequence[float]],
        empty: SpecialIds,
        tally: _Tally,
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
            tally.tick()
        if pooled is None:
            raise InvalidRequestError("nothing to encode: no CLIP window")  # the tokenizer always gives one
        return torch.cat(features, dim=1).cpu(), pooled.cpu()

    def encode(
        self, text: str, mode: TextMode = "full", *, use_t5: bool = True, progress: Progress | None = None
    ) -> TextConditioning:
        """Prompt -> conditioning: context (1, 77k + L_t5, width), pooled (1, L + G pooled widths).

        `progress(done, total)` is called after each CLIP window of each tower and after T5 (a 5000-word prompt
        is about 160 windows); an exception it raises (a cancel) stops the encoding there."""
        tokens = self.tokenizer.tokenize(text, mode)
        tok = self.tokenizer
        with_t5 = self.t5 is not None and use_t5 and tok.t5_ids is not None
        tally = _Tally(len(tokens.clip_l) + len(tokens.clip_g) + with_t5, progress)
        l_out, l_pool = self._clip(self.clip_l, tokens.clip_l, tokens.clip_weights, tok.clip_l_ids, tally)
        g_out, g_pool = self._clip(self.clip_g, tokens.clip_g, tokens.clip_weights, tok.clip_g_ids, tally)
        n = min(l_out.shape[1], g_out.shape[1])
        lg = torch.cat([l_out[:, :n], g_out[:, :n]], dim=-1)  # (1, 77k, L + G): L first
        lg = F.pad(lg, (0, self.context_width - lg.shape[-1]))  # (1, 77k, width): zero columns
        if with_t5:
            t5_out = self.t5.encode(tokens.t5)  # (1, max(77, n + 1), width)
            if tokens.t5_weighted:
                t5_empty = self.t5.encode(tok.t5_ids.empty(len(tokens.t5)))
                t5_out = apply_prompt_weights(t5_out, t5_empty, tokens.t5_weights)
            t5_out = t5_out.cpu()
            tally.tick()
        else:
            t5_out = torch.zeros(1, T5_MIN_LENGTH, self.context_width)  # DECISIONS row 7: a zero T5 block
        context = torch.cat([lg, t5_out], dim=1)  # (1, 77k + L_t5, width)
        pooled = torch.cat([l_pool, g_pool], dim=-1)  # (1, L + G): L first
        log.debug("encoded %s: context %s, pooled %s", mode, tuple(context.shape), tuple(pooled.shape))
        return TextConditioning(context=context, pooled=pooled)
